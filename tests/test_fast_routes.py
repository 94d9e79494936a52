"""The gateway's fast path (gateway/fast_routes.py) answers exactly as the FastAPI routes do:
the same get and watch JSON, the same segment bytes and headers (whole, ranges, HEAD), and
leaves to the routes what it must not answer (private videos, bad tokens and ranges,
signed-in callers), still rate limited.

An embedded platform without a transcoder makes READY videos as the load benchmark does
(an upload, then the objects and the TranscodeResult a worker would write); the app under
test runs in-process on the same data dir, with its fast path on or off.
"""
from __future__ import annotations

import copy
import os
import time
import uuid

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import video_pb2
from longtail_cli.launcher import Platform, free_port
from longtail_common import telemetry
from longtail_common.adapters import make_object_store, make_topic_bus
from longtail_common.config import Config
from longtail_common.ports import MEDIA_BUCKET, TOPIC_TRANSCODE_RESULTS
from gateway.app import create_app
from gateway.fast_routes import KEPT_AS, FastRoutes, HotFiles
from tests.auth_helpers import bearer

SEGMENT = os.urandom(50_000)


class CountingFastRoutes(FastRoutes):
    """The fast path, counting the requests it answered itself."""

    answered = 0

    async def __call__(self, scope, receive, send) -> bool:
        done = await super().__call__(scope, receive, send)
        CountingFastRoutes.answered += done
        return done


def ready_video(platform: Platform, client: httpx.Client, privacy: str) -> str:
    created = client.post("/v1/videos", json={"title": f"fast {privacy}", "channel_id": "fastchan",
                                              "size_bytes": 9, "privacy": privacy})
    assert created.status_code == 201, created.text
    vid = created.json()["id"]
    client.patch(created.json()["upload_url"], content=b"notavideo", headers={
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    objects, prefix = make_object_store(platform.cfg), f"videos/{vid}/h264"
    for name, data in {"master.m3u8": b"#EXTM3U\n240p/index.m3u8\n", "240p/index.m3u8": b"#EXTM3U\nseg0.m4s\n",
                       "240p/seg0.m4s": SEGMENT, "240p/sub.vtt": b"WEBVTT\n", "thumb.jpg": b"jpg"}.items():
        objects.put_bytes(MEDIA_BUCKET, f"{prefix}/{name}", data)
    result = events_pb2.TranscodeResult(
        video_id=vid, success=True, duration_seconds=60.0,
        renditions=[video_pb2.Rendition(codec="h264", width=426, height=240, bitrate_bps=400_000, container="fmp4",
                                        object_key=f"{prefix}/240p/index.m3u8", codecs="avc1.64001f,mp4a.40.2")],
        manifests=[video_pb2.StreamManifest(codec="h264", protocol="hls", object_key=f"{prefix}/master.m3u8")],
        thumbnails=[video_pb2.Thumbnail(object_key=f"{prefix}/thumb.jpg", width=320, height=180)])
    bus = make_topic_bus(platform.cfg)
    producer = bus.producer()
    producer.publish(TOPIC_TRANSCODE_RESULTS, result.SerializeToString(), key=vid.encode())
    producer.close()
    bus.close()
    deadline = time.monotonic() + 60
    while client.get(f"/v1/videos/{vid}").json().get("status") != "READY":
        assert time.monotonic() < deadline, "not READY"
        time.sleep(0.2)
    return vid


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("longtail-fast")))
    cfg.mesh.tls = False
    cfg.gateway.video_cache_ttl_s = 60.0
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=0) as p:
        yield p


@pytest.fixture(scope="module")
def videos(platform):
    with httpx.Client(base_url=platform.gateway_url, timeout=60, headers=bearer(platform.cfg, "fast-owner")) as c:
        return {privacy: ready_video(platform, c, privacy) for privacy in ("public", "private")}


@pytest.fixture(scope="module")
def app(platform):
    app = create_app(platform.cfg)
    app.fast_routes = CountingFastRoutes(app, app.fast_routes.rate_gate)
    with TestClient(app) as client:
        app.state.test_client = client
        yield app


def answers(app, fast: bool, method: str, url: str, **kwargs) -> httpx.Response:
    """The app's answer, with its fast path on or off."""
    routes = app.fast_routes
    if not fast:
        app.fast_routes = None
    try:
        return app.state.test_client.request(method, url, **kwargs)
    finally:
        app.fast_routes = routes


