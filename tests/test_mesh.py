"""The service mesh: mutual TLS decides who may call a service, and clients balance their
calls over every replica of a service (and keep going when one dies)."""
from __future__ import annotations

import collections
import copy
import os
import pathlib
import signal
import stat
import subprocess
import sys
import threading
import time

import grpc
import pytest
import yaml
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from longtail.accounts.v1 import account_service_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail.placement.v1 import placement_service_pb2
from longtail.search.v1 import search_service_pb2
from longtail.transcoder.v1 import transcoder_service_pb2
from longtail.upload.v1 import upload_service_pb2
from longtail.webhook.v1 import webhook_service_pb2
from longtail_cli.launcher import free_port
from longtail_common import telemetry
from longtail_common.config import Config, load_config
from longtail_common.grpc_server import (METHOD_POLICIES, ServiceServer, client_channel, client_channel_options, dial,
                                        wait_for_serving)
from longtail_common.mesh_tls import (LOCAL_IDENTITIES, MeshIdentity, MeshTLSError, ensure_local_ca, identity_paths,
                                      load_identity, tls_dir_of)
from tests.auth_helpers import service_metadata


def test_local_ca_is_made_once_and_keys_stay_private(tmp_path):
    directory = tmp_path / "tls"
    assert ensure_local_ca(directory) == list(LOCAL_IDENTITIES)
    assert ensure_local_ca(directory) == []  # created once, reused
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("ca", *LOCAL_IDENTITIES):
        assert stat.S_IMODE((directory / f"{name}.key").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((directory / "metadata.crt").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["metadata"]
    # A certificate another CA signed (here: a CA made anew) is issued again.
    (directory / "ca.crt").unlink()
    assert ensure_local_ca(directory, ["metadata"]) == ["metadata"]


def test_missing_files_are_explained_and_plain_text_needs_none(tmp_path):
    cfg = Config(data_dir=str(tmp_path))
    with pytest.raises(MeshTLSError, match="longtail certs"):
        load_identity(cfg)
    cfg.mesh.tls = False
    assert load_identity(cfg) is None


def _health(channel: grpc.Channel) -> object:
    """SERVING, or the status code of the refused call."""
    try:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3).status
    except grpc.RpcError as exc:
        return exc.code()


def test_a_service_refuses_clients_without_a_certificate_from_its_ca(tmp_path):
    cfg = Config(data_dir=str(tmp_path / "lt"))
    ensure_local_ca(tls_dir_of(cfg))
    server_cfg = copy.deepcopy(cfg)
    server_cfg.mesh.identity = "metadata"
    server = ServiceServer("longtail.metadata.v1.MetadataService", "127.0.0.1:0", identity=load_identity(server_cfg))
    server.server.start()  # not start(): that takes over the test runner's signals
    server.set_serving(True)
    address = f"127.0.0.1:{server.port}"
    ours = load_identity(cfg)  # the "admin" certificate
    other_dir = tmp_path / "other-ca"
    ensure_local_ca(other_dir, ["admin"])
    try:
        assert wait_for_serving(address, 10, cfg=cfg, server_name="metadata")
        assert _health(dial(address, cfg, "metadata")) == health_pb2.HealthCheckResponse.SERVING
        refused = {
            "plain text": grpc.insecure_channel(address),
            "TLS without a client certificate": grpc.secure_channel(
                address, grpc.ssl_channel_credentials(root_certificates=ours.ca_pem),
                options=[("grpc.ssl_target_name_override", "metadata")]),
            "a client certificate from another CA": grpc.secure_channel(
                address, MeshIdentity(ours.ca_pem, (other_dir / "admin.crt").read_bytes(),
                                      (other_dir / "admin.key").read_bytes()).channel_credentials(),
                options=[("grpc.ssl_target_name_override", "metadata")]),
            # The client checks the server's name too: a metadata server cannot pass as upload.
            "a server that is not the service called": dial(address, cfg, "upload"),
        }
        assert {what: _health(channel) for what, channel in refused.items()} == {
            what: grpc.StatusCode.UNAVAILABLE for what in refused}
    finally:
        server.server.stop(None)


def test_every_rpc_has_a_deadline_and_only_idempotent_ones_are_retried():
    configured = {f"{service}/{method}": retried for _timeout, retried, services in METHOD_POLICIES
                  for service, methods in services.items() for method in methods}
    rpcs = {f"{service.full_name}/{method.name}"
            for module in (mpb, account_service_pb2, upload_service_pb2, search_service_pb2, placement_service_pb2,
                           transcoder_service_pb2, webhook_service_pb2)
            for service in module.DESCRIPTOR.services_by_name.values() for method in service.methods}
    assert rpcs | {"grpc.health.v1.Health/Check"} == set(configured)
    retried = sorted(rpc.split("/")[1] for rpc, is_retried in configured.items() if is_retried)
    assert retried == ["BatchGetVideos", "BatchGetViewCounts", "Check", "CreateUpload", "DeleteSession", "GetAccount",
                       "GetChannel", "GetPlacement", "GetUpload", "GetVideo", "GetWebhook", "GetWorkerStatus",
                       "ListAccounts", "ListCaptions", "ListChannels", "ListDeliveries", "ListLatestVideos", "ListRegions",
                       "ListTokens", "ListVideos", "ListWebhooks", "ResolveSession", "ResolveToken", "SearchVideos",
                       "VerifyPassword"]


def _start_metadata_replica(tmp_path, name: str, tls_dir) -> tuple[subprocess.Popen, Config]:
    """A metadata_svc process with its own store, presenting the shared CA's certificate."""
    cfg = Config(data_dir=str(tmp_path / name))
    cfg.mesh.ca_file, cfg.mesh.cert_file, cfg.mesh.key_file = (
        str(tls_dir / "ca.crt"), str(tls_dir / "metadata.crt"), str(tls_dir / "metadata.key"))
    cfg.services.metadata = f"127.0.0.1:{free_port()}"
    log = open(tmp_path / f"{name}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "metadata_svc"], env=dict(os.environ, **cfg.to_env()),
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc, cfg


def test_calls_spread_over_replicas_and_go_on_when_one_dies(tmp_path):
    tls_dir = tmp_path / "tls"
    ensure_local_ca(tls_dir, ["metadata", "admin"])
    replicas = {name: _start_metadata_replica(tmp_path, name, tls_dir) for name in ("a", "b")}
    client_cfg = Config(data_dir=str(tmp_path / "client"))
    client_cfg.mesh.ca_file, client_cfg.mesh.cert_file, client_cfg.mesh.key_file = (
        str(tls_dir / "ca.crt"), str(tls_dir / "admin.crt"), str(tls_dir / "admin.key"))
    try:
        for name, (_proc, cfg) in replicas.items():
            assert wait_for_serving(cfg.services.metadata, 60, cfg=client_cfg, server_name="metadata"), name
            # Each replica has its own store: the title says which one answered.
            mpb_grpc.MetadataServiceStub(client_channel(client_cfg, "metadata", cfg.services.metadata)).CreateVideo(
                mpb.CreateVideoRequest(video=video_pb2.Video(id="v", title=name, channel=video_pb2.Channel(id="c"))),
                metadata=service_metadata(cfg))  # signed as a service with the replica's mesh key
        # One target, two replicas: a static set of addresses (a DNS name resolving to both works alike).
        both = "ipv4:" + ",".join(cfg.services.metadata for _proc, cfg in replicas.values())
        stub = mpb_grpc.MetadataServiceStub(client_channel(client_cfg, "metadata", both))

        def answered_by(calls: int) -> collections.Counter:
            return collections.Counter(stub.GetVideo(mpb.GetVideoRequest(id="v"), timeout=10).title
                                       for _ in range(calls))

        deadline = time.monotonic() + 10
        while len(answered_by(4)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # until both connections are up
        spread = answered_by(40)
        assert spread["a"] >= 15 and spread["b"] >= 15, spread
        victim = replicas["a"][0]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert answered_by(40) == {"b": 40}  # no call failed: the one sent to the dead replica was retried
    finally:
        for proc, _cfg in replicas.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(15)


class _NamedMetadata(mpb_grpc.MetadataServiceServicer):
    """Answers GetVideo with its own name as the title: which replica answered."""

    def __init__(self, name: str):
        self.name = name

    def GetVideo(self, request, context):
        return video_pb2.Video(id=request.id, title=self.name)


def test_a_replica_that_is_not_serving_gets_no_calls():
    """Client-side health checking: a replica starting, draining (SIGTERM) or without its
    backends (NOT_SERVING) is left out of the round robin until it serves again."""
    servers = {}
    for name in ("a", "b"):
        server = ServiceServer("longtail.metadata.v1.MetadataService", "127.0.0.1:0")
        server.late_servicer(mpb_grpc.add_MetadataServiceServicer_to_server).bind(_NamedMetadata(name))
        server.server.start()
        server.set_serving(True)
        servers[name] = server
    cfg = Config()
    cfg.mesh.tls = False
    target = "ipv4:" + ",".join(f"127.0.0.1:{server.port}" for server in servers.values())
    stub = mpb_grpc.MetadataServiceStub(client_channel(cfg, "metadata", target))

    def answered_by(calls: int) -> collections.Counter:
        return collections.Counter(stub.GetVideo(mpb.GetVideoRequest(id="v"), timeout=5).title for _ in range(calls))

    def settles_at(expected: set[str]) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if set(answered_by(6)) == expected:
                return True
            time.sleep(0.1)
        return False

    try:
        assert settles_at({"a", "b"})
        servers["a"].set_serving(False)
        assert settles_at({"b"}) and answered_by(20) == {"b": 20}
        servers["a"].set_serving(True)
        assert settles_at({"a", "b"})
    finally:
        for server in servers.values():
            server.server.stop(None)


def _small_metadata_server() -> tuple[ServiceServer, Config, str, list]:
    """A serving metadata stand-in with 4 worker threads; the plain-text client config, its
    address, and channel options that give each channel its own connection (channels of one
    process otherwise share one), as separate processes have."""
    server = ServiceServer("longtail.metadata.v1.MetadataService", "127.0.0.1:0", max_workers=4)
    server.late_servicer(mpb_grpc.add_MetadataServiceServicer_to_server).bind(_NamedMetadata("a"))
    server.server.start()
    server.set_serving(True)
    cfg = Config()
    cfg.mesh.tls = False
    own_connection = [*client_channel_options(cfg.mesh), ("grpc.use_local_subchannel_pool", 1)]
    return server, cfg, f"127.0.0.1:{server.port}", own_connection


def test_health_watchers_do_not_take_the_worker_threads():
    """Every client channel keeps a Health/Watch stream open to each replica (client-side
    health checking): in a fleet, more streams than the server has worker threads. They
    must not hold one each (they did when tracing wrapped them), or real calls queue until
    their deadline."""
    assert telemetry.tracing_enabled()  # the case that broke: tracing on, as deployed
    server, cfg, address, own_connection = _small_metadata_server()
    watchers = [dial(address, cfg, "metadata", own_connection) for _ in range(12)]
    try:
        for channel in watchers:  # a call makes each channel connect and start its watch
            mpb_grpc.MetadataServiceStub(channel).GetVideo(mpb.GetVideoRequest(id="v"), timeout=5)
        stub = mpb_grpc.MetadataServiceStub(client_channel(cfg, "metadata", address))
        assert [stub.GetVideo(mpb.GetVideoRequest(id="v"), timeout=5).title for _ in range(3)] == ["a"] * 3
    finally:
        for channel in watchers:
            channel.close()
        server.server.stop(None)


def test_health_watch_streams_coming_and_going_never_stop_the_server():
    """Channels opened and closed all the time (each opens a health Watch and cancels it):
    the server answers throughout. grpc_health's non-blocking Watch deadlocked here: its first
    answer is sent under the servicer's lock while the server's polling thread, running a
    closed stream's callback, waits for that lock."""
    server, cfg, address, own_connection = _small_metadata_server()
    failures: list[Exception] = []

    def churn():
        for _ in range(25):
            channel = dial(address, cfg, "metadata", own_connection)
            try:
                mpb_grpc.MetadataServiceStub(channel).GetVideo(mpb.GetVideoRequest(id="v"), timeout=10)
            except grpc.RpcError as exc:
                failures.append(exc)
            finally:
                channel.close()

    try:
        threads = [threading.Thread(target=churn) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not failures, failures[:3]
        channel = dial(address, cfg, "metadata", own_connection)
        assert mpb_grpc.MetadataServiceStub(channel).GetVideo(mpb.GetVideoRequest(id="v"), timeout=5).title == "a"
        channel.close()
    finally:
        server.server.stop(None)


def test_compose_gives_every_service_its_own_certificate_from_the_volume():
    """deploy/compose.yaml: `certs` fills mesh-certs once; each gRPC service and the gateway
    mounts it and presents its own certificate; health checks speak mutual TLS."""
    deploy = pathlib.Path(__file__).resolve().parents[1] / "deploy"
    services = yaml.safe_load((deploy / "compose.yaml").read_text())["services"]
    assert services["certs"]["command"] == ["longtail", "certs"]
    for name in ("metadata", "upload", "transcoder", "placement", "search", "webhook", "gateway"):
        svc = services[name]
        assert "mesh-certs:/etc/longtail/tls:ro" in svc["volumes"], name
        assert svc["depends_on"]["certs"]["condition"] == "service_completed_successfully", name
        cfg = load_config(deploy / "longtail.compose.toml", env=svc["environment"])
        assert cfg.mesh.tls and [str(path) for path in identity_paths(cfg)] == [
            "/etc/longtail/tls/ca.crt", f"/etc/longtail/tls/{name}.crt", f"/etc/longtail/tls/{name}.key"], name
        check = " ".join(svc.get("healthcheck", {}).get("test", []))
        if "wait_for_serving" in check:
            assert f"server_name='{name}'" in check and "cfg=load_config()" in check, name
