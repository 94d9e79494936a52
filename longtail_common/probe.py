"""The container health probe of a gRPC service (compose healthchecks, Kubernetes exec
probes): asks grpc.health.v1 over the mesh's mutual TLS, as the platform's own clients do,
and exits 0 or 1.

    python -m longtail_common.probe SERVICE ADDRESS [--live] [--timeout S]

Readiness (the default) passes only while the service answers SERVING. `--live` passes
while the process answers at all, SERVING or NOT_SERVING: a service waiting for Kafka or
Scylla is alive and must not be restarted for it. The kubelet's own gRPC probe presents no
client certificate, so the mesh refuses it; this probe presents the container's own
(mesh.identity) and checks that the server's certificate names SERVICE.
"""
from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from longtail_common.config import Config, load_config
from longtail_common.mesh_tls import load_identity


def _channel(cfg: Config, service: str, address: str) -> grpc.Channel:
    # grpc_server.dial's channel without importing grpc_server (and OpenTelemetry with it):
    # probes run every few seconds in every pod, so their start-up CPU counts.
    identity = load_identity(cfg)
    if identity is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, identity.channel_credentials(),
                               options=[("grpc.ssl_target_name_override", service)])


def probe(cfg: Config, service: str, address: str, live: bool = False, timeout_s: float = 3.0) -> bool:
    """One health Check of `address` (its certificate must name `service`)."""
    with _channel(cfg, service, address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.RpcError:
            return False
    return live or answer.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m longtail_common.probe")
    parser.add_argument("service", help="the service whose certificate the server must present (metadata, ...)")
    parser.add_argument("address", help="host:port of this container's own server, e.g. 127.0.0.1:50051")
    parser.add_argument("--live", action="store_true", help="pass while the process answers, serving or not")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    return 0 if probe(load_config(), args.service, args.address, args.live, args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