def test_get_and_watch_answer_as_their_routes(app, videos):
    vid = videos["public"]
    route_get = answers(app, False, "GET", f"/v1/videos/{vid}")  # and the video is cached
    before = CountingFastRoutes.answered
    fast_get = answers(app, True, "GET", f"/v1/videos/{vid}")
    assert CountingFastRoutes.answered == before + 1
    assert fast_get.status_code == route_get.status_code == 200
    assert fast_get.content == route_get.content and fast_get.headers["content-type"] == "application/json"
    for query in ("", "?client=safari&region=US&protocol=dash", "?client=web"):
        route, fast = (answers(app, f, "GET", f"/v1/videos/{vid}/watch{query}").json() for f in (False, True))
        for body in (route, fast):
            body["playback"].pop("id"), body["playback"].pop("expires_at")
            body["stream"]["expires_in_s"] = body["playback"]["expires_in_s"] = 0
        assert fast == route
    assert CountingFastRoutes.answered == before + 4


@pytest.mark.parametrize("query", ["?client=nokia", "?region=U1", "?region=US&region=GB", "?other=1"])
def test_watch_calls_the_fast_path_is_unsure_of_get_the_routes_answer(app, videos, query):
    before = CountingFastRoutes.answered
    fast = answers(app, True, "GET", f"/v1/videos/{videos['public']}/watch{query}")
    route = answers(app, False, "GET", f"/v1/videos/{videos['public']}/watch{query}")
    assert fast.status_code == route.status_code
    assert CountingFastRoutes.answered == before


def test_private_videos_are_the_routes_to_answer(platform, app, videos):
    vid = videos["private"]
    assert answers(app, True, "GET", f"/v1/videos/{vid}/watch").status_code == 404
    owner = answers(app, True, "GET", f"/v1/videos/{vid}/watch", headers=bearer(platform.cfg, "fast-owner"))
    assert owner.status_code == 200
    # Its stream URLs name the owner: the route checks the sign-in, anonymous callers get 403.
    master = httpx.URL(owner.json()["stream"]["url"]).raw_path.decode()
    assert answers(app, True, "GET", master).status_code == 403
    assert answers(app, True, "GET", master, headers=bearer(platform.cfg, "fast-owner")).status_code == 200


@pytest.mark.parametrize(("method", "headers"), [
    ("GET", {}), ("GET", {"Range": "bytes=0-999"}), ("GET", {"Range": "bytes=-100"}),
    ("GET", {"Range": "bytes=49000-"}), ("HEAD", {}), ("HEAD", {"Range": "bytes=10-20"}),
    ("GET", {"Range": "bytes=60000-"}), ("GET", {"Range": "bytes=9-1"}), ("GET", {"Range": "lines=1-2"})])
def test_segments_answer_as_their_route(app, videos, method, headers):
    watch = answers(app, True, "GET", f"/v1/videos/{videos['public']}/watch").json()
    base = httpx.URL(watch["stream"]["url"]).raw_path.decode().rsplit("/", 1)[0]
    for path in (f"{base}/240p/seg0.m4s", f"{base}/240p/sub.vtt"):
        route = answers(app, False, method, path, headers=headers)
        fast = answers(app, True, method, path, headers=headers)
        assert fast.status_code == route.status_code and fast.content == route.content
        assert {k: v for k, v in fast.headers.items()} == {k: v for k, v in route.headers.items()}
        assert route.status_code in (200, 206, 416)
        if path.endswith(".m4s") and method == "GET" and headers.get("Range") == "bytes=0-999":
            assert fast.status_code == 206 and fast.content == SEGMENT[:1000]


def test_bad_tokens_and_hidden_objects_get_the_routes_answer(app, videos):
    watch = answers(app, True, "GET", f"/v1/videos/{videos['public']}/watch").json()
    path = httpx.URL(watch["stream"]["url"]).raw_path.decode()
    token = path.split("/t/", 1)[1].split("/", 1)[0]
    for bad in (path.replace(token, token[:-2] + "xx"), path.replace(f"videos/{videos['public']}", "videos/other"),
                path.rsplit("/", 1)[0] + "/_result.json", path.rsplit("/", 1)[0] + "/absent.m4s"):
        fast, route = answers(app, True, "GET", bad), answers(app, False, "GET", bad)
        assert fast.status_code == route.status_code and fast.status_code in (403, 404)


