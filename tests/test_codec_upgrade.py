"""Codec upgrades: AV1 only for the videos the placement model expects to be popular.

Every video is encoded in H.264 (transcoder.codecs); the daily placement job asks for
transcoder.popular_codecs (AV1) for each video whose predicted views for the day reach
transcoder.popular_min_daily_views. The transcoder encodes the video's own ladder in AV1
(from the original upload, or from its top H.264 rendition once the upload is gone) and
placement adds the family to the READY video, after pushing the new files to its edges."""
from __future__ import annotations

import datetime as dt
import io
import time

import av
import httpx
import m3u8
import numpy as np
import pytest

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import video_pb2
from longtail_cli.cli import make_test_clip, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common import telemetry
from longtail_common.adapters import make_object_store, make_topic_bus
from longtail_common.config import Config
from longtail_common.ports import MEDIA_BUCKET, RAW_BUCKET, TOPIC_DEAD_LETTER, TOPIC_TRANSCODE_REQUESTS
from placement_svc.daily import codec_upgrades
from tests.auth_helpers import bearer
from tests.test_e2e_embedded import upload_all
from tests.test_views_e2e import run_daily, wait_counts


def _video(video_id: str, families: list[str]) -> video_pb2.Video:
    v = video_pb2.Video(id=video_id)
    for f in families:
        v.manifests.add(codec=f, protocol="hls", object_key=f"videos/{video_id}/{f}/master.m3u8")
    return v


def test_codec_upgrades_go_to_the_videos_expected_to_be_popular():
    videos = [_video("hot", ["h264"]), _video("cold", ["h264"]), _video("done", ["h264", "av1"]),
              _video("edge", ["h264", "vp9"])]
    predicted = np.array([5000.0, 999.0, 8000.0, 1000.0])
    assert codec_upgrades(videos, predicted, ["AV1"], 1000) == [("hot", ["av1"]), ("edge", ["av1"])]
    assert codec_upgrades(videos, predicted, ["av1", "vp9"], 1000) == [
        ("hot", ["av1", "vp9"]), ("done", ["vp9"]), ("edge", ["av1"])]
    assert codec_upgrades(videos, predicted, [], 0) == []
    # 0: every video lacking the families
    assert [v for v, _ in codec_upgrades(videos, np.zeros(4), ["av1"], 0)] == ["hot", "cold", "edge"]


