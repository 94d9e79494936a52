"""The transcoder's metrics: encode wall time per minute of video, by codec and rendition."""
from __future__ import annotations

from longtail_common import telemetry

_encode_histogram: list = []  # created on first use, once per process


def record_encode_time(seconds: float, video_seconds: float, rungs, families) -> None:
    """longtail.transcode.seconds_per_video_minute per (codec, rendition). One decode feeds
    every encoder of the ladder in one ffmpeg graph, so a rendition's share of the wall
    time is apportioned by its pixel rate (width x height x fps); rendition="ladder" is
    the whole graph."""
    if video_seconds <= 0 or not rungs:
        return
    if not _encode_histogram:
        _encode_histogram.append(telemetry.meter().create_histogram(
            "longtail.transcode.seconds_per_video_minute",
            description="encode wall seconds per minute of video",
            explicit_bucket_boundaries_advisory=(1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600)))
    hist = _encode_histogram[0]
    per_minute = seconds / (video_seconds / 60.0)
    pixel_rates = [(f, r, r.width * r.height * r.frame_rate) for f in families for r in rungs]
    total = sum(rate for _, _, rate in pixel_rates) or 1.0
    for family, rung, rate in pixel_rates:
        hist.record(per_minute * rate / total, {"codec": family, "rendition": rung.name})
    hist.record(per_minute, {"codec": "+".join(families), "rendition": "ladder"})
