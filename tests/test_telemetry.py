"""One upload, one trace: OpenTelemetry across the gateway, gRPC and the topics.

Every process writes its finished spans as JSON lines under DATA_DIR/traces/ (what
`longtail traces` reads); these tests read the same files. Chunked transcoding is on, so
the trace must also run through every chunk job a worker picked up from the topic.
The same assertions run on the embedded backends and on the real engines (Kafka,
Cassandra, S3Proxy).
"""
from __future__ import annotations

import copy
import json
import re
import time
import uuid

import httpx
import pytest

from longtail_cli.cli import make_test_clip, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common import telemetry
from longtail_common.config import Config
from tests.auth_helpers import bearer
from tests.test_e2e_embedded import upload_all
from transcoder_svc.jobs.families import codec_families

pytestmark = pytest.mark.slow

CHUNKS = 3


def chunked(cfg: Config) -> Config:
    cfg.transcoder.chunk_seconds = 4  # the 12 s clip -> 3 chunk jobs
    cfg.transcoder.chunk_min_duration_s = 5
    return cfg


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    make_test_clip(str(path), seconds=12, height=240)
    return str(path)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = chunked(Config(data_dir=str(tmp_path_factory.mktemp("longtail"))))
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=2) as p:
        yield p


def eventually(platform, video_id: str, check, timeout_s: float = 30.0):
    """check(spans of the video's traces) once it passes: each process exports its spans in
    batches, so a trace fills in over a second or two (longer on a loaded machine)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = telemetry.traces_for_video(telemetry.load_spans(platform.cfg.data_path), video_id)
        spans = [s for t in found.values() for s in t]
        try:
            return check(spans)
        except (AssertionError, KeyError, IndexError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def named(spans, service: str, name: str) -> list[dict]:
    return [s for s in spans if s["service"] == service and s["name"] == name]


def ancestry(span: dict, by_id: dict) -> list[dict]:
    chain = [span]
    while chain[-1]["parent_span_id"]:
        chain.append(by_id[chain[-1]["parent_span_id"]])  # KeyError = a broken parent link
    return chain


def hops(chain: list[dict]) -> list[str]:
    """The services a chain passes through, root first, consecutive repeats folded."""
    out: list[str] = []
    for s in reversed(chain):
        if not out or out[-1] != s["service"]:
            out.append(s["service"])
    return out


def assert_one_trace_for_the_upload(platform, video_id: str) -> str:
    return eventually(platform, video_id, lambda spans: check_one_trace(spans, video_id))


def check_one_trace(spans: list[dict], video_id: str) -> str:
    publish = [s for s in spans if s["service"] == "upload_svc" and s["name"] == "publish transcode.requests"]
    assert len(publish) == 1, [s["name"] for s in spans]
    trace_id = publish[0]["trace_id"]
    in_trace = [s for s in spans if s["trace_id"] == trace_id]
    by_id = {s["span_id"]: s for s in in_trace}

    # Exactly one root: the gateway's upload request. Every other span's parent is in the trace.
    roots = [s for s in in_trace if not s["parent_span_id"]]
    assert len(roots) == 1 and roots[0]["service"] == "gateway" and roots[0]["kind"] == "SERVER", roots
    assert roots[0]["name"] == "PATCH /v1/uploads/{video_id}"
    orphans = [s["name"] for s in in_trace if s["parent_span_id"] and s["parent_span_id"] not in by_id]
    assert not orphans, orphans

    # Each chunk job ran as its own consumer span under the split, on the same trace.
    chunk_spans = sorted((s for s in in_trace if s["name"].startswith("transcode chunk")),
                         key=lambda s: s["attributes"]["longtail.chunk.index"])
    assert [s["attributes"]["longtail.chunk.index"] for s in chunk_spans] == list(range(CHUNKS))
    for s in chunk_spans:
        parent = by_id[s["parent_span_id"]]
        assert parent["kind"] == "CONSUMER" and parent["name"] == "process transcode.requests"
        producer = by_id[parent["parent_span_id"]]
        assert producer["kind"] == "PRODUCER" and producer["service"] == "transcoder_svc"
        assert by_id[producer["parent_span_id"]]["name"] == "transcode"  # the split

    # The READY write: placement_svc -> metadata_svc, reached from the upload through every hop.
    ready_writes = [s for s in named(in_trace, "metadata_svc", "/longtail.metadata.v1.MetadataService/UpdateVideo")
                    if by_id[s["parent_span_id"]]["service"] == "placement_svc"]
    assert ready_writes, "no placement UpdateVideo in the upload's trace"
    chain = ancestry(ready_writes[0], by_id)
    assert hops(chain) == ["gateway", "upload_svc", "transcoder_svc", "placement_svc", "metadata_svc"], hops(chain)
    kinds = [s["kind"] for s in reversed(chain)]
    # gRPC hops are CLIENT -> SERVER pairs; topic hops PRODUCER -> CONSUMER pairs.
    assert kinds.count("PRODUCER") >= 3 and kinds.count("CONSUMER") >= 3, kinds
    # ... and it runs through the last chunk job's consumer span (that worker joins and publishes).
    chunk_parents = {s["parent_span_id"] for s in chunk_spans}
    assert any(s["span_id"] in chunk_parents for s in chain)

    # video.published is in the trace too, and search consumed it there.
    published = named(in_trace, "placement_svc", "publish video.published")
    assert published and published[0]["attributes"][telemetry.VIDEO_ID] == video_id
    assert any(by_id.get(s["parent_span_id"]) is published[0] for s in named(in_trace, "search_svc", "process video.published"))
    decision = named(in_trace, "placement_svc", "process transcode.results")[0]
    assert decision["attributes"]["longtail.placement.decisions"]
    return trace_id


@pytest.fixture(scope="module")
def traced_video(platform, clip) -> str:
    """A chunked upload, READY."""
    with httpx.Client(timeout=60, headers=bearer(platform.cfg, "uploader")) as client:
        vid = upload_all(client, clip, platform.gateway_url, title="traced")
        assert wait_ready(client, platform.gateway_url, vid, timeout_s=240)["status"] == "READY"
    return vid


def test_upload_is_one_trace_across_every_hop(platform, traced_video):
    vid = traced_video
    trace_id = assert_one_trace_for_the_upload(platform, vid)

    # JSON logs carry the trace: the split's log line names this trace id.
    lines = [json.loads(line) for i in range(2) for line in
             (platform.log_dir / f"transcoder-{i}.log").read_text().splitlines() if line.startswith("{")]
    assert any(e.get("trace_id") == trace_id and "chunk jobs" in e.get("msg", "") for e in lines)


def children(spans: list[dict], parent: dict) -> dict[str, dict]:
    """The steps directly under `parent` (its publishes aside), by name: each name once."""
    under = [s for s in spans if s["parent_span_id"] == parent["span_id"] and not s["name"].startswith("publish ")]
    out = {s["name"]: s for s in under}
    assert len(out) == len(under), f"a step twice: {[s['name'] for s in under]}"
    return out


def assert_encode_per_family(spans: list[dict], encode: dict, families: list[str]) -> None:
    """One child span per codec family over the graph's run, with the bytes it wrote."""
    per_family = children(spans, encode)
    assert set(per_family) == {f"{encode['name']} {f}" for f in families}, per_family
    for family in families:
        span = per_family[f"{encode['name']} {family}"]
        assert span["attributes"]["longtail.codec"] == family and span["attributes"]["longtail.rungs"]
        assert span["attributes"]["longtail.bytes"] > 0 and span["attributes"]["longtail.objects"] > 0
        # Every family's encoders ran for the whole graph (one decode feeds them all).
        assert encode["start_ns"] <= span["start_ns"] < span["end_ns"] <= encode["end_ns"]
    assert len({(s["start_ns"], s["end_ns"]) for s in per_family.values()}) == 1
    assert encode["attributes"]["longtail.bytes"] == sum(
        per_family[f"{encode['name']} {f}"]["attributes"]["longtail.bytes"] for f in families)