def _watch(http, base, vid, **params):
    r = http.get(f"{base}/v1/videos/{vid}/watch", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _wait_codec(client, base, vid, codec, timeout_s=240):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        watch = _watch(client, base, vid, client="chrome")
        if watch["stream"]["codec"] == codec:
            return watch
        time.sleep(1)
    raise AssertionError(f"{vid} never got {codec}: {watch['stream']}")


def _first_segment_codec(client, master_url: str) -> tuple[str, float]:
    """(video codec, duration of the top rendition) read from the served bytes."""
    master = m3u8.loads(client.get(master_url).text)
    top = max(master.playlists, key=lambda p: p.stream_info.bandwidth)
    url = master_url.rsplit("/", 1)[0] + "/" + top.uri
    pl = m3u8.loads(client.get(url).text)
    folder = url.rsplit("/", 1)[0]
    blob = client.get(f"{folder}/{pl.segment_map[0].uri}").content + client.get(f"{folder}/{pl.segments[0].uri}").content
    with av.open(io.BytesIO(blob)) as c:
        name = c.streams.video[0].codec_context.codec.canonical_name  # "av1", whichever decoder
    return name, sum(s.duration for s in pl.segments)


@pytest.mark.slow
def test_daily_job_adds_av1_to_the_popular_video_only(tmp_path):
    cfg = Config(data_dir=str(tmp_path / "lt"))
    cfg.platform.regions = ["US", "GB"]
    cfg.transcoder.popular_codecs = ["av1"]
    cfg.transcoder.popular_min_daily_views = 10
    cfg.transcoder.per_title = True  # renditions carry their measured VMAF, the upgrade's too
    # Videos over 5 s are transcoded in 4 s chunk jobs: the long one's upgrade is chunked too.
    cfg.transcoder.chunk_seconds, cfg.transcoder.chunk_min_duration_s = 4, 5
    clip, long_clip = tmp_path / "clip.mp4", tmp_path / "long.mp4"
    make_test_clip(str(clip), seconds=4, height=360)
    make_test_clip(str(long_clip), seconds=10, height=360)
    today = dt.datetime.now(dt.timezone.utc).date()
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=2) as platform, \
            httpx.Client(timeout=60, headers=bearer(cfg, "uploader")) as client:
        base = platform.gateway_url
        hot, cold = upload_all(client, str(clip), base, title="hot"), upload_all(client, str(long_clip), base, title="cold")
        for vid in (hot, cold):
            assert wait_ready(client, base, vid, timeout_s=240)["status"] == "READY"
            assert _watch(client, base, vid, client="chrome")["stream"]["codec"] == "h264"
        h264 = {r["height"]: r for r in _watch(client, base, hot)["renditions"]}

        # 12 views in GB yesterday (as the job on the next morning sees them), 1 for the other.
        events = [{"video_id": hot, "kind": "start", "region": "GB",
                   "playback_id": _watch(client, base, hot, region="GB")["playback"]["id"]} for _ in range(12)]
        events.append({"video_id": cold, "kind": "start", "region": "US",
                       "playback_id": _watch(client, base, cold, region="US")["playback"]["id"]})
        assert client.post(f"{base}/v1/views", json={"events": events}).status_code == 202
        wait_counts(platform, hot, 12)
        wait_counts(platform, cold, 1)
        summary = run_daily(platform, today + dt.timedelta(days=1))
        assert summary["codec_upgrades"] == [[hot, "av1"]], summary
        assert summary["pushed"] == [[hot, "GB"]], summary

        watch = _wait_codec(client, base, hot, "av1")
        # The same ladder, in AV1, with Opus beside it; old clients still get H.264.
        av1 = {r["height"]: r for r in watch["renditions"] if r["codec"] == "av1"}
        assert set(av1) == set(h264), watch["renditions"]
        assert all(r["codecs"].startswith("av01.") and r["codecs"].endswith(",opus") for r in av1.values())
        # measured by the upgrade on the original upload, not copied from H.264
        assert all(0.0 < r["vmaf"] <= 100.0 for r in av1.values()), av1
        assert [r["vmaf"] for r in av1.values()] != [h264[h]["vmaf"] for h in av1], (av1, h264)
        assert watch["stream"]["audio_codec"] == "opus"
        tv = _watch(client, base, hot, client="tv")
        assert tv["stream"]["codec"] == "h264"
        # ... and a better H.264 (transcoder.popular_x264_preset), in new files, replaced the first one
        assert f"/videos/{hot}/h264-slow/" in tv["stream"]["url"]
        assert {r["height"] for r in tv["renditions"]} == set(h264)
        codec, seconds = _first_segment_codec(client, watch["stream"]["url"])
        assert codec == "av1" and abs(seconds - 4) <= 1 / 30 + 1e-6
        # GB serves it from its edge: the AV1 files were pushed there before the manifest was listed.
        gb = _watch(client, base, hot, client="chrome", region="GB")
        assert gb["stream"]["served_from"] == "cdn" and "/edge/GB/t/" in gb["stream"]["url"]
        assert f"/videos/{hot}/av1/" in gb["stream"]["url"]
        assert _first_segment_codec(client, gb["stream"]["url"])[0] == "av1"
        # The unpopular video is left as it was.
        assert {r["codec"] for r in _watch(client, base, cold)["renditions"]} == {"h264"}

        # Once the original upload is gone (raw uploads are temporary), an upgrade reads the
        # top H.264 rendition back instead; this long video's upgrade runs as chunk jobs.
        objects = make_object_store(cfg)
        cold_video = platform_video(client, base, cold)
        cold_h264 = {r["height"] for r in _watch(client, base, cold)["renditions"]}  # its own per-title ladder
        objects.delete(RAW_BUCKET, f"{cold}/original")
        bus = make_topic_bus(cfg)
        producer = bus.producer()
        for families in (["av1"], ["mpeg2"]):  # the second is poison: dead-lettered, the video untouched
            request = events_pb2.TranscodeRequest(video_id=cold, raw_bucket=RAW_BUCKET,
                                                  raw_object_key=f"{cold}/original", add_codecs=families)
            producer.publish(TOPIC_TRANSCODE_REQUESTS, request.SerializeToString(), key=cold.encode())
        producer.close()
        watch = _wait_codec(client, base, cold, "av1")
        codec, seconds = _first_segment_codec(client, watch["stream"]["url"])
        assert codec == "av1" and abs(seconds - cold_video["duration_seconds"]) <= 1 / 30 + 1e-6
        assert abs(seconds - 10) <= 1 / 30 + 1e-6
        assert {r["height"] for r in watch["renditions"] if r["codec"] == "av1"} == cold_h264
        old_client = _watch(client, base, cold, client="tv")  # still handed its H.264 ladder
        assert old_client["stream"]["codec"] == "h264" and {r["height"] for r in old_client["renditions"]} == cold_h264
        # not re-encoded from its own rendition (that would only lose quality)
        assert f"/videos/{cold}/h264/" in old_client["stream"]["url"]
        deadline, spans = time.monotonic() + 15, []
        while len(spans) < 3 and time.monotonic() < deadline:  # spans are written in batches
            spans = [s for s in telemetry.load_spans(cfg.data_path) if s["name"].startswith("codec upgrade chunk")
                     and s["attributes"].get(telemetry.VIDEO_ID) == cold]
            time.sleep(0.5)
        assert len(spans) >= 3, [s["name"] for s in spans]  # 10 s in 4 s chunks
        consumer = bus.consumer([TOPIC_DEAD_LETTER], "test-codec-upgrade")
        dead, deadline = [], time.monotonic() + 60
        while not dead and time.monotonic() < deadline:
            dead = [m for m in consumer.poll(1.0, 100) if cold.encode() in (m.key or b"")]
        consumer.close()
        bus.close()
        assert dead, "the unknown codec family was not dead-lettered"
        assert b"unknown codec families ['mpeg2']" in dict(dead[0].headers)["dlq.reason"]
        logs = "".join((platform.log_dir / f"transcoder-{i}.log").read_text() for i in range(2))
        assert "from the 360p H.264 rendition" in logs and "split into 3 chunk jobs" in logs
        # Private records (the ladder, result markers) are never served or pushed.
        assert objects.stat(MEDIA_BUCKET, f"videos/{hot}/_ladder.json") is not None
        token = _watch(client, base, hot)["stream"]["url"].split("/t/", 1)[1].split("/", 1)[0]
        assert client.get(f"{base}/origin/t/{token}/videos/{hot}/_ladder.json").status_code == 404
        assert objects.stat("edge-gb", f"videos/{hot}/_ladder.json") is None


