"""View beacons through the gateway, counted by placement, then `longtail placement run`
pushes the watched video to that region's edge (watch URL -> /edge/<region>/...) and
evicts it when the views stop. Embedded platform, every service a process."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import video_pb2
from longtail_cli.cli import wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common.adapters import make_object_store, make_topic_bus
from longtail_common.adapters.sqlite_viewcounts import SqliteViewCountStore
from longtail_common.config import Config
from longtail_common.ports import MEDIA_BUCKET, TOPIC_TRANSCODE_RESULTS
from tests.auth_helpers import bearer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("longtail-views")))
    cfg.platform.regions = ["US", "GB", "JP"]
    p = Platform(cfg, gateway_port=free_port(), transcoder_workers=0)
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def ready_video(platform):
    return make_ready_video(platform)


def make_ready_video(platform) -> str:
    """A READY video without ffmpeg: the upload is real (REST + tus), the transcoder's part
    (variant objects + a TranscodeResult on the topic) is played by the test, so placement
    reacts exactly as it does to a worker."""
    base = platform.gateway_url
    with httpx.Client(timeout=60, headers=bearer(platform.cfg, "views-uploader")) as c:
        created = c.post(f"{base}/v1/videos", json={"title": "views test", "channel_id": "viewschan",
                                                    "language": "en", "size_bytes": 9}).json()
        r = c.patch(created["upload_url"], content=b"notavideo", headers={
            "Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 204, r.text
        vid = created["id"]
        objects = make_object_store(platform.cfg)
        prefix = f"videos/{vid}/h264"
        objects.ensure_bucket(MEDIA_BUCKET)
        objects.put_bytes(MEDIA_BUCKET, f"{prefix}/master.m3u8",
                          b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=426x240\n240p/index.m3u8\n")
        objects.put_bytes(MEDIA_BUCKET, f"{prefix}/240p/index.m3u8",
                          b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg0.ts\n#EXT-X-ENDLIST\n")
        objects.put_bytes(MEDIA_BUCKET, f"{prefix}/240p/seg0.ts", bytes(range(256)) * 40)
        objects.put_bytes(MEDIA_BUCKET, f"{prefix}/_result.json", b"{}")
        result = events_pb2.TranscodeResult(
            video_id=vid, success=True, duration_seconds=2.0,
            renditions=[video_pb2.Rendition(codec="h264", width=426, height=240, bitrate_bps=400000,
                                            container="mpegts", object_key=f"{prefix}/240p/index.m3u8")],
            manifests=[video_pb2.StreamManifest(codec="h264", protocol="hls", object_key=f"{prefix}/master.m3u8")])
        bus = make_topic_bus(platform.cfg)
        producer = bus.producer()
        producer.publish(TOPIC_TRANSCODE_RESULTS, result.SerializeToString(), key=vid.encode())
        producer.close()
        bus.close()
        video = wait_ready(c, base, vid, timeout_s=120)
    assert video["status"] == "READY", video
    return vid


def run_daily(platform, day: dt.date) -> dict:
    env = dict(os.environ, **platform.cfg.to_env())
    proc = subprocess.run([sys.executable, "-m", "longtail_cli.cli", "placement", "run", "--date", day.isoformat()],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def wait_counts(platform, video_id, want_views, timeout_s=60):
    store = SqliteViewCountStore(platform.cfg.data_path / "viewcounts.sqlite3")
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            rows = {r.region: r for r in store.daily_views() if r.video_id == video_id}
            if sum(r.views for r in rows.values()) >= want_views:
                return rows
            time.sleep(0.3)
    finally:
        store.close()
    raise AssertionError(f"views not counted in time: {rows}")


def playback_id(c: httpx.Client, base: str, vid: str, region: str) -> str:
    """A fresh playback of the video in region: what a player's beacons name."""
    return c.get(f"{base}/v1/videos/{vid}/watch", params={"region": region}).json()["playback"]["id"]