def assert_stored(span: dict) -> None:
    assert span["attributes"]["longtail.objects"] > 0 and span["attributes"]["longtail.bytes"] > 0, span


def test_the_transcode_is_visible_inside_in_chunks(platform, traced_video):
    """The split probes; each chunk job downloads, encodes (per family) and stores its chunk;
    the one that joins also downloads the chunks, joins, packages, draws the storyboard and
    the poster and stores the video."""
    families = codec_families(platform.cfg)

    def check(spans):
        split = [s for s in spans if s["service"] == "transcoder_svc" and s["name"] == "transcode"]
        assert len(split) == 1
        steps = children(spans, split[0])
        assert {"download source", "probe"} <= set(steps), steps
        assert_stored(steps["download source"])
        assert steps["probe"]["attributes"]["longtail.duration_seconds"] > 11
        chunk_jobs = [s for s in spans if s["name"].startswith("transcode chunk")]
        assert len(chunk_jobs) == CHUNKS
        joined = []
        for job in chunk_jobs:
            steps = children(spans, job)
            assert {"download source", "encode chunk", "store chunk"} <= set(steps), steps
            assert_encode_per_family(spans, steps["encode chunk"], families)
            assert_stored(steps["store chunk"])
            if "join" in steps:
                joined.append(job)
                assert {"download chunks", "package", "storyboard", "poster", "store",
                        "delete chunk files"} <= set(steps), steps
                assert_encode_per_family(spans, steps["join"], families)
                for name in ("download chunks", "store"):
                    assert_stored(steps[name])
                order = sorted(steps.values(), key=lambda s: s["start_ns"])
                names = [s["name"] for s in order]
                assert names.index("join") < names.index("package") < names.index("store")
        assert len(joined) == 1, [s["name"] for s in chunk_jobs]

    eventually(platform, traced_video, check)