def platform_video(client, base, vid) -> dict:
    return _watch(client, base, vid)


def test_a_reencoded_family_moves_to_its_own_folder(tmp_path):
    from transcoder_svc import packaging
    from transcoder_svc.jobs import outputs

    (tmp_path / "h264" / "360p").mkdir(parents=True)
    (tmp_path / "h264" / "360p" / "playlist.m3u8").write_text("#EXTM3U\n")
    (tmp_path / "av1").mkdir()
    rendition = packaging.RenditionOutput(codec="h264", name="360p", width=640, height=360, bitrate_bps=1,
                                          average_bitrate_bps=1, container="fmp4",
                                          playlist_path="h264/360p/playlist.m3u8", frame_rate=30.0, codecs="avc1")
    output = packaging.TranscodeOutput(families=[
        packaging.FamilyOutput(codec="h264", hls_path="h264/master.m3u8", dash_path="h264/manifest.mpd",
                               renditions=[rendition]),
        packaging.FamilyOutput(codec="av1", hls_path="av1/master.m3u8", dash_path="av1/manifest.mpd")])
    folder = outputs.reencoded_folder("slow")
    outputs.move_family(tmp_path, output, "h264", folder)
    assert folder == "h264-slow" and (tmp_path / "h264-slow" / "360p" / "playlist.m3u8").exists()
    assert not (tmp_path / "h264").exists() and (tmp_path / "av1").exists()
    h264, av1 = output.families
    assert (h264.hls_path, h264.dash_path) == ("h264-slow/master.m3u8", "h264-slow/manifest.mpd")
    assert h264.renditions[0].playlist_path == "h264-slow/360p/playlist.m3u8"
    assert av1.hls_path == "av1/master.m3u8"


def test_codec_upgrade_settings_from_the_environment():
    from longtail_common.config import load_config

    cfg = load_config(env={"LONGTAIL_TRANSCODER__POPULAR_CODECS": "av1, vp9",
                           "LONGTAIL_TRANSCODER__POPULAR_MIN_DAILY_VIEWS": "2500.5"})
    assert cfg.transcoder.popular_codecs == ["av1", "vp9"]
    assert cfg.transcoder.popular_min_daily_views == 2500.5  # a number, not the string
    assert load_config(env={}).transcoder.popular_min_daily_views == 1000.0
    assert load_config(env={"LONGTAIL_TRANSCODER__POPULAR_X264_PRESET": ""}).transcoder.popular_x264_preset == ""
    assert load_config(env={}).transcoder.popular_x264_preset == "slow"
    assert load_config(env={}).transcoder.rate_control == "constant_quality"
