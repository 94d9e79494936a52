"""End to end through the REST API only, on the embedded backends, every service a process."""
from __future__ import annotations

import http.client
import io
import os
import re
import time
import urllib.parse

import av
import grpc
import httpx
import pytest

from longtail.transcoder.v1 import transcoder_service_pb2 as tpb
from longtail.transcoder.v1 import transcoder_service_pb2_grpc as tpb_grpc
from longtail_cli.cli import make_test_clip, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from longtail_common.grpc_server import dial
from tests.auth_helpers import bearer

pytestmark = pytest.mark.slow

TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def clip_720p(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("clips") / "clip720.mp4"
    make_test_clip(str(path), seconds=10, height=720)
    return str(path)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("longtail")))
    p = Platform(cfg, gateway_port=free_port(), transcoder_workers=1)
    p.start()
    yield p
    p.stop()


@pytest.fixture()
def client(platform):
    # Signed in: creating videos needs an account (the uploads then belong to it).
    with httpx.Client(timeout=60, headers=bearer(platform.cfg, "uploader")) as c:
        yield c


def create_video(client, base, size=None, title="A test video", channel="testchan"):
    body = {"title": title, "description": "e2e", "channel_id": channel}
    if size is not None:
        body["size_bytes"] = size
    resp = client.post(f"{base}/v1/videos", json=body)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["status"] == "UPLOADING" and created["upload_url"]
    return created


def patch(client, url, offset, data):
    return client.patch(url, content=data, headers={**TUS, "Upload-Offset": str(offset),
                                                    "Content-Type": "application/offset+octet-stream"})


def head_offset(client, url) -> int:
    resp = client.head(url, headers=TUS)
    assert resp.status_code == 200
    return int(resp.headers["Upload-Offset"])


