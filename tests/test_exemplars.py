"""Histogram exemplars: a bucket of the OpenMetrics exposition (what Prometheus asks for)
names the trace and span of the last sampled measurement that fell in it, on every scrape;
the plain text format stays as it was."""
from __future__ import annotations

import re

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from longtail_common.telemetry import ExemplarPrometheusReader


def _bucket_lines(text: str, name: str) -> dict[str, str]:
    """le -> the rest of the bucket line (its count and exemplar, if any)."""
    out = {}
    for line in text.splitlines():
        match = re.fullmatch(rf'{name}_bucket\{{[^}}]*le="([^"]+)"[^}}]*\}} (.*)', line)
        if match:
            out[match.group(1)] = match.group(2)
    return out


def test_buckets_link_to_the_trace_of_their_last_measurement():
    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[ExemplarPrometheusReader(registry=registry, disable_target_info=True)])
    tracer = TracerProvider().get_tracer("test")
    histogram = provider.get_meter("test").create_histogram(
        "longtail.test.step_seconds", explicit_bucket_boundaries_advisory=(1, 10, 100))
    histogram.record(0.5, {"step": "probe"})  # outside any span: no trace to link to
    with tracer.start_as_current_span("encode") as span:
        histogram.record(42.0, {"step": "encode"})
        ids = span.get_span_context()
    try:
        for _scrape in range(2):  # the exemplar stays for the next scraper
            text = generate_openmetrics(registry).decode()
            encode = _bucket_lines("\n".join(line for line in text.splitlines() if 'step="encode"' in line),
                                   "longtail_test_step_seconds")
            assert encode["100"] == (f'1.0 # {{span_id="{ids.span_id:016x}",trace_id="{ids.trace_id:032x}"}} 42.0 '
                                       + encode["100"].rsplit(" ", 1)[1])
            assert [le for le, rest in encode.items() if "#" in rest] == ["100"]
            probe_lines = [line for line in text.splitlines() if 'step="probe"' in line]
            assert probe_lines and not any("# {" in line for line in probe_lines)
        assert "# {" not in generate_latest(registry).decode()  # the text format has no exemplars
    finally:
        provider.shutdown()