def test_the_transcode_is_visible_inside_in_one_piece(platform, tmp_path):
    short = tmp_path / "short.mp4"
    make_test_clip(str(short), seconds=3, height=240)  # under chunk_min_duration_s: one job
    with httpx.Client(timeout=60, headers=bearer(platform.cfg, "uploader")) as client:
        vid = upload_all(client, str(short), platform.gateway_url, title="whole")
        assert wait_ready(client, platform.gateway_url, vid, timeout_s=240)["status"] == "READY"
    families = codec_families(platform.cfg)

    def check(spans):
        job = [s for s in spans if s["service"] == "transcoder_svc" and s["name"] == "transcode"]
        assert len(job) == 1
        steps = children(spans, job[0])
        names = [s["name"] for s in sorted(steps.values(), key=lambda s: s["start_ns"])]
        assert names == ["download source", "probe", "crop detection", "encode", "top rung check", "package",
                         "storyboard", "poster", "preview", "store"], names
        assert_encode_per_family(spans, steps["encode"], families)
        assert_stored(steps["download source"])
        assert_stored(steps["store"])
        assert steps["storyboard"]["attributes"]["longtail.storyboard.sprite_from"] == "encode"

    eventually(platform, vid, check)


def test_failed_transcode_leaves_an_error_span_with_the_reason(platform, tmp_path):
    junk = tmp_path / "notes.mp4"
    junk.write_bytes(b"this is a text file, not a video\n" * 200)
    with httpx.Client(timeout=60, headers=bearer(platform.cfg, "uploader")) as client:
        vid = upload_all(client, str(junk), platform.gateway_url, title="not a video")
        video = wait_ready(client, platform.gateway_url, vid, timeout_s=120)
    assert video["status"] == "FAILED" and video["failure_reason"]

    def check(spans):
        failed = [s for s in spans if s["service"] == "transcoder_svc" and s["name"] == "transcode"]
        assert failed and failed[0]["status"] == "ERROR", failed
        assert failed[0]["status_description"] == video["failure_reason"][:500]
        assert failed[0]["attributes"]["longtail.failure_reason"] == video["failure_reason"][:500]
        # ... in the upload's trace, which placement also joined when the failed result came in.
        same = [s for s in spans if s["trace_id"] == failed[0]["trace_id"]]
        assert any(s["service"] == "gateway" and not s["parent_span_id"] for s in same)
        assert named(same, "placement_svc", "process transcode.results")

    eventually(platform, vid, check)


