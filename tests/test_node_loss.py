"""A node lost under load, in CI: two full platform nodes on this machine (each its own
processes and ports, sharing the session's Kafka, Cassandra and S3Proxy, one mesh CA and
one set of secrets; every gRPC client balances over both nodes' replicas) behind HAProxy,
health-checked on /healthz. Under a bounded load of watch calls, manifest and segment
fetches and slow tus uploads, one node is SIGKILLed (every process, ffmpeg included)
while an upload and a transcode are under way on it. The scenario and its report are
bench/node_loss.py's (`python bench/node_loss.py` is the longer benchmark).

Asserted: the balancer takes the dead node out; watch, manifest and segment requests fail
only if they were in flight at the kill, and none fails after recovery; every upload
started completes (a PATCH that failed resumes from HEAD's offset, no acknowledged byte
lost) with exactly the bytes sent, through the surviving node; the transcode that was
running is redelivered; every video is READY, with exactly one distinct video.published
event. No timing is asserted: the times go to the report (pytest's tmp dir, and printed).
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

from longtail_testservers.haproxy import MISSING_HAPROXY_PREFIX, haproxy_available
from tests.bench_modules import load_bench
from tests.real_servers import real_config

pytestmark = [pytest.mark.real, pytest.mark.slow]


@pytest.fixture(scope="module")
def haproxy():
    ok, reason = haproxy_available()
    if not ok:
        if os.environ.get("CI", "").strip():
            pytest.fail(MISSING_HAPROXY_PREFIX + reason + " (CI is set: a missing balancer fails)", pytrace=False)
        pytest.skip(MISSING_HAPROXY_PREFIX + reason)
    return shutil.which("haproxy")


def test_node_lost_under_load(real_servers, haproxy, tmp_path):
    node_loss = load_bench("node_loss")
    report = node_loss.run_scenario(real_config(real_servers), tmp_path)
    (tmp_path / "node_loss.json").write_text(json.dumps(report, indent=1))
    print("\n" + node_loss.summary(report) + f"\nreport: {tmp_path / 'node_loss.json'}")

    kill, phases, uploads = report["kill"], report["phases"], report["uploads"]
    assert kill["transcoding"] and kill["uploads_in_progress"] and kill["processes"] >= 6, kill
    assert report["recovery"]["balancer_out_s"] >= 0  # the health checks took the dead node out
    # Reads: only a request in flight on the dead node may fail; none after recovery.
    reads = ("watch", "manifest", "segment")
    stray = [e for e in report["errors"] if e["kind"] in reads and not e["in_flight_at_kill"]]
    assert not stray, stray
    assert all(phases["after"][kind]["requests"] > 0 for kind in ("watch", "manifest", "segment", "upload")), phases
    assert all(phases["after"][kind]["errors"] == 0 and phases["after"][kind]["conflicts"] == 0 for kind in reads)
    assert phases["after"]["upload"]["errors"] == 0 and phases["after"]["upload"]["conflicts"] == 0, report["errors"]
    # Uploads: every one started is READY, with the bytes sent; a resumed one lost no acknowledged byte.
    assert uploads["started"] >= 2 and uploads["ready"] == uploads["started"], uploads["not_ready"]
    assert uploads["raw_differs_from_sent"] == []
    assert uploads["not_found_by_search"] == []  # the surviving search replica knows every video
    for video_id, resumes in uploads["resumed"].items():
        assert all(r["head_offset"] >= r["acked_before"] for r in resumes), (video_id, resumes)
    assert set(kill["uploads_in_progress"]) & set(uploads["resumed"]) or not kill["patch_in_flight"], uploads
    # The interrupted transcode and every other: READY exactly once.
    assert uploads["ready_events"] == {"missing": [], "duplicated": {}}, uploads["ready_events"]
