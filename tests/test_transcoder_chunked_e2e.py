"""Chunked parallel transcoding through the whole platform: a video longer than the
threshold is split into chunk jobs on the transcode topic, two workers share them, the
last one joins and packages; the result plays like a whole-file encode. With VP9 configured
the join adds Opus audio beside the AAC: a VP9-capable client is handed VP9 + Opus."""
from __future__ import annotations

import io
import os
import time

import av
import httpx
import m3u8
import pytest

from longtail_cli.cli import make_test_clip, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common import telemetry
from longtail_common.config import Config
from tests.auth_helpers import bearer
from tests.test_e2e_embedded import upload_all

pytestmark = pytest.mark.slow


def chunk_encoders(data_path, video_id: str, timeout_s: float = 15.0) -> set[str]:
    """The worker processes (span instances) that encoded a chunk of the video."""
    deadline = time.monotonic() + timeout_s
    while True:
        chunks = [s for s in telemetry.load_spans(data_path) if s["name"].startswith("transcode chunk")
                  and s["attributes"].get(telemetry.VIDEO_ID) == video_id]
        if len(chunks) >= 3 or time.monotonic() > deadline:
            return {s["instance"] for s in chunks}
        time.sleep(0.5)


def test_chunked_video_becomes_ready(tmp_path):
    clip = tmp_path / "clip.mp4"
    make_test_clip(str(clip), seconds=12, height=360)
    cfg = Config(data_dir=str(tmp_path / "lt"))
    cfg.transcoder.chunk_seconds = 4  # 12 s -> 3 chunk jobs
    cfg.transcoder.chunk_min_duration_s = 5
    cfg.transcoder.codecs = ["h264", "vp9"]
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=2) as platform, \
            httpx.Client(timeout=60, headers=bearer(cfg, "uploader")) as client:
        base = platform.gateway_url
        vid = upload_all(client, str(clip), base, title="chunked")
        video = wait_ready(client, base, vid, timeout_s=240)
        assert video["status"] == "READY", video
        watch = client.get(f"{base}/v1/videos/{vid}/watch").json()
        assert abs(watch["duration_seconds"] - 12) < 1 / 30 + 1e-6
        assert sorted(r["height"] for r in watch["renditions"]) == [144, 240, 360]
        master = m3u8.loads(client.get(watch["stream"]["url"]).text)
        assert len(master.playlists) == 3 and master.media[0].type == "AUDIO"
        for variant in master.playlists:
            url = watch["stream"]["url"].rsplit("/", 1)[0] + "/" + variant.uri
            pl = m3u8.loads(client.get(url).text)
            assert [s.duration for s in pl.segments] == [4.0, 4.0, 4.0]  # chunk cuts = segment cuts
        assert watch["stream"]["codec"] == "h264" and watch["stream"]["audio_codec"] == "aac"
        assert all(p.stream_info.codecs.endswith(",mp4a.40.2") for p in master.playlists)
        vp9 = client.get(f"{base}/v1/videos/{vid}/watch", params={"client": "chrome"}).json()
        assert vp9["stream"]["codec"] == "vp9" and vp9["stream"]["audio_codec"] == "opus"
        vp9_base = vp9["stream"]["url"].rsplit("/", 1)[0]
        vp9_master = m3u8.loads(client.get(vp9["stream"]["url"]).text)
        assert len(vp9_master.playlists) == 3 and all(p.stream_info.codecs.endswith(",opus") for p in vp9_master.playlists)
        assert vp9_master.media[0].type == "AUDIO"
        audio_pl = m3u8.loads(client.get(f"{vp9_base}/{vp9_master.media[0].uri}").text)
        audio_dir = f"{vp9_base}/{vp9_master.media[0].uri.rsplit('/', 1)[0]}"
        blob = client.get(f"{audio_dir}/{audio_pl.segment_map[0].uri}").content + \
            client.get(f"{audio_dir}/{audio_pl.segments[0].uri}").content
        with av.open(io.BytesIO(blob)) as c:
            a = c.streams.audio[0].codec_context
            assert (a.name, a.channels, a.sample_rate) == ("opus", 2, 48000)
        assert 'codecs="opus"' in client.get(vp9["stream"]["manifests"]["dash"]).text
        logs = "".join((platform.log_dir / f"transcoder-{i}.log").read_text() for i in range(2))
        assert "split into 3 chunk jobs" in logs
        # Chunk jobs go to consecutive partitions, so both workers got some (not where keys hash).
        assert len(chunk_encoders(cfg.data_path, vid)) == 2
        # chunk scratch objects are removed once packaged
        chunks = os.path.join(cfg.data_path, "objects", "media", "videos", vid, "chunks")
        assert not os.path.exists(chunks) or not any(files for _, _, files in os.walk(chunks))
