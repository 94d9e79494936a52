"""The transcoder's telemetry: encode wall time per minute of video (by codec and rendition),
and each step of a job (probe, encode, package, storyboard, store...) as a child span of the
job's span, timed into a step histogram whose exemplars link back to those spans."""
from __future__ import annotations

import contextlib
import pathlib
import time
from typing import Iterator

from longtail_common import telemetry

_instruments: dict = {}  # created on first use, once per process

# Seconds: a probe's tenth of a second to a long film's encode.
STEP_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def _histogram(name: str, description: str, buckets: tuple):
    if name not in _instruments:
        _instruments[name] = telemetry.meter().create_histogram(
            name, description=description, explicit_bucket_boundaries_advisory=buckets)
    return _instruments[name]


def record_encode_time(seconds: float, video_seconds: float, rungs, families) -> None:
    """longtail.transcode.seconds_per_video_minute per (codec, rendition). One decode feeds
    every encoder of the ladder in one ffmpeg graph, so a rendition's share of the wall
    time is apportioned by its pixel rate (width x height x fps); rendition="ladder" is
    the whole graph."""
    if video_seconds <= 0 or not rungs:
        return
    hist = _histogram("longtail.transcode.seconds_per_video_minute", "encode wall seconds per minute of video",
                      (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600))
    per_minute = seconds / (video_seconds / 60.0)
    pixel_rates = [(f, r, r.width * r.height * r.frame_rate) for f in families for r in rungs]
    total = sum(rate for _, _, rate in pixel_rates) or 1.0
    for family, rung, rate in pixel_rates:
        hist.record(per_minute * rate / total, {"codec": family, "rendition": rung.name})
    hist.record(per_minute, {"codec": "+".join(families), "rendition": "ladder"})


@contextlib.contextmanager
def step(name: str, **attributes) -> Iterator:
    """The block as span `name`, a child of the current span (the job's), with `attributes`
    (dotted names: pass them as a dict, `**{"longtail.x": 1}`). When it succeeds its wall
    time goes to longtail.transcode.step_seconds{step=name}, recorded inside the span so
    the bucket's exemplar is this span. Yields the span (to add attributes or events)."""
    started = time.perf_counter()
    with telemetry.tracer().start_as_current_span(name, attributes=attributes) as span:
        yield span
        _histogram("longtail.transcode.step_seconds", "wall seconds of each step of a transcode job",
                   STEP_BUCKETS_S).record(time.perf_counter() - started, {"step": name})


def files_and_bytes(folder: pathlib.Path) -> tuple[int, int]:
    """(files, bytes) under `folder` (0, 0 when it does not exist)."""
    sizes = [p.stat().st_size for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return len(sizes), sum(sizes)


@contextlib.contextmanager
def encode_step(name: str, out_dir: str, families, rungs) -> Iterator:
    """`step(name)` around one ffmpeg graph that encodes every family of `families` at once
    (one decode feeds every encoder), writing each under <out_dir>/<family>/. Each family
    gets a child span over the same interval (its encoders ran throughout) with the
    rungs and the bytes it wrote."""
    rung_names = [r.name for r in rungs]
    with step(name, **{"longtail.codec_families": list(families), "longtail.rungs": rung_names}) as span:
        start_ns = time.time_ns()
        yield span
        end_ns, written = time.time_ns(), 0
        for family in families:
            files, size = files_and_bytes(pathlib.Path(out_dir) / family)
            written += size
            telemetry.tracer().start_span(f"{name} {family}", start_time=start_ns, attributes={
                "longtail.codec": family, "longtail.rungs": rung_names, "longtail.objects": files,
                "longtail.bytes": size}).end(end_time=end_ns)
        span.set_attribute("longtail.bytes", written)
