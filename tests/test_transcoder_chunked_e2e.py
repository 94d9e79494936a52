"""Chunked parallel transcoding through the whole platform: a video longer than the
threshold is split into chunk jobs on the transcode topic, two workers share them, the
last one joins and packages; the result plays like a whole-file encode."""
from __future__ import annotations

import os

import httpx
import m3u8
import pytest

from longtail_common.cli import make_test_clip, wait_ready
from longtail_common.config import Config
from longtail_common.launcher import Platform, free_port
from tests.test_e2e_embedded import upload_all

pytestmark = pytest.mark.slow


def test_chunked_video_becomes_ready(tmp_path):
    clip = tmp_path / "clip.mp4"
    make_test_clip(str(clip), seconds=12, height=360)
    cfg = Config(data_dir=str(tmp_path / "lt"))
    cfg.transcoder.chunk_seconds = 4  # 12 s -> 3 chunk jobs
    cfg.transcoder.chunk_min_duration_s = 5
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=2) as platform, httpx.Client(timeout=60) as client:
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
        logs = "".join((platform.log_dir / f"transcoder-{i}.log").read_text() for i in range(2))
        assert "split into 3 chunk jobs" in logs
        # chunk scratch objects are removed once packaged
        chunks = os.path.join(cfg.data_path, "objects", "media", "videos", vid, "chunks")
        assert not os.path.exists(chunks) or not any(files for _, _, files in os.walk(chunks))
