"""A service whose backends are unreachable at start-up stays up, reports NOT_SERVING on
grpc.health.v1, and keeps retrying with backoff (issue 3). No real servers needed: the
backends point at closed loopback ports."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from longtail_cli.launcher import free_port
from longtail_common.config import BackendsConfig, Config, KafkaConfig, S3Config, ScyllaConfig

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _unreachable_config(tmp_path, **backends) -> Config:
    closed = free_port()  # nothing listens there
    cfg = Config(data_dir=str(tmp_path / "data"), backends=BackendsConfig(**backends))
    cfg.scylla = ScyllaConfig(contact_points=["127.0.0.1"], port=closed)
    cfg.s3 = S3Config(endpoint=f"127.0.0.1:{closed}", access_key="k", secret_key="s")
    cfg.kafka = KafkaConfig(bootstrap_servers=f"127.0.0.1:{closed}")
    cfg.mesh.tls = False  # started by hand and probed in plain text
    return cfg


# (service module, address field, backends that are down); the names say what is tested.
CASES = {
    "metadata-scylla-down": ("metadata_svc", "metadata", {"metadata": "scylla"}),
    "upload-s3-down": ("upload_svc", "upload", {"objects": "s3"}),
    "upload-kafka-down": ("upload_svc", "upload", {"topics": "kafka"}),
    "placement-kafka-down": ("placement_svc", "placement", {"topics": "kafka"}),
    "transcoder-s3-kafka-down": ("transcoder_svc", "transcoder", {"objects": "s3", "topics": "kafka"}),
}


def _health(address: str) -> int | None:
    with grpc.insecure_channel(address) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
        except grpc.RpcError:
            return None


def test_services_wait_not_serving_while_backends_are_down(tmp_path):
    procs = {}
    try:
        for name, (module, field, backends) in CASES.items():
            cfg = _unreachable_config(tmp_path / name, **backends)
            address = f"127.0.0.1:{free_port()}"
            setattr(cfg.services, field, address)
            env = dict(os.environ, LONGTAIL_CONFIG_JSON=json.dumps(dataclasses.asdict(cfg)),
                       LONGTAIL_LOG_FORMAT="text")
            log = open(tmp_path / f"{name}.log", "wb")
            procs[name] = (subprocess.Popen([sys.executable, "-m", module], env=env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL), address)
            log.close()

        # Health answers early (the server starts before the backends are tried) ...
        statuses = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(statuses) < len(procs):
            for name, (_proc, address) in procs.items():
                if name not in statuses:
                    status = _health(address)
                    if status is not None:
                        statuses[name] = status
            time.sleep(0.2)
        assert statuses == {name: NOT_SERVING for name in procs}, statuses

        # ... and stays NOT_SERVING while the process lives on and retries. A Kafka client
        # gives up on a dead bootstrap server only after 15 s: for those, being alive and
        # NOT_SERVING meanwhile is checked (CI time); the others must have retried twice.
        fast = {name for name in procs if not name.endswith("-kafka-down")}
        retried: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and retried != fast:
            for name in fast - retried:
                if (tmp_path / f"{name}.log").read_text(errors="replace").count("retrying in") >= 2:
                    retried.add(name)
            time.sleep(0.5)
        for name, (proc, address) in procs.items():
            assert proc.poll() is None, f"{name} exited: {(tmp_path / f'{name}.log').read_text()[-2000:]}"
            assert _health(address) == NOT_SERVING, name
        assert retried == fast, f"no repeated retries from {fast - retried}"
        # Backoff: the second wait is longer than the first.
        text = (tmp_path / "metadata-scylla-down.log").read_text()
        delays = [float(x) for x in re.findall(r"retrying in ([0-9.]+)s", text)]
        assert delays[:2] == sorted(delays[:2]) and delays[1] > delays[0], delays
    finally:
        for proc, _address in procs.values():
            proc.terminate()
        for name, (proc, _address) in procs.items():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail(f"{name} did not stop on SIGTERM while retrying")