def interrupted_patch(url: str, offset: int, data: bytes, send: int) -> None:
    """Sends a PATCH declaring len(data) bytes but drops the connection after `send`."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.putrequest("PATCH", parts.path)
    for k, v in {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
                 "Content-Length": str(len(data))}.items():
        conn.putheader(k, v)
    conn.endheaders()
    conn.send(data[:send])
    time.sleep(1.0)  # let the gateway forward what it got before the connection drops
    conn.sock.close()


def upload_all(client, path: str, base: str, **kw) -> str:
    data = open(path, "rb").read()
    created = create_video(client, base, size=len(data), **kw)
    url = created["upload_url"]
    offset = 0
    while offset < len(data):
        resp = patch(client, url, offset, data[offset:offset + 256 * 1024])
        assert resp.status_code == 204, resp.text
        offset = int(resp.headers["Upload-Offset"])
    return created["id"]


def test_upload_transcode_watch(platform, client, clip_720p):
    base = platform.gateway_url
    data = open(clip_720p, "rb").read()
    created = create_video(client, base, size=len(data), title="Spine clip")
    vid, url = created["id"], created["upload_url"]

    # Not ready yet: never watchable, never listed.
    resp = client.get(f"{base}/v1/videos/{vid}/watch")
    assert resp.status_code == 409 and resp.json()["error"]["status"] == "UPLOADING"

    # Upload in chunks; the second chunk is interrupted mid-way and resumed from HEAD.
    chunk = len(data) // 4
    assert patch(client, url, 0, data[:chunk]).status_code == 204
    assert head_offset(client, url) == chunk
    interrupted_patch(url, chunk, data[chunk:2 * chunk], send=chunk // 2)
    offset = head_offset(client, url)
    assert chunk <= offset < 2 * chunk
    stale = patch(client, url, chunk, data[chunk:2 * chunk]) if offset != chunk else None
    if stale is not None:
        assert stale.status_code == 409, stale.text  # wrong offset is refused, not silently appended
    while offset < len(data):
        resp = patch(client, url, offset, data[offset:offset + chunk])
        assert resp.status_code == 204, resp.text
        offset = int(resp.headers["Upload-Offset"])
    assert offset == len(data)

    video = wait_ready(client, base, vid, timeout_s=240)
    assert video["status"] == "READY", video
    assert video["title"] == "Spine clip" and video["channel"]["id"] == "testchan"

    resp = client.get(f"{base}/v1/videos/{vid}/watch", params={"region": "JP", "client": "web"})
    assert resp.status_code == 200, resp.text
    watch = resp.json()
    assert watch["stream"]["served_from"] == "origin" and watch["stream"]["region"] == "JP"
    assert watch["stream"]["protocol"] == "hls" and watch["stream"]["codec"] == "h264"
    assert abs(watch["duration_seconds"] - 10) < 0.5
    assert any(t["kind"] == "poster" for t in watch["thumbnails"])
    assert watch["ad_breaks"] and watch["ad_breaks"][0]["position"] == "pre_roll"
    heights = sorted(r["height"] for r in watch["renditions"])
    assert {240, 480, 720} <= set(heights) and max(heights) == 720  # full ladder, never upscaled

    # Region from the header too.
    assert client.get(f"{base}/v1/videos/{vid}/watch", headers={"X-Client-Region": "gb"}).json()["stream"]["region"] == "GB"

    # The poster is served.
    poster = client.get(next(t["url"] for t in watch["thumbnails"] if t["kind"] == "poster"))
    assert poster.status_code == 200 and poster.content[:2] == b"\xff\xd8"

    # Master playlist, every media playlist, and a probed segment.
    master_url = watch["stream"]["url"]
    master = client.get(master_url)
    assert master.status_code == 200 and master.text.startswith("#EXTM3U")
    assert "CODECS=" in master.text and "RESOLUTION=" in master.text
    variant_uris = [line for line in master.text.splitlines() if line and not line.startswith("#")]
    assert len(variant_uris) == len(watch["renditions"])
    checked = set()
    for uri in variant_uris:
        playlist_url = urllib.parse.urljoin(master_url, uri)
        playlist = client.get(playlist_url)
        assert playlist.status_code == 200 and "#EXT-X-ENDLIST" in playlist.text
        segments = [line for line in playlist.text.splitlines() if line and not line.startswith("#")]
        assert segments
        init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', playlist.text)
        blob = b""
        if init:
            blob += client.get(urllib.parse.urljoin(playlist_url, init.group(1))).content
        seg = client.get(urllib.parse.urljoin(playlist_url, segments[0]))
        assert seg.status_code == 200 and len(seg.content) > 1000
        blob += seg.content
        with av.open(io.BytesIO(blob)) as container:
            stream = container.streams.video[0]
            checked.add((stream.codec_context.name, stream.codec_context.height))
    assert ("h264", 720) in checked and ("h264", 240) in checked

    # The same CMAF segments are described by a DASH MPD; scrubbing previews exist.
    mpd = client.get(watch["stream"]["manifests"]["dash"])
    assert mpd.status_code == 200 and b'mimeType="video/mp4"' in mpd.content
    assert {"storyboard", "storyboard_vtt"} <= {t["kind"] for t in watch["thumbnails"]}

    # Range requests work on origin bytes (players seek with them).
    ranged = client.get(master_url, headers={"Range": "bytes=0-6"})
    assert ranged.status_code == 206 and ranged.content == b"#EXTM3U"

    # Listing shows READY videos only.
    pending = create_video(client, base, size=10, channel="testchan", title="still uploading")
    listed = client.get(f"{base}/v1/videos", params={"channel_id": "testchan"}).json()
    ids = [v["id"] for v in listed["videos"]]
    assert vid in ids and pending["id"] not in ids


def test_errors_are_json_with_right_status(platform, client):
    base = platform.gateway_url
    resp = client.get(f"{base}/v1/videos/doesnotexist")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "NOT_FOUND"
    resp = client.post(f"{base}/v1/videos", json={"title": "x" * 500, "channel_id": "c"})
    assert resp.status_code == 422 and "title" in resp.json()["error"]["message"]
    resp = client.post(f"{base}/v1/videos", json={"title": "ok", "channel_id": "c", "evil": 1})
    assert resp.status_code == 422 and "evil" in resp.json()["error"]["message"]
    resp = client.post(f"{base}/v1/videos", json={"title": "ok", "channel_id": "../etc"})
    assert resp.status_code == 422
    resp = client.post(f"{base}/v1/videos", content=b"not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 422 and "error" in resp.json()
    created = create_video(client, base, size=100)
    resp = client.patch(created["upload_url"], content=b"x", headers={"Upload-Offset": "0",
                                                                      "Content-Type": "application/offset+octet-stream"})
    assert resp.status_code == 412  # tus version required
    resp = patch(client, created["upload_url"], 5, b"abc")
    assert resp.status_code == 409  # wrong offset
    resp = patch(client, created["upload_url"], 0, b"x" * 101)
    assert resp.status_code == 400  # beyond declared length
    assert client.get(f"{base}/origin/videos/../../etc/passwd").status_code == 404


def _text_file(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is a text file, not a video\n" * 100)
    return str(p)


def _audio_only(tmp_path):
    import subprocess

    import imageio_ffmpeg

    p = tmp_path / "audio.m4a"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi",
                    "-i", "sine=frequency=300:duration=3", "-c:a", "aac", str(p)], check=True)
    return str(p)


def _empty(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    return str(p)


SHARED_MEDIA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "media")


def _truncated(_tmp_path):
    path = os.path.join(SHARED_MEDIA, "car-detection_truncated_1400000B.mp4")
    if not os.path.exists(path):
        pytest.skip("../shared/media is not beside the project")
    return path


@pytest.mark.parametrize("make_input", [_empty, _text_file, _audio_only, _truncated], ids=lambda f: f.__name__.strip("_"))
def test_bad_input_fails_with_reason(platform, client, tmp_path, make_input):
    base = platform.gateway_url
    path = make_input(tmp_path)
    vid = upload_all(client, path, base)
    video = wait_ready(client, base, vid, timeout_s=120)
    assert video["status"] == "FAILED", video
    expected = {"_empty": "empty", "_text_file": "not a video", "_audio_only": "no video stream",
                "_truncated": "truncated"}[make_input.__name__]
    assert expected in video["failure_reason"], video["failure_reason"]
    assert client.get(f"{base}/v1/videos/{vid}/watch").status_code == 409
    # The raw upload is kept for an operator, and the worker is still alive.
    assert os.path.exists(os.path.join(platform.cfg.data_path, "objects", "raw", vid, "original"))
    assert platform.procs["transcoder-0"].poll() is None


def test_killed_worker_job_is_redone(tmp_path, clip_720p):
    cfg = Config(data_dir=str(tmp_path / "lt"))
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=2) as platform, \
            httpx.Client(timeout=60, headers=bearer(cfg, "uploader")) as client:
        base = platform.gateway_url
        vid = upload_all(client, clip_720p, base, title="kill test")
        stubs = {name: tpb_grpc.TranscoderServiceStub(dial(addr, platform.cfg, "transcoder"))
                 for name, addr in platform.addresses.items() if name.startswith("transcoder-")}
        victim = None
        deadline = time.monotonic() + 60
        while victim is None and time.monotonic() < deadline:
            for name, stub in stubs.items():
                try:
                    if stub.GetWorkerStatus(tpb.GetWorkerStatusRequest(), timeout=2).current_video_id == vid:
                        victim = name
                except grpc.RpcError:
                    pass
            time.sleep(0.05)
        assert victim, "no worker picked the job up"
        time.sleep(1.0)  # well into the encode
        platform.kill(victim)
        video = wait_ready(client, base, vid, timeout_s=240)
        assert video["status"] == "READY", video
        survivor = next(n for n in stubs if n != victim)
        assert stubs[survivor].GetWorkerStatus(tpb.GetWorkerStatusRequest(), timeout=5).jobs_done >= 1
        watch = client.get(f"{base}/v1/videos/{vid}/watch").json()
        assert max(r["height"] for r in watch["renditions"]) == 720
