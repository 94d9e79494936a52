"""The container health probe (longtail_common.probe): readiness follows the service's
grpc.health.v1 status over the mesh's mutual TLS; liveness only needs an answer."""
from __future__ import annotations

import copy

from longtail_cli.launcher import free_port
from longtail_common.config import Config
from longtail_common.grpc_server import ServiceServer
from longtail_common.mesh_tls import ensure_local_ca, load_identity, tls_dir_of
from longtail_common.probe import main, probe


def test_probe_reports_ready_live_and_refuses_a_wrong_certificate(tmp_path, monkeypatch):
    cfg = Config(data_dir=str(tmp_path / "lt"))
    ensure_local_ca(tls_dir_of(cfg))
    server_cfg = copy.deepcopy(cfg)
    server_cfg.mesh.identity = "metadata"
    server = ServiceServer("longtail.metadata.v1.MetadataService", "127.0.0.1:0", identity=load_identity(server_cfg))
    server.server.start()  # not start(): that takes over the test runner's signals
    address = f"127.0.0.1:{server.port}"
    try:
        # Starting (NOT_SERVING): alive, not ready.
        assert probe(cfg, "metadata", address, live=True) is True
        assert probe(cfg, "metadata", address) is False
        server.set_serving(True)
        assert probe(cfg, "metadata", address) is True
        # The server's certificate names metadata, not upload: refused like any impostor.
        assert probe(cfg, "upload", address, live=True) is False
        # Through the command line, with the config from the environment, as a container runs it.
        monkeypatch.setenv("LONGTAIL_DATA_DIR", cfg.data_dir)
        assert main(["metadata", address]) == 0
        assert main(["search", address, "--live"]) == 1
    finally:
        server.server.stop(None)
    nobody = f"127.0.0.1:{free_port()}"
    assert probe(cfg, "metadata", nobody, live=True, timeout_s=1) is False
