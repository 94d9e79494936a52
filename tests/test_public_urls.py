"""Where the gateway's absolute URLs (stream, poster and upload URLs) point: at
`platform.public_url` when it is set; else at the socket the client reached, taking the Host
header only when it names that socket or loopback on its port. A client's own Host header
never ends up in a URL handed out (issue 22: it did, inside the watch call's stream URLs).
The same on a running platform: tests/test_authz_matrix.py (watch) and
tests/test_account_pages.py (upload URL)."""
from __future__ import annotations

import pytest
from starlette.requests import Request

from gateway.app import create_app
from gateway.media_links import public_base, public_url_for
from longtail_common.config import Config


@pytest.fixture()
def app(tmp_path):
    cfg = Config(data_dir=str(tmp_path))
    cfg.mesh.tls = False
    return create_app(cfg)


def request(app, host: str, server=("127.0.0.1", 8080), scheme: str = "http") -> Request:
    return Request({"type": "http", "app": app, "scheme": scheme, "server": server, "path": "/", "root_path": "",
                    "headers": [(b"host", host.encode("latin-1"))], "query_string": b""})


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "localhost:9999", "127.0.0.1:8080\n",
                                  "localhost:8080@evil.example", "localhost:8080/x", "", "127.0.0.1:99999"])
def test_a_foreign_host_header_is_ignored(app, host):
    assert public_base(request(app, host)) == "http://127.0.0.1:8080"


@pytest.mark.parametrize(("host", "server", "base"), [
    ("127.0.0.1:8080", ("127.0.0.1", 8080), "http://127.0.0.1:8080"),
    ("localhost:8080", ("127.0.0.1", 8080), "http://localhost:8080"),  # the page keeps its origin
    ("[::1]:8080", ("::1", 8080), "http://[::1]:8080"),
    ("192.168.1.5:8080", ("192.168.1.5", 8080), "http://192.168.1.5:8080"),
    ("other.lan:8080", ("192.168.1.5", 8080), "http://192.168.1.5:8080"),
])
def test_without_public_url_the_reached_socket_decides(app, host, server, base):
    assert public_base(request(app, host, server)) == base


def test_public_url_wins_over_everything(app):
    app.state.config.platform.public_url = "https://video.example.org/"
    for host in ("evil.example", "127.0.0.1:8080", "localhost:8080"):
        assert public_url_for(request(app, host), "tus_upload", video_id="abc") == \
            "https://video.example.org/v1/uploads/abc"
