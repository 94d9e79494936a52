"""Issue 23's findings against the gateway, replayed on a running platform: malformed or
out-of-range headers and tokens answer 400 (not 500), stalled request bodies starve no
one, and /healthz answers 503 while a service is down.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import httpx
import pytest

from longtail_cli.cli import make_test_clip, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from tests.auth_helpers import bearer

pytestmark = pytest.mark.slow

TUS = {"Tus-Resumable": "1.0.0"}
PATCH_HEADERS = {**TUS, "Content-Type": "application/offset+octet-stream"}
SUPERSCRIPT_TWO = "\u00b2".encode("latin-1")  # '²': str.isdigit() says yes, int() says no
RESTART_DELAY_S = 4.0  # long enough to see the 503 while a killed service waits to respawn


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("robust")))
    cfg.launcher.restart_initial_delay_s = RESTART_DELAY_S
    cfg.http.body_idle_timeout_s = 300  # the stalled uploads below stay stalled the whole test
    cfg.limits.uploads_per_day = 0  # the 100 stalled uploads below are one account's
    p = Platform(cfg, gateway_port=free_port(), transcoder_workers=1)
    p.start()
    yield p
    p.stop()


@pytest.fixture()
def client(platform):
    # Signed in: creating videos needs an account (the uploads then belong to it).
    with httpx.Client(timeout=60, headers=bearer(platform.cfg, "uploader")) as c:
        yield c


def tus_metadata(**fields: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


def create_upload(client, base: str, length: int, title: str = "robust") -> str:
    resp = client.post(f"{base}/v1/uploads", headers={**TUS, "Upload-Length": str(length),
                                                     "Upload-Metadata": tus_metadata(title=title, channel_id="chan")})
    assert resp.status_code == 201, resp.text
    return resp.headers["Location"]


def assert_bad_request(resp, mentions: str) -> None:
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT" and mentions in error["message"], error


def forged_token(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_headers_are_parsed_strictly(platform, client):
    base = platform.gateway_url
    meta = tus_metadata(title="t", channel_id="chan")
    assert_bad_request(client.post(f"{base}/v1/uploads", headers={**TUS, "Upload-Length": SUPERSCRIPT_TWO,
                                                                  "Upload-Metadata": meta}), "Upload-Length")
    assert_bad_request(client.post(f"{base}/v1/videos", headers={"Upload-Length": SUPERSCRIPT_TWO},
                                   json={"title": "t", "channel_id": "chan"}), "Upload-Length")
    assert_bad_request(client.post(f"{base}/v1/uploads", headers={**TUS, "Upload-Metadata": "title !!!"}),
                       "Upload-Metadata")
    url = create_upload(client, base, 100)
    assert_bad_request(client.patch(url, headers={**PATCH_HEADERS, "Upload-Offset": str(10**30)}, content=b"x"),
                       "Upload-Offset")
    assert_bad_request(client.patch(url, headers={**PATCH_HEADERS, "Upload-Offset": SUPERSCRIPT_TWO}, content=b"x"),
                       "Upload-Offset")
    assert_bad_request(client.patch(url, headers={**PATCH_HEADERS, "Upload-Offset": "0",
                                                  "Upload-Length": str(10**30)}, content=b"x"), "Upload-Length")
    assert client.patch(url, headers={**TUS, "Upload-Offset": "0", "Content-Type": "text/plain"},
                        content=b"x").status_code == 415
    assert client.patch(url, headers={"Tus-Resumable": "0.2.2", "Upload-Offset": "0",
                                      "Content-Type": "application/offset+octet-stream"}, content=b"x").status_code == 412
    # Nothing of the refused requests reached the upload.
    assert client.head(url, headers=TUS).headers["Upload-Offset"] == "0"


def test_forged_page_tokens_are_refused(platform, client):
    base = platform.gateway_url
    huge_offset = forged_token({"k": "0" * 16, "o": 10**30})
    huge_time = forged_token([10**30, "zzzzzzzzzzz"])
    for path, params in (("/v1/latest", {}), ("/v1/search", {"q": "clip"}), ("/v1/videos", {"channel_id": "chan"})):
        for token in (huge_offset, huge_time):
            assert_bad_request(client.get(f"{base}{path}", params={**params, "page_token": token}), "page_token")
    assert_bad_request(client.get(f"{base}/v1/latest", params={"page_size": 1000}), "page_size")


def test_request_bodies_are_capped(platform, client):
    resp = client.post(f"{platform.gateway_url}/v1/videos", json={"title": "t" * (2 << 20), "channel_id": "chan"})
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "TOO_LARGE", resp.text


def stall_patch(url: str, declared: int, sent: bytes) -> socket.socket:
    """A PATCH that declares `declared` body bytes, sends `sent`, then nothing more."""
    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = (f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {declared}\r\n\r\n").encode()
    sock.sendall(head + sent)
    return sock


def upload_and_watch(client, base: str, clip: str) -> None:
    """A normal user: creates, uploads in pieces (HEAD between), waits, watches, fetches a segment."""
    data = open(clip, "rb").read()
    url = create_upload(client, base, len(data), title="normal user")
    offset = 0
    while offset < len(data):
        resp = client.patch(url, headers={**PATCH_HEADERS, "Upload-Offset": str(offset)},
                            content=data[offset:offset + 64 * 1024])
        assert resp.status_code == 204, resp.text
        offset = int(resp.headers["Upload-Offset"])
        assert client.head(url, headers=TUS).headers["Upload-Offset"] == str(offset)
    video_id = url.rsplit("/", 1)[1]
    assert wait_ready(client, base, video_id, timeout_s=240)["status"] == "READY"
    watch = client.get(f"{base}/v1/videos/{video_id}/watch", params={"client": "web"})
    assert watch.status_code == 200, watch.text
    master_url = watch.json()["stream"]["url"]
    master = client.get(master_url)
    assert master.status_code == 200
    variant_url = urllib.parse.urljoin(master_url, next(l for l in master.text.splitlines() if l and l[0] != "#"))
    variant = client.get(variant_url)
    segment = next(l for l in variant.text.splitlines() if l and l[0] != "#")
    assert client.get(urllib.parse.urljoin(variant_url, segment)).status_code == 200


def test_stalled_uploads_starve_no_one(platform, client, tmp_path):
    """100 PATCHes that stall mid-body (today 17 made every create and HEAD answer 504):
    the gateway buffers them, so no upload_svc thread waits on a silent client."""
    base = platform.gateway_url
    clip = str(tmp_path / "clip.mp4")
    make_test_clip(clip, seconds=3, height=360)
    stalled_urls = [create_upload(client, base, 1 << 20, title=f"stalled {i}") for i in range(100)]
    stalled = [stall_patch(url, 1 << 20, b"x" * 1000) for url in stalled_urls]
    try:
        time.sleep(1)  # every stalled PATCH is now waiting in the gateway
        upload_and_watch(client, base, clip)
        for url in stalled_urls[:5]:  # the stalled uploads' own HEADs answer too (after a short wait)
            resp = client.head(url, headers=TUS)
            assert resp.status_code == 200 and resp.headers["Upload-Offset"] == "0"
    finally:
        for sock in stalled:
            sock.close()


def test_a_stalled_body_is_answered_408_and_its_connection_closed(tmp_path):
    """The gateway alone (the 408 comes before any service is asked), with a short timeout."""
    cfg = Config(data_dir=str(tmp_path / "lt"))
    cfg.http.body_idle_timeout_s = 1.0
    port = free_port()
    gateway = subprocess.Popen([sys.executable, "-m", "gateway", "--port", str(port)],
                               env={**os.environ, **cfg.to_env()}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.2)
        with sock:
            sock.sendall(b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 50\r\n\r\n{\"ti")
            answer = b""
            while chunk := sock.recv(4096):  # ends when the gateway closes the connection
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower(), answer
        assert json.loads(body)["error"]["code"] == "REQUEST_TIMEOUT"
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(15)


def healthz(base: str) -> tuple[int, dict]:
    resp = httpx.get(f"{base}/healthz", timeout=10)
    return resp.status_code, resp.json()


def test_healthz_answers_503_while_a_service_is_down(platform):
    base = platform.gateway_url
    status, report = healthz(base)
    assert status == 200 and report["status"] == "ok", report
    assert {"metadata", "upload", "search", "placement", "transcoder-0"} <= set(report["services"])
    os.kill(platform.service_states()["search"]["pid"], signal.SIGKILL)  # the launcher restarts it
    deadline = time.monotonic() + RESTART_DELAY_S + 10
    while (answer := healthz(base))[0] != 503:
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)
    report = answer[1]
    assert report["status"] == "degraded" and not report["services"]["search"]["serving"], report
    assert report["services"]["metadata"]["serving"], report
    deadline = time.monotonic() + 60
    while (answer := healthz(base))[0] != 200:
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)
    search = answer[1]["services"]["search"]
    assert search["state"] == "running" and search["restarts"] == 1 and search["serving"], search
