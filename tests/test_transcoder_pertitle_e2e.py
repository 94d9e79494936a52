"""Per-title through the whole platform: with `[transcoder] per_title = true` the worker
analyses the upload, encodes the per-title ladder and stores each rendition's VMAF (measured
on the sample), of every codec family, in the metadata, where the watch call hands it out."""
from __future__ import annotations

import httpx
import pytest

from longtail_cli.cli import make_test_clip, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from tests.auth_helpers import bearer
from tests.test_e2e_embedded import upload_all
from transcoder_svc import ladder, probe

pytestmark = pytest.mark.slow


def test_per_title_video_becomes_ready_with_measured_vmaf(tmp_path):
    clip = tmp_path / "clip.mp4"
    make_test_clip(str(clip), seconds=4, height=360)
    fixed_heights = {r.height for r in ladder.ladder_for(probe.probe(str(clip)))}
    cfg = Config(data_dir=str(tmp_path / "lt"))
    cfg.transcoder.per_title = True
    cfg.transcoder.codecs = ["vp9"]
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=1) as platform, \
            httpx.Client(timeout=60, headers=bearer(cfg, "uploader")) as client:
        base = platform.gateway_url
        vid = upload_all(client, str(clip), base, title="per-title")
        video = wait_ready(client, base, vid, timeout_s=300)
        assert video["status"] == "READY", video
        # watch hands out one family per client: Chrome gets VP9, Safari H.264
        renditions = [r for c in ("chrome", "safari")
                      for r in client.get(f"{base}/v1/videos/{vid}/watch", params={"client": c}).json()["renditions"]]
    assert {r["codec"] for r in renditions} == {"h264", "vp9"}, renditions
    # The top and bottom rungs are always kept; sizes are the ladder's own, never upscaled.
    assert len(renditions) >= 2 and {r["height"] for r in renditions} <= fixed_heights, renditions
    for r in renditions:
        assert 0.0 < r["vmaf"] <= 100.0, r  # measured, not the proto's default 0
    by_size = {}
    for r in renditions:
        by_size.setdefault((r["width"], r["height"]), {})[r["codec"]] = r["vmaf"]
    # each family's own score, not H.264's copied: two encoders never score exactly alike
    assert any(q["h264"] != q["vp9"] for q in by_size.values()), by_size
