"""Placement metrics for SREs: decisions per region and the CDN share per region.

Decisions are counted where they are made (a new video's cold start here in the service,
the daily re-decision in `longtail placement run`). The CDN share is what the last daily
run left: that job writes its per-region totals to the object store, and the service
(the long-running process Prometheus scrapes) reports them as a gauge.
"""
from __future__ import annotations

import json
import threading
import time

from longtail.metadata.v1 import video_pb2
from longtail_common import telemetry
from longtail_common.ports import NotFoundError
from placement_svc.modelstore import MODEL_BUCKET

DAILY_SUMMARY_KEY = "daily/latest.json"  # in the placement bucket, beside the models
_SUMMARY_TTL_S = 30.0

_instruments: dict = {}
_lock = threading.Lock()


def _decisions_counter():
    with _lock:
        if "decisions" not in _instruments:
            _instruments["decisions"] = telemetry.meter().create_counter(
                "longtail.placement.decisions", description="placement decisions by region and outcome")
        return _instruments["decisions"]


def record_decisions(placements, source: str) -> None:
    """source: "new_video" (at READY) or "daily" (the daily job's changes)."""
    counter = _decisions_counter()
    for p in placements:
        served = "cdn" if p.served_from == video_pb2.SERVED_FROM_CDN else "origin"
        counter.add(1, {"region": p.region, "served_from": served, "source": source})


def write_daily_summary(objects, day: str, regions: list[str], videos: int, on_cdn_by_region: dict[str, int],
                        changes: dict[tuple[str, str], int] | None = None) -> None:
    """changes: (region, "cdn"|"origin") -> decisions the run changed. The batch job is not
    scraped, so the service adds them to its decisions counter (once per run)."""
    body = {"run_id": f"{day}@{time.time():.3f}", "date": day, "videos": videos,
            "on_cdn": {r: int(on_cdn_by_region.get(r, 0)) for r in regions},
            "changes": [[r, served, n] for (r, served), n in sorted((changes or {}).items())]}
    objects.ensure_bucket(MODEL_BUCKET)
    objects.put_bytes(MODEL_BUCKET, DAILY_SUMMARY_KEY, json.dumps(body).encode(), content_type="application/json")


def register_cdn_share_gauge(objects) -> None:
    """longtail.cdn_share{region}: share of READY videos on the CDN after the last daily run."""
    def read():
        try:
            return json.loads(objects.get_bytes(MODEL_BUCKET, DAILY_SUMMARY_KEY))
        except (NotFoundError, ValueError):
            return None

    try:
        baseline = read()  # a run from before this process started was counted by its predecessor
    except Exception:  # noqa: BLE001 - the store may still be coming up
        baseline = None
    cache: dict = {"at": -1e9, "summary": baseline, "counted_run": baseline.get("run_id") if baseline else ""}

    def observe(_options):
        from opentelemetry.metrics import Observation

        if time.monotonic() - cache["at"] > _SUMMARY_TTL_S:
            cache["at"] = time.monotonic()
            try:
                cache["summary"] = read()
            except Exception:  # noqa: BLE001 - a scrape must not fail on a store hiccup
                pass
        summary = cache["summary"]
        run_id = summary.get("run_id") if summary else ""
        if summary and run_id != cache["counted_run"]:
            cache["counted_run"] = summary.get("run_id")
            for region, served, n in summary.get("changes", []):
                _decisions_counter().add(n, {"region": region, "served_from": served, "source": "daily"})
        if not summary or not summary.get("videos"):
            return []
        return [Observation(n / summary["videos"], {"region": r}) for r, n in summary["on_cdn"].items()]

    with _lock:
        if "cdn_share" not in _instruments:
            _instruments["cdn_share"] = telemetry.meter().create_observable_gauge(
                "longtail.cdn_share", callbacks=[observe],
                description="share of READY videos served from the CDN per region (last daily run)")
