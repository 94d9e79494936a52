"""The hot path's head sampler and cheap histogram (longtail_common/telemetry.py):
HotPathSampler takes ParentBased(TraceIdRatioBased) decisions before a span exists and
keeps slow calls, within a budget; BoundHistogram records exactly what Histogram.record
would; both are set from [telemetry] config."""
from __future__ import annotations

import random

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from longtail_common.config import load_config
from longtail_common.telemetry import BoundHistogram, HotPathSampler


def caller(sampled: bool):
    ctx = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=True,
                      trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT))
    return trace.set_span_in_context(NonRecordingSpan(ctx))


def test_a_callers_decision_wins_over_the_ratio():
    assert HotPathSampler(0.0, 20, 10).sampled(caller(True))
    assert not HotPathSampler(1.0, 20, 10).sampled(caller(False))


def test_new_traces_are_kept_at_the_ratio():
    random.seed(3)
    sampler = HotPathSampler(0.1, 20, 10)
    kept = sum(sampler.sampled(None) for _ in range(20_000))
    assert 1_700 < kept < 2_300
    assert not any(HotPathSampler(0.0, 20, 10).sampled(None) for _ in range(1000))
    assert all(HotPathSampler(1.0, 20, 10).sampled(None) for _ in range(1000))
    # A context without a valid span (no traceparent, or a malformed one) is a new trace.
    assert all(HotPathSampler(1.0, 20, 10).sampled(trace.set_span_in_context(trace.INVALID_SPAN)) for _ in range(10))


def test_slow_calls_are_kept_within_a_budget_per_second():
    now = [100.2]
    sampler = HotPathSampler(0.0, keep_slower_than_ms=20, slow_per_s=2, clock=lambda: now[0])
    assert not sampler.keep_slow(0.019)
    assert [sampler.keep_slow(0.5) for _ in range(3)] == [True, True, False]
    now[0] = 101.0
    assert sampler.keep_slow(0.021)


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_a_ratio_outside_zero_to_one_is_refused(ratio):
    with pytest.raises(ValueError, match="fast_path_sample_ratio"):
        HotPathSampler(ratio, 20, 10)


def test_the_sampler_is_configured_in_telemetry(tmp_path):
    toml = tmp_path / "longtail.toml"
    toml.write_text("[telemetry]\nfast_path_sample_ratio = 0.25\nfast_path_slow_traces_per_s = 3\n")
    cfg = load_config(toml, env={"LONGTAIL_TELEMETRY__FAST_PATH_KEEP_SLOWER_THAN_MS": "40"})
    sampler = HotPathSampler.from_config(cfg.telemetry)
    assert (sampler.ratio, sampler.slow_s, sampler.slow_per_s) == (0.25, 0.04, 3)
    assert load_config(env={}).telemetry.fast_path_sample_ratio == 0.01  # the default
    bad = load_config(env={"LONGTAIL_TELEMETRY__FAST_PATH_SAMPLE_RATIO": "2"})
    with pytest.raises(ValueError):
        HotPathSampler.from_config(bad.telemetry)


def histogram_points(reader) -> dict:
    (metric,) = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
    return {tuple(sorted(p.attributes.items())): (p.count, p.sum, list(p.bucket_counts), p.min, p.max)
            for p in metric.data.data_points}


@pytest.mark.parametrize("temporality", [AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA])
def test_bound_histogram_records_what_record_would(temporality):
    """Cumulative readers (Prometheus) take the direct way, delta ones the usual one; the
    figures are the same either way, and other attribute sets are untouched."""
    attrs = {"http.route": "/v1/videos/{video_id}/watch", "http.response.status_code": 200}
    values = [0.0004, 0.003, 0.003, 0.07, 2.0, 0.011]
    figures = []
    for bound in (False, True):
        reader = InMemoryMetricReader(preferred_temporality={Histogram: temporality})
        histogram = MeterProvider(metric_readers=[reader]).get_meter("t").create_histogram("d", unit="s")
        histogram.record(0.5, {"http.route": "/other"})
        recorder = BoundHistogram(histogram, attrs)
        for v in values:
            recorder.record(v) if bound else histogram.record(v, attrs)
        figures.append(histogram_points(reader))
        if bound:
            direct = bool(recorder._aggregations)
    assert figures[0] == figures[1]
    assert direct == (temporality is AggregationTemporality.CUMULATIVE)
