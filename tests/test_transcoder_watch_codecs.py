"""Watch-time codec choice: the gateway hands each client the best family the video was
encoded in (AV1/VP9 to clients that play them, H.264 to Safari/iOS/TVs/old clients), and
names the codecs it hands out. The gateway runs for real (FastAPI); metadata is a stub
gRPC server holding one READY video."""
from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from fastapi.testclient import TestClient

from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail_cli.launcher import free_port
from longtail_common.config import Config

S = video_pb2.VideoStatus


# Codecs strings as the transcoder writes them for a video with sound: AAC with H.264,
# Opus with VP9/AV1.
WITH_SOUND = {"h264": "avc1.64001f,mp4a.40.2", "vp9": "vp09.00.31.08,opus", "av1": "av01.0.05M.08,opus"}


def ready_video(video_id: str, families: list[str], sound: bool = False) -> video_pb2.Video:
    v = video_pb2.Video(id=video_id, title="t", status=S.VIDEO_STATUS_READY, duration_seconds=10)
    v.channel.id = "chan"
    for fam in families:
        for protocol, name in (("hls", "master.m3u8"), ("dash", "manifest.mpd")):
            v.manifests.add(codec=fam, protocol=protocol, object_key=f"videos/{video_id}/{fam}/{name}")
        for h in (144, 720):
            v.renditions.add(codec=fam, width=h * 16 // 9, height=h, bitrate_bps=h * 1000, container="fmp4",
                             object_key=f"videos/{video_id}/{fam}/{h}p/playlist.m3u8",
                             codecs=WITH_SOUND[fam] if sound else f"{fam}-codecs")
    return v


class StubMetadata(mpb_grpc.MetadataServiceServicer):
    def __init__(self, videos):
        self.videos = {v.id: v for v in videos}

    def GetVideo(self, request, context):
        if request.id not in self.videos:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such video")
        return self.videos[request.id]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    mpb_grpc.add_MetadataServiceServicer_to_server(
        StubMetadata([ready_video("allthree", ["h264", "vp9", "av1"]), ready_video("vp9only", ["h264", "vp9"]),
                      ready_video("h264only", ["h264"]), ready_video("sound", ["h264", "vp9"], sound=True),
                      ready_video("soundh264", ["h264"], sound=True)]), server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("gw")))
    cfg.services.metadata = f"127.0.0.1:{port}"
    cfg.mesh.tls = False  # the stand-in metadata server above is plain text
    from gateway.app import create_app

    with TestClient(create_app(cfg)) as c:
        yield c
    server.stop(0)


CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
SAFARI = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile Safari/604.1"


@pytest.mark.parametrize("video, kw, codec", [
    ("allthree", {"params": {"client": "web"}}, "av1"),
    ("allthree", {"headers": {"User-Agent": CHROME}}, "av1"),
    ("vp9only", {"params": {"client": "android"}}, "vp9"),  # best the video has
    ("h264only", {"params": {"client": "chrome"}}, "h264"),
    ("allthree", {"headers": {"User-Agent": SAFARI}}, "h264"),
    ("allthree", {"headers": {"User-Agent": IPHONE}}, "h264"),
    ("allthree", {"params": {"client": "tv"}}, "h264"),
    ("allthree", {"headers": {"User-Agent": "Lavf/58.29.100"}}, "h264"),  # unknown/old client
])
def test_client_gets_the_best_codec_it_plays(client, video, kw, codec):
    resp = client.get(f"/v1/videos/{video}/watch", **kw)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["stream"]["codec"] == codec
    assert body["stream"]["protocol"] == "hls"
    assert body["stream"]["url"].endswith(f"/videos/{video}/{codec}/master.m3u8")
    assert body["stream"]["manifests"]["dash"].endswith(f"/videos/{video}/{codec}/manifest.mpd")
    assert {r["codec"] for r in body["renditions"]} == {codec}  # only what it is handed
    assert body["codecs"] == sorted({"allthree": ["h264", "vp9", "av1"], "vp9only": ["h264", "vp9"],
                                     "h264only": ["h264"]}[video])


def test_dash_on_request_and_bad_protocol(client):
    body = client.get("/v1/videos/allthree/watch", params={"client": "firefox", "protocol": "dash"}).json()
    assert body["stream"]["protocol"] == "dash" and body["stream"]["url"].endswith("/av1/manifest.mpd")
    resp = client.get("/v1/videos/allthree/watch", params={"protocol": "smooth"})
    assert resp.status_code == 400 and "protocol" in resp.json()["error"]["message"]


@pytest.mark.parametrize("video, kw, codec, audio", [
    ("sound", {"headers": {"User-Agent": CHROME}}, "vp9", "opus"),  # VP9-capable: Opus beside it
    ("sound", {"params": {"client": "android", "protocol": "dash"}}, "vp9", "opus"),
    ("sound", {"headers": {"User-Agent": SAFARI}}, "h264", "aac"),
    ("sound", {"params": {"client": "tv"}}, "h264", "aac"),
    ("soundh264", {"params": {"client": "chrome"}}, "h264", "aac"),  # H.264-only video: AAC to everyone
    ("vp9only", {"params": {"client": "chrome"}}, "vp9", None),  # no audio in its codecs: no sound
])
def test_payload_names_the_audio_codec_handed_out(client, video, kw, codec, audio):
    body = client.get(f"/v1/videos/{video}/watch", **kw).json()
    assert body["stream"]["codec"] == codec and body["stream"]["audio_codec"] == audio
    if audio:
        assert all(r["codecs"].endswith(",opus" if audio == "opus" else ",mp4a.40.2") for r in body["renditions"])
