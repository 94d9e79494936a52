"""The attacks of issue 23 replayed against a running embedded platform: forged view
beacons (500 x 1 TiB for JP, beacons naming no playback, another video's playback, an
expired one, a repeat start, the region ZZ) are refused, counted by reason in
longtail_beacons_rejected_total, and the placement run that follows is the one the
genuine views alone give; stream URLs are signed end to end.
"""
from __future__ import annotations

import datetime as dt
import time

import httpx
import pytest

from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from gateway.signing import make_signer
from tests.test_telemetry import _scrape_all, _series
from tests.test_views_e2e import make_ready_video, run_daily, wait_counts

pytestmark = pytest.mark.slow

TIB = 1 << 40


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("longtail-forgery")))
    cfg.platform.regions = ["US", "GB", "JP"]
    p = Platform(cfg, gateway_port=free_port(), transcoder_workers=0)
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def videos(platform):
    """Two READY videos (made as tests/test_views_e2e.py makes one: no ffmpeg)."""
    return [make_ready_video(platform) for _ in range(2)]


def watch(c: httpx.Client, base: str, vid: str, region: str) -> dict:
    r = c.get(f"{base}/v1/videos/{vid}/watch", params={"region": region, "client": "web"})
    assert r.status_code == 200, r.text
    return r.json()


def rejected(platform, reason: str) -> float:
    return sum(_series(_scrape_all(platform), "longtail_beacons_rejected_total", reason=reason))


def test_forged_beacons_are_refused_and_placement_is_unchanged(platform, videos):
    base, (vid, other) = platform.gateway_url, videos
    with httpx.Client(timeout=60) as c:
        genuine = watch(c, base, vid, "JP")
        pid = genuine["playback"]["id"]
        assert genuine["playback"]["region"] == "JP" and genuine["playback"]["expires_in_s"] > 0

        # The issue's attack: one anonymous batch of 500 x 1 TiB for JP.
        forged = [{"video_id": vid, "kind": "start", "bytes": TIB, "region": "JP"} for _ in range(500)]
        r = c.post(f"{base}/v1/views", json={"events": forged})
        assert r.status_code == 403 and r.json()["error"]["reason"] == "missing", r.text
        # The same with a genuine playback id: more bytes than that playback could fetch.
        r = c.post(f"{base}/v1/views", json={"events": [dict(e, playback_id=pid) for e in forged]})
        assert r.status_code == 400 and r.json()["error"]["reason"] == "too_many_bytes", r.text
        # 500 starts of one playback: one view at most, so the batch is refused whole.
        starts = [{"video_id": vid, "kind": "start", "playback_id": pid} for _ in range(500)]
        r = c.post(f"{base}/v1/views", json={"events": starts})
        assert r.status_code == 409 and r.json()["error"]["reason"] == "repeat", r.text

        # Another video's playback, an expired one, a forged region, a tampered id.
        r = c.post(f"{base}/v1/videos/{other}/views", json={"kind": "start", "playback_id": pid})
        assert r.status_code == 403 and r.json()["error"]["reason"] == "wrong_video"
        expired, _ = make_signer(platform.cfg).issue_playback(vid, "JP", now=time.time() - 5 * 3600)
        r = c.post(f"{base}/v1/videos/{vid}/views", json={"kind": "start", "playback_id": expired})
        assert r.status_code == 403 and r.json()["error"]["reason"] == "expired"
        r = c.post(f"{base}/v1/videos/{vid}/views", json={"kind": "start", "playback_id": pid, "region": "ZZ"})
        assert r.status_code == 400 and r.json()["error"]["reason"] == "unknown_region"
        r = c.post(f"{base}/v1/videos/{vid}/views", json={"kind": "start", "playback_id": pid, "region": "US"})
        assert r.status_code == 400 and r.json()["error"]["reason"] == "region_mismatch"
        r = c.post(f"{base}/v1/videos/{vid}/views", json={"kind": "start", "playback_id": pid[:-4] + "AAAA"})
        assert r.status_code == 403 and r.json()["error"]["reason"] == "invalid"
        assert c.get(f"{base}/v1/videos/{vid}/watch", params={"region": "ZZ"}).status_code == 400

        # The genuine viewer: one start and the bytes it fetched, counted once.
        r = c.post(f"{base}/v1/videos/{vid}/views", json={"kind": "start", "bytes": 5000, "playback_id": pid})
        assert r.status_code == 202, r.text
        r = c.post(f"{base}/v1/videos/{vid}/views", json={"kind": "start", "playback_id": pid})
        assert r.status_code == 409
        # A second genuine viewer, sent last: once it is counted, anything before it is too.
        second = watch(c, base, vid, "JP")["playback"]["id"]
        r = c.post(f"{base}/v1/views", json={"events": [{"video_id": vid, "kind": "start", "playback_id": second}]})
        assert r.status_code == 202
        rows = wait_counts(platform, vid, 2)
        assert {r: (row.views, row.bytes) for r, row in rows.items()} == {"JP": (2, 5000)}

        summary = run_daily(platform, dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1))
        assert summary["pushed"] == [] and summary["codec_upgrades"] == [], summary
        assert watch(c, base, vid, "JP")["stream"]["served_from"] == "origin"

    assert rejected(platform, "missing") == 500
    assert rejected(platform, "too_many_bytes") == 500
    assert rejected(platform, "repeat") == 501
    for reason in ("wrong_video", "expired", "unknown_region", "region_mismatch", "invalid"):
        assert rejected(platform, reason) == 1, reason


def test_stream_urls_are_signed_and_refused_otherwise(platform, videos):
    base, vid = platform.gateway_url, videos[0]
    with httpx.Client(timeout=60) as c:
        payload = watch(c, base, vid, "US")
        url = payload["stream"]["url"]
        assert url.startswith(f"{base}/origin/t/") and url.endswith(f"/videos/{vid}/h264/master.m3u8")
        assert payload["stream"]["expires_in_s"] >= platform.cfg.playback.ttl_s - 5
        # Public video: a second viewer gets the very same URL (cacheable), not a per-viewer one.
        assert watch(c, base, vid, "US")["stream"]["url"] == url
        token = url.split("/t/", 1)[1].split("/", 1)[0]
        segment_key = f"videos/{vid}/h264/240p/seg0.ts"
        assert c.get(f"{base}/origin/t/{token}/{segment_key}").status_code == 200
        assert c.get(f"{base}/origin/{segment_key}").status_code == 403
        assert c.get(f"{base}/origin/t/{token[:-2]}xx/{segment_key}").status_code == 403
        assert c.get(f"{base}/origin/t/{token}/videos/{videos[1]}/h264/240p/seg0.ts").status_code == 403
