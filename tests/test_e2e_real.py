"""End to end through the REST API on the real engines: Kafka, Cassandra (as ScyllaDB)
and S3Proxy, every service a process. One Platform serves the whole module (CI time).

The platform gets its own keyspace and bucket prefix; the topics are the platform's
standard names (no other test uses them on the session broker).
"""
from __future__ import annotations

import copy
import io
import json
import re
import time
import urllib.parse
import uuid

import av
import grpc
import httpx
import pytest

from longtail.events.v1 import events_pb2
from longtail.transcoder.v1 import transcoder_service_pb2 as tpb
from longtail.transcoder.v1 import transcoder_service_pb2_grpc as tpb_grpc
from longtail_cli.cli import make_test_clip, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common.grpc_server import dial
from longtail_common.ports import MEDIA_BUCKET, RAW_BUCKET, TOPIC_VIDEO_PUBLISHED
from tests.auth_helpers import bearer
from tests.real_servers import (
    make_real_metadata_store,
    make_real_object_store,
    make_real_topic_bus,
    real_config,
    restart_kafka,
)
from tests.test_e2e_embedded import create_video, upload_all

pytestmark = [pytest.mark.real, pytest.mark.slow]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    # Short and small: the point is the engines, not the encoder (test_e2e_embedded covers 720p).
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    make_test_clip(str(path), seconds=6, height=360)
    return str(path)


@pytest.fixture(scope="module")
def real_platform(real_servers, tmp_path_factory):
    cfg = copy.deepcopy(real_config(real_servers))
    tag = uuid.uuid4().hex[:8]
    cfg.data_dir = str(tmp_path_factory.mktemp("longtail-real"))
    cfg.scylla.keyspace = f"longtail_e2e_{tag}"
    cfg.s3.bucket_prefix = f"e2e{tag}-"
    cfg.webhooks.allow_networks = ["127.0.0.1/32"]  # the webhook test's loopback receiver
    cfg.webhooks.retry_initial_s, cfg.webhooks.poll_interval_s = 0.5, 0.2
    p = Platform(cfg, gateway_port=free_port(), transcoder_workers=1)
    p.start(timeout_s=180)  # first start creates the keyspace (schema agreement) and the topics
    yield p
    p.stop()


@pytest.fixture()
def client(real_platform):
    # Signed in: creating videos needs an account (the uploads then belong to it).
    with httpx.Client(timeout=60, headers=bearer(real_platform.cfg, "uploader")) as c:
        yield c


def _objects(platform):
    # An S3 store with the platform's bucket prefix, to look at what the services stored.
    return make_real_object_store({"config": platform.cfg}, bucket_prefix=platform.cfg.s3.bucket_prefix)