def test_fast_watch_calls_are_rate_limited(platform, videos):
    cfg = copy.deepcopy(platform.cfg)
    cfg.limits.exempt_addresses = []
    cfg.limits.reads_per_address = "3 per minute"
    limited = create_app(cfg)
    with TestClient(limited) as client:
        codes = [client.get(f"/v1/videos/{videos['public']}/watch").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429], codes  # the first a cache miss (the route), then the fast path


def test_hot_objects_are_read_anew_once_their_file_changes_and_stay_within_their_budget(tmp_path):
    path = tmp_path / "seg.m4s"
    path.write_bytes(b"a" * 100)
    hot = HotFiles(max_bytes=150)
    assert hot.get(str(path))[2] == b"a" * 100
    replacement = tmp_path / "seg.new"
    replacement.write_bytes(b"b" * 120)
    os.replace(replacement, path)  # as the store writes objects: a new file renamed into place
    size, _, data = hot.get(str(path))
    assert size == 120 and data == b"b" * 120
    other = tmp_path / "other.m4s"
    other.write_bytes(b"c" * 100)
    assert hot.get(str(other))[2] == b"c" * 100
    assert hot.held <= 150  # the least recently served object made room
    path.unlink()
    assert hot.get(str(path)) is None


@pytest.fixture
def spans(app):
    """The fast path's spans, kept in memory (its tracer swapped for one of a test provider)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fast, tracer, sampler = app.fast_routes, app.fast_routes.tracer, app.fast_routes.sampler
    fast.tracer = provider.get_tracer("test")
    yield exporter
    fast.tracer, fast.sampler = tracer, sampler


def traceparent(sampled: bool) -> tuple[str, dict]:
    trace_id = uuid.uuid4().hex
    return trace_id, {"traceparent": f"00-{trace_id}-{'b' * 16}-{'01' if sampled else '00'}"}


def test_fast_calls_are_head_sampled_and_follow_their_callers_decision(app, videos, spans):
    watch = f"/v1/videos/{videos['public']}/watch"
    answers(app, True, "GET", watch)  # cached
    app.fast_routes.sampler = telemetry.HotPathSampler(0.0, keep_slower_than_ms=60_000, slow_per_s=10)
    before = CountingFastRoutes.answered
    assert all(answers(app, True, "GET", watch).status_code == 200 for _ in range(5))
    assert spans.get_finished_spans() == ()  # ratio 0: no span made
    sampled_id, sampled = traceparent(True)
    _, unsampled = traceparent(False)
    assert answers(app, True, "GET", watch, headers=sampled).status_code == 200
    assert answers(app, True, "GET", watch, headers=unsampled).status_code == 200
    assert CountingFastRoutes.answered == before + 7
    (span,) = spans.get_finished_spans()  # only the sampled caller's call
    assert f"{span.context.trace_id:032x}" == sampled_id and span.parent.span_id == int("b" * 16, 16)
    assert span.attributes["http.route"] == "/v1/videos/{video_id}/watch"
    app.fast_routes.sampler = telemetry.HotPathSampler(1.0, keep_slower_than_ms=60_000, slow_per_s=10)
    answers(app, True, "GET", watch)
    assert len(spans.get_finished_spans()) == 2  # ratio 1: every new trace


def test_slow_fast_calls_left_out_are_traced_after_the_fact(app, videos, spans):
    watch = f"/v1/videos/{videos['public']}/watch"
    answers(app, True, "GET", watch)
    # Every call is "slow" (threshold 0), all within one second of the sampler's clock.
    app.fast_routes.sampler = telemetry.HotPathSampler(0.0, keep_slower_than_ms=0, slow_per_s=2, clock=lambda: 7.0)
    caller_id, unsampled = traceparent(False)
    assert answers(app, True, "GET", watch, headers=unsampled).status_code == 200
    (slow,) = spans.get_finished_spans()
    assert slow.attributes[KEPT_AS] == "slow" and slow.parent is None  # a trace of its own ...
    assert f"{slow.links[0].context.trace_id:032x}" == caller_id  # ... linked to the caller's
    assert slow.start_time < slow.end_time
    for _ in range(4):
        answers(app, True, "GET", watch)
    assert len(spans.get_finished_spans()) == 2  # at most 2 a second