def test_views_endpoint_rejects_bad_beacons(platform, ready_video):
    base = platform.gateway_url
    with httpx.Client(timeout=30) as c:
        r = c.post(f"{base}/v1/videos/nosuchvideo/views", json={"kind": "start"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
        created = c.post(f"{base}/v1/videos", json={"title": "t", "channel_id": "viewschan"},
                         headers=bearer(platform.cfg, "views-uploader")).json()
        r = c.post(f"{base}/v1/videos/{created['id']}/views", json={"kind": "start"})
        assert r.status_code == 409 and r.json()["error"]["status"] == "UPLOADING"
        r = c.post(f"{base}/v1/videos/{ready_video}/views", json={"kind": "pause"})
        assert r.status_code == 422 and "kind" in r.json()["error"]["message"]
        r = c.post(f"{base}/v1/videos/{ready_video}/views", json={"kind": "start", "bytes": -1})
        assert r.status_code == 422
        r = c.post(f"{base}/v1/videos/{ready_video}/views", json={"kind": "start"}, headers={"X-Client-Region": "G1"})
        assert r.status_code == 400 and "region" in r.json()["error"]["message"]
        # A batch is all or nothing: one not-READY video rejects it.
        r = c.post(f"{base}/v1/views", json={"events": [{"video_id": ready_video, "kind": "start"},
                                                        {"video_id": created["id"], "kind": "start"}]})
        assert r.status_code == 409
        assert c.post(f"{base}/v1/views", json={"events": []}).status_code == 422


def test_views_drive_the_daily_push_and_eviction(platform, ready_video):
    base, vid = platform.gateway_url, ready_video
    today = dt.datetime.now(dt.timezone.utc).date()
    with httpx.Client(timeout=30) as c:
        playbacks = [playback_id(c, base, vid, "GB") for _ in range(12)]
        events = [{"video_id": vid, "kind": "start", "region": "GB", "playback_id": p} for p in playbacks]
        events += [{"video_id": vid, "kind": "progress", "bytes": 1000, "region": "gb", "playback_id": playbacks[0]}]
        r = c.post(f"{base}/v1/views", json={"events": events})
        assert r.status_code == 202 and r.json() == {"accepted": 13}
        # Region from the header; one view in US is below the break-even: stays on origin.
        r = c.post(f"{base}/v1/videos/{vid}/views",
                   json={"kind": "start", "bytes": 500, "playback_id": playback_id(c, base, vid, "US")},
                   headers={"X-Client-Region": "US"})
        assert r.status_code == 202
        rows = wait_counts(platform, vid, 13)
        assert (rows["GB"].views, rows["GB"].bytes, rows["US"].views, rows["US"].bytes) == (12, 1000, 1, 500)

        before = c.get(f"{base}/v1/videos/{vid}/watch", params={"region": "GB", "client": "web"}).json()
        assert before["stream"]["served_from"] == "origin"

        summary = run_daily(platform, today + dt.timedelta(days=1))
        assert summary["model"]["source"] == "rule" and summary["pushed"] == [[vid, "GB"]], summary
        watch = c.get(f"{base}/v1/videos/{vid}/watch", params={"region": "GB", "client": "web"}).json()
        assert watch["stream"]["served_from"] == "cdn"
        url = watch["stream"]["url"]
        assert "/edge/GB/t/" in url and f"/videos/{vid}/" in url
        for region in ("US", "JP"):
            other = c.get(f"{base}/v1/videos/{vid}/watch", params={"region": region, "client": "web"}).json()
            assert other["stream"]["served_from"] == "origin" and "/origin/" in other["stream"]["url"]
        edge_bytes = c.get(url)
        assert edge_bytes.status_code == 200
        assert edge_bytes.content == c.get(before["stream"]["url"]).content
        # A variant playlist and a media segment are there too (relative URIs resolve under /edge/GB/).
        variant = next(line for line in edge_bytes.text.splitlines() if line and not line.startswith("#"))
        variant_url = url.rsplit("/", 1)[0] + "/" + variant
        playlist = c.get(variant_url)
        assert playlist.status_code == 200
        segment = next(line for line in playlist.text.splitlines() if line and not line.startswith("#"))
        seg = c.get(variant_url.rsplit("/", 1)[0] + "/" + segment, headers={"Range": "bytes=0-99"})
        assert seg.status_code == 206 and len(seg.content) == 100

        # What SREs see: the placement service reports the run's CDN share and its changes.
        from tests.test_telemetry import _scrape_all, _series

        metrics = _scrape_all(platform)
        assert _series(metrics, "longtail_cdn_share", region="GB") == [pytest.approx(1 / summary["videos"])]
        assert _series(metrics, "longtail_cdn_share", region="US") == [0.0]
        assert _series(metrics, "longtail_placement_decisions_total", source="daily", region="GB",
                       served_from="cdn") == [1.0]

        # Same day again: nothing changes (idempotent).
        again = run_daily(platform, today + dt.timedelta(days=1))
        assert again["pushed"] == [] and again["evicted"] == []

        # No views on the next day: evicted, watch back on origin, edge bytes gone.
        summary = run_daily(platform, today + dt.timedelta(days=2))
        assert summary["evicted"] == [[vid, "GB"]], summary
        watch = c.get(f"{base}/v1/videos/{vid}/watch", params={"region": "GB", "client": "web"}).json()
        assert watch["stream"]["served_from"] == "origin"
        assert c.get(url).status_code == 404