def test_upload_ready_watch_on_real_engines(real_platform, client, clip):
    base = real_platform.gateway_url
    vid = upload_all(client, clip, base, title="Real engines", channel="realchan")
    resp = client.get(f"{base}/v1/videos/{vid}/watch")
    assert resp.status_code in (200, 409)  # 409 until READY, never a half-ready video
    video = wait_ready(client, base, vid, timeout_s=300)
    assert video["status"] == "READY", video

    watch = client.get(f"{base}/v1/videos/{vid}/watch", params={"region": "DE", "client": "web"})
    assert watch.status_code == 200, watch.text
    watch = watch.json()
    assert watch["stream"]["served_from"] == "origin" and watch["stream"]["protocol"] == "hls"
    assert abs(watch["duration_seconds"] - 6) < 0.5
    heights = {r["height"] for r in watch["renditions"]}
    assert 360 in heights and max(heights) == 360

    # The master playlist comes through the gateway (its relative URIs could not carry a
    # signature); the media playlists name presigned S3 URLs, so segments bypass it.
    master_url = watch["stream"]["url"]
    assert master_url.startswith(base + "/origin/")
    master = client.get(master_url)
    assert master.status_code == 200 and master.text.startswith("#EXTM3U")
    assert client.get(master_url, headers={"Range": "bytes=0-6"}).content == b"#EXTM3U"
    # Signed like on the filesystem backend: unsigned or tampered gateway paths are refused.
    key = master_url.split("/", 6)[-1] if "/origin/t/" in master_url else ""
    token = master_url.split("/t/", 1)[1].split("/", 1)[0]
    assert key.startswith(f"videos/{vid}/") and client.get(f"{base}/origin/{key}").status_code == 403
    assert client.get(f"{base}/origin/t/{token[:-2]}zz/{key}").status_code == 403
    s3_endpoint = real_platform.cfg.s3.endpoint
    variant_uris = [line for line in master.text.splitlines() if line and not line.startswith("#")]
    assert variant_uris
    probed = set()
    for uri in variant_uris:
        playlist_url = urllib.parse.urljoin(master_url, uri)
        playlist = client.get(playlist_url)
        assert playlist.status_code == 200 and "#EXT-X-ENDLIST" in playlist.text, playlist.text[:300]
        segments = [line for line in playlist.text.splitlines() if line and not line.startswith("#")]
        init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', playlist.text)
        assert segments and init
        for url in (segments[0], init.group(1)):
            assert url.startswith(f"http://{s3_endpoint}/") and "X-Amz-Signature=" in url, url
        blob = client.get(init.group(1))
        seg = client.get(segments[0])
        assert blob.status_code == 200 and seg.status_code == 200 and len(seg.content) > 1000
        with av.open(io.BytesIO(blob.content + seg.content)) as container:
            stream = container.streams.video[0]
            probed.add((stream.codec_context.name, stream.codec_context.height))
    assert ("h264", 360) in probed

    # The poster is a presigned URL too, and a tampered signature is refused by the store.
    poster_url = next(t["url"] for t in watch["thumbnails"] if t["kind"] == "poster")
    poster = client.get(poster_url)
    assert poster.status_code == 200 and poster.content[:2] == b"\xff\xd8"
    assert client.get(re.sub(r"X-Amz-Signature=[0-9a-f]", "X-Amz-Signature=z", poster_url)).status_code == 403

    # Bytes really live in the S3 buckets, metadata really in the keyspace (listing).
    objects = _objects(real_platform)
    assert objects.stat(RAW_BUCKET, f"{vid}/original") is not None
    assert any(k.endswith(".m4s") for k in objects.list_keys(MEDIA_BUCKET, f"videos/{vid}/"))
    listed = client.get(f"{base}/v1/videos", params={"channel_id": "realchan"}).json()
    assert vid in [v["id"] for v in listed["videos"]]


def _published_for(platform, video_id: str, settle_s: float = 5.0, timeout_s: float = 60.0) -> list:
    """Every video.published event for `video_id`, read from the start by a fresh group."""
    bus = make_real_topic_bus({"config": platform.cfg})
    consumer = bus.consumer([TOPIC_VIDEO_PUBLISHED], f"check-{uuid.uuid4().hex[:8]}")
    found, last_seen = [], time.monotonic()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            messages = consumer.poll(timeout_s=1.0, max_records=100)
            if messages:
                last_seen = time.monotonic()
            for m in messages:
                event = events_pb2.VideoPublished()
                event.ParseFromString(m.value)
                if event.video_id == video_id:
                    found.append(event)
            if found and time.monotonic() - last_seen > settle_s:
                break
    finally:
        consumer.close()
        bus.close()
    return found