def _scrape_all(platform) -> str:
    text = []
    for port_file in (platform.cfg.data_path / "metrics").glob("*.port"):
        text.append(httpx.get(f"http://127.0.0.1:{port_file.read_text().strip()}/metrics", timeout=10).text)
    return "\n".join(text)


def _series(text: str, name: str, **labels) -> list[float]:
    out = []
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            out.append(float(line.rsplit(" ", 1)[1]))
    return out


def test_prometheus_metrics_cover_routes_methods_lag_transcode_and_placement(platform, clip):
    # Runs after an upload in this module (pytest keeps file order); make one more to be sure.
    with httpx.Client(timeout=60, headers=bearer(platform.cfg, "uploader")) as client:
        vid = upload_all(client, clip, platform.gateway_url, title="metrics")
        assert wait_ready(client, platform.gateway_url, vid, timeout_s=240)["status"] == "READY"
        assert client.get(f"{platform.gateway_url}/v1/videos/nosuch").status_code == 404
    deadline = time.monotonic() + 30  # the lag gauge refreshes every 10 s
    while True:
        text = _scrape_all(platform)
        lag = _series(text, "longtail_topic_lag", topic="transcode.requests", group="transcoder")
        if lag or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert _series(text, "http_server_request_duration_seconds_count", http_route="/v1/videos", http_request_method="POST")
    assert _series(text, "http_server_request_duration_seconds_count", http_route="/v1/videos/{video_id}",
                   http_response_status_code="404")
    assert sum(_series(text, "rpc_server_duration_seconds_count",
                       rpc_method="/longtail.metadata.v1.MetadataService/GetVideo", rpc_grpc_status_code="OK")) >= 2
    assert _series(text, "rpc_server_duration_seconds_count",
                   rpc_method="/longtail.metadata.v1.MetadataService/GetVideo", rpc_grpc_status_code="NOT_FOUND")
    assert lag and all(v >= 0 for v in lag), "no topic lag series for the transcoder group"
    per_rung = _series(text, "longtail_transcode_seconds_per_video_minute_count", codec="h264", rendition="240p")
    assert per_rung and sum(per_rung) >= CHUNKS  # one observation per chunk encode
    assert sum(_series(text, "longtail_placement_decisions_total", source="new_video", served_from="origin")) >= 2


@pytest.mark.real
def test_upload_is_one_trace_on_the_real_engines(real_servers, clip, tmp_path):
    from tests.real_servers import real_config

    cfg = chunked(copy.deepcopy(real_config(real_servers)))
    tag = uuid.uuid4().hex[:8]
    cfg.data_dir = str(tmp_path / "longtail-real")
    cfg.scylla.keyspace = f"longtail_otel_{tag}"
    cfg.s3.bucket_prefix = f"otel{tag}-"
    p = Platform(cfg, gateway_port=free_port(), transcoder_workers=2)
    p.start(timeout_s=180)  # first start creates the keyspace and buckets
    try:
        with httpx.Client(timeout=60, headers=bearer(p.cfg, "uploader")) as client:
            vid = upload_all(client, clip, p.gateway_url, title="traced on kafka")
            assert wait_ready(client, p.gateway_url, vid, timeout_s=300)["status"] == "READY"
        trace_id = assert_one_trace_for_the_upload(p, vid)
    finally:
        p.stop()
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