def test_webhooks_on_real_engines(real_platform, client, clip):
    """The webhook flow on Kafka and Cassandra: a receiver failing its first three
    deliveries gets uploaded, ready and deleted once each (by webhook-id), validly signed,
    and the delivery log (in the keyspace) says so."""
    from standardwebhooks.webhooks import Webhook

    from tests.test_webhooks import Receiver

    base = real_platform.gateway_url
    receiver = Receiver(fail_first=3)
    try:
        created = client.post(f"{base}/v1/webhooks", json={"url": receiver.url})
        assert created.status_code == 201, created.text
        hook = created.json()
        vid = upload_all(client, clip, base, title="Hooked on real engines", channel="realchan")
        assert wait_ready(client, base, vid, timeout_s=300)["status"] == "READY"
        assert client.delete(f"{base}/v1/videos/{vid}").status_code in (202, 204)
        # The endpoint is the account's: a video of an earlier test in this module that
        # becomes ready or gets its AV1 meanwhile is told about too. Only this video's count.
        def this_videos():
            return {wid: (headers, body) for wid, (headers, body) in receiver.accepted().items()
                    if json.loads(body)["data"]["video_id"] == vid}

        deadline = time.monotonic() + 120
        while len(this_videos()) < 3 and time.monotonic() < deadline:
            time.sleep(0.25)
        kept = this_videos()
        types = sorted(json.loads(body)["type"] for _, body in kept.values())
        assert types == ["video.deleted", "video.ready", "video.uploaded"]
        for headers, body in receiver.accepted().values():
            Webhook(hook["secret"]).verify(body, headers)
        log = client.get(f"{base}/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
        assert {d["state"] for d in log if d["event_id"] in kept} == {"succeeded"}
        assert {d["event_id"] for d in log} >= set(kept)
        assert sum(a["status_code"] == 500 for d in log for a in d["attempts"]) == 3
    finally:
        receiver.close()


def test_downloads_and_thumbnails_on_real_engines(real_platform, client, clip):
    """Issue 27's downloads and thumbnails on S3, Kafka and Cassandra: an MP4 asked for and
    remuxed by the transcoder (served as an attachment through the gateway), a thumbnail at a
    time cut once and kept in S3, the preview and a picked poster as presigned S3 URLs."""
    base = real_platform.gateway_url
    vid = upload_all(client, clip, base, title="Real downloads", channel="realchan")
    assert wait_ready(client, base, vid, timeout_s=300)["status"] == "READY"
    asked = client.post(f"{base}/v1/videos/{vid}/downloads", json={"kind": "mp4"})
    assert asked.status_code == 202 and asked.json()["height"] == 360, asked.text
    deadline = time.monotonic() + 180
    while not (listed := client.get(f"{base}/v1/videos/{vid}/watch").json()["downloads"]):
        assert time.monotonic() < deadline, "no download listed"
        time.sleep(0.5)
    assert [(d["kind"], d["height"]) for d in listed] == [("mp4", 360)]
    got = httpx.get(listed[0]["url"], timeout=60)
    assert got.status_code == 200 and got.headers["content-disposition"].startswith("attachment;")
    with av.open(io.BytesIO(got.content)) as container:
        assert abs(container.duration / 1e6 - 6) < 0.5 and container.streams.video[0].codec_context.height == 360
    assert httpx.get(listed[0]["url"].replace("/dl/t/", "/dl/t/x"), timeout=30).status_code == 403

    thumb = client.get(f"{base}/v1/videos/{vid}/thumbnail.jpg", params={"time": "2", "width": "320"})
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    assert _objects(real_platform).get_bytes(MEDIA_BUCKET, f"videos/{vid}/thumbs/at/320/2000.jpg") == thumb.content
    preview = client.get(f"{base}/v1/videos/{vid}/preview.webp")
    assert preview.status_code == 302 and real_platform.cfg.s3.endpoint in preview.headers["location"]
    assert httpx.get(preview.headers["location"], timeout=30).content[8:12] == b"WEBP"
    picked = client.put(f"{base}/v1/videos/{vid}/poster", params={"time": "4"})
    assert picked.status_code == 200, picked.text
    poster = next(t for t in picked.json()["thumbnails"] if t["kind"] == "poster")
    assert "/thumbs/poster-" in poster["url"] and httpx.get(poster["url"], timeout=30).content[:2] == b"\xff\xd8"


def test_captions_on_real_engines(real_platform, client, clip):
    """A caption added after READY on Cassandra + S3 + Kafka: recorded in the keyspace, its
    files in the bucket, the master names it, its segments are presigned S3 URLs, and
    search (reading the file from S3 after `video.changed` on Kafka) finds its words."""
    base = real_platform.gateway_url
    vid = upload_all(client, clip, base, title="Real captions", channel="realchan")
    assert wait_ready(client, base, vid, timeout_s=300)["status"] == "READY"
    srt = b"1\n00:00:01,000 --> 00:00:03,000\nQuokkaword on real engines\n"
    made = client.post(f"{base}/v1/videos/{vid}/captions", params={"language": "en"}, content=srt,
                       headers={"Content-Type": "application/x-subrip"})
    assert made.status_code == 201, made.text
    assert "X-Amz-Signature=" in made.json()["url"] and "Quokkaword" in client.get(made.json()["url"]).text
    watch = client.get(f"{base}/v1/videos/{vid}/watch").json()
    assert [c["language"] for c in watch["captions"]] == ["en"]
    master_url = watch["stream"]["url"]
    master = client.get(master_url).text
    uri = re.search(r'#EXT-X-MEDIA:TYPE=SUBTITLES,[^\n]*URI="([^"]+)"', master).group(1)
    playlist = client.get(urllib.parse.urljoin(master_url, uri))
    assert playlist.status_code == 200, playlist.text[:300]
    segments = [line for line in playlist.text.splitlines() if line and not line.startswith("#")]
    assert segments and all("X-Amz-Signature=" in s for s in segments)
    assert "Quokkaword" in client.get(segments[0]).text
    assert any(k.endswith("/captions.vtt") for k in _objects(real_platform).list_keys(MEDIA_BUCKET, f"videos/{vid}/"))
    deadline = time.monotonic() + 180  # after the Kafka restart test, search's group may still be rejoining
    while vid not in [v["id"] for v in client.get(f"{base}/v1/search", params={"q": "quokkaword"}).json()["videos"]]:
        assert time.monotonic() < deadline, "search never found the caption's word"
        time.sleep(0.5)


def _search_ids(base: str, q: str) -> list[str]:
    found = httpx.get(f"{base}/v1/search", params={"q": q}, timeout=30)
    assert found.status_code == 200, found.text
    return [v["id"] for v in found.json()["videos"]]


def _eventually(check, what: str, timeout_s: float = 240):
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_privacy_edit_and_delete_on_real_engines(real_platform, client, clip):
    """Issue 22 on Kafka, Cassandra and S3Proxy: a private video is nobody else's (404) and
    out of search at once; an edit at a stale etag is refused; a delete leaves nothing in any
    S3 bucket, in the keyspace, in the search index or in the view counts."""
    from tests.test_video_lifecycle_e2e import counted, indexed, leftovers

    base = real_platform.gateway_url
    word = "numbat" + uuid.uuid4().hex[:6]
    vid = upload_all(client, clip, base, title=f"Real {word}", channel="realchan")
    video = wait_ready(client, base, vid, timeout_s=300)
    assert video["status"] == "READY", video
    _eventually(lambda: vid in _search_ids(base, word), "search to find it")

    stale = client.patch(f"{base}/v1/videos/{vid}", json={"privacy": "private", "etag": "0" * 16})
    assert stale.status_code == 409
    private = client.patch(f"{base}/v1/videos/{vid}", json={"privacy": "private", "etag": video["etag"]})
    assert private.status_code == 200 and private.json()["privacy"] == "private"
    with httpx.Client(timeout=60, headers=bearer(real_platform.cfg, "stranger")) as stranger, \
            httpx.Client(timeout=60) as anonymous:
        for other in (stranger, anonymous):
            assert other.get(f"{base}/v1/videos/{vid}").status_code == 404
            assert other.get(f"{base}/v1/videos/{vid}/watch").status_code == 404
        assert stranger.get(f"{base}/watch/{vid}").status_code == 404
        assert anonymous.get(f"{base}/watch/{vid}").status_code == 401
        assert stranger.delete(f"{base}/v1/videos/{vid}").status_code == 404
    assert vid not in _search_ids(base, word)
    assert client.get(f"{base}/v1/videos/{vid}/watch").status_code == 200

    objects = _objects(real_platform)
    assert list(objects.list_keys(MEDIA_BUCKET, f"videos/{vid}/")) and objects.stat(RAW_BUCKET, f"{vid}/original")
    assert client.delete(f"{base}/v1/videos/{vid}").status_code == 204
    assert client.get(f"{base}/v1/videos/{vid}").status_code == 404
    assert client.get(f"{base}/watch/{vid}").status_code == 404

    _eventually(lambda: not leftovers(real_platform, vid) and not indexed(real_platform, vid)
                and not counted(real_platform, vid), "every trace of the video to go")
    store = make_real_metadata_store({"config": real_platform.cfg}, keyspace=real_platform.cfg.scylla.keyspace)
    try:
        assert store.get_video(vid) is None
    finally:
        store.close()


def test_audio_track_on_real_engines(real_platform, client, clip):
    """Issue 27's alternate audio on S3, Kafka and Cassandra: a dub uploaded (a video file:
    its sound is taken) is encoded by the transcoder, stored in S3, recorded in Cassandra,
    and served in the master playlist, whose track playlist names presigned S3 segments."""
    import m3u8

    base = real_platform.gateway_url
    vid = upload_all(client, clip, base, title="Real dub", channel="realchan")
    assert wait_ready(client, base, vid, timeout_s=300)["status"] == "READY"
    with open(clip, "rb") as fh:
        asked = client.post(f"{base}/v1/videos/{vid}/audio-tracks", params={"language": "es-419", "kind": "dub"},
                            content=fh.read(), headers={"Content-Type": "video/mp4"})
    assert asked.status_code == 202, asked.text
    deadline = time.monotonic() + 180
    while not (watched := client.get(f"{base}/v1/videos/{vid}/watch").json())["audio_tracks"]:
        assert time.monotonic() < deadline, "no audio track listed"
        time.sleep(0.5)
    assert [t["language"] for t in watched["audio_tracks"]] == ["es-419"]
    master_url = watched["stream"]["manifests"]["hls"]
    master = m3u8.loads(httpx.get(master_url, timeout=30).text, uri=master_url)
    dub = next(m for m in master.media if m.language == "es-419")
    playlist = m3u8.loads(httpx.get(dub.absolute_uri, timeout=30).text)
    assert real_platform.cfg.s3.endpoint in playlist.segments[0].uri  # presigned: straight from S3
    assert httpx.get(playlist.segments[0].uri, timeout=30).status_code == 200
    assert not list(_objects(real_platform).list_keys(RAW_BUCKET, f"{vid}/audio-tracks/"))  # the source is gone


def test_kafka_restart_mid_transcode_ready_exactly_once(real_servers, real_platform, client, clip):
    base = real_platform.gateway_url
    vid = upload_all(client, clip, base, title="Broker restart", channel="realchan")
    stub = tpb_grpc.TranscoderServiceStub(dial(real_platform.addresses["transcoder-0"], real_platform.cfg, "transcoder"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if stub.GetWorkerStatus(tpb.GetWorkerStatusRequest(), timeout=2).current_video_id == vid:
                break
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    else:
        pytest.fail("the transcoder never picked the job up")

    restart_kafka(real_servers, downtime_s=3.0)  # the broker is down while the encode runs

    video = wait_ready(client, base, vid, timeout_s=300)
    assert video["status"] == "READY", video
    published = _published_for(real_platform, vid)
    # READY happened once: every video.published event for it is the same event. Topics
    # are at-least-once, so a publish retried across the outage (or a redelivered result,
    # which placement answers by publishing again) may repeat it; consumers dedupe by
    # (video_id, publish_time). Exactly one distinct event, never a second READY.
    assert published, "no video.published event"
    assert len({e.SerializeToString(deterministic=True) for e in published}) == 1, published
    print(f"video.published events for the video: {len(published)} (identical)")
    assert published[0].publish_time.ToJsonString() == video["publish_time"]  # the one READY
    watch = client.get(f"{base}/v1/videos/{vid}/watch").json()
    renditions = [(r["codec"], r["height"]) for r in watch["renditions"]]
    assert len(renditions) == len(set(renditions)), renditions  # one set of variants
    keys = list(_objects(real_platform).list_keys(MEDIA_BUCKET, f"videos/{vid}/"))
    assert sum(k.endswith("/master.m3u8") for k in keys) == len(watch["codecs"])
    # Every service survived the outage.
    assert all(p.poll() is None for p in real_platform.procs.values()), {
        n: p.returncode for n, p in real_platform.procs.items()}
