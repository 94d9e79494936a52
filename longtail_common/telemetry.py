"""OpenTelemetry for every Longtail process: traces, metrics, and context across topics.

* Traces: one TracerProvider per process. Spans go to an OTLP/HTTP collector when
  `telemetry.otlp_endpoint` is set, and (by default) to JSON lines under
  DATA_DIR/traces/<service>-<pid>.jsonl, which `longtail traces VIDEO_ID` reads in the
  embedded setup where no collector runs.
* Context crosses gRPC through the OpenTelemetry gRPC instrumentation's interceptors
  (see grpc_server.py) and topics through W3C `traceparent` message headers: a
  producer span is opened around every publish and injected into the headers, and the
  consume loop continues the trace from them (see consumer.py), on Kafka and on the
  embedded log alike.
* Metrics: an OpenTelemetry MeterProvider exported for Prometheus scraping on
  `telemetry.prometheus_port` (0 = an ephemeral port written to
  DATA_DIR/metrics/<service>-<pid>.port, so a scraper or a test can find it). Histogram
  buckets carry exemplars (the trace and span of the last measurement that fell in them)
  in the OpenMetrics exposition Prometheus asks for, so a slow bucket links to a trace.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import Sequence

from bisect import bisect_left

import orjson
from opentelemetry import context as otel_context, metrics, propagate, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader, _CustomCollector
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes
from opentelemetry.sdk.metrics._internal.measurement import Measurement
from opentelemetry.sdk.metrics.export import Histogram
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

log = logging.getLogger(__name__)

# Headers that carry trace context in topic messages (W3C Trace Context + baggage).
_CONTEXT_HEADERS = ("traceparent", "tracestate", "baggage")
VIDEO_ID = "longtail.video_id"  # the span attribute every flow shares
_EMPTY_CONTEXT = otel_context.Context()

# Seconds: from a fast metadata read to a slow upload chunk or a long transcode.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

_state: dict = {}
_lock = threading.Lock()


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans, one JSON object per line, to a file of this process."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "ab")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        # orjson: this runs in the serving process (the gateway's busiest spans are its hot calls).
        lines = [orjson.dumps(span_to_dict(s)) for s in spans]
        with self._lock:
            self._fh.write(b"\n".join(lines) + b"\n")
            self._fh.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._fh.close()


def span_to_dict(span: ReadableSpan) -> dict:
    ctx = span.get_span_context()
    return {
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else "",
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name", ""),
        "instance": span.resource.attributes.get("service.instance.id", ""),  # which process
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "status_description": span.status.description or "",
        "attributes": {k: (v if isinstance(v, (str, int, float, bool)) else list(v)) for k, v in span.attributes.items()},
        "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events],
    }


def setup(service: str, cfg) -> None:
    """Configures tracing and metrics for this process (idempotent)."""
    with _lock:
        if _state.get("service"):
            return
        _state["service"] = service
    # Stable HTTP semantic conventions: http.server.request.duration labelled by route
    # (http.route), not by raw path, so per-route dashboards have bounded cardinality.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    instance = f"{service}-{os.getpid()}"
    tel = cfg.telemetry
    _state["tracing"] = bool(tel.tracing)
    resource = Resource.create({"service.name": service, "service.namespace": "longtail",
                                "service.instance.id": f"{socket.gethostname()}-{os.getpid()}"})
    if tel.prometheus_port >= 0:
        _setup_metrics(resource, tel.prometheus_port, cfg.data_path / "metrics" / f"{instance}.port")
    atexit.register(shutdown)
    if not tel.tracing:
        return  # the API's no-op tracer stays in place
    provider = TracerProvider(resource=resource)
    if tel.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=tel.otlp_endpoint.rstrip("/") + "/v1/traces")))
    if tel.local_traces:
        exporter = JsonLinesSpanExporter(cfg.data_path / "traces" / f"{instance}.jsonl")
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    _state["tracer_provider"] = provider


def tracing_enabled() -> bool:
    """False only when telemetry.tracing is off (instrumentation is then not installed)."""
    return _state.get("tracing", True)


class _ExemplarCollector(_CustomCollector):
    """The Prometheus exporter's collector, adding to each histogram bucket the exemplar of
    the last sampled measurement that fell in it. The SDK hands a measurement's exemplar
    over once (its reservoir resets at each collection), so each bucket keeps its last
    one: every scraper sees it, not only the first to scrape after the measurement."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._last: dict[tuple, object] = {}  # (sample name, labels) -> prometheus_client Exemplar

    def _translate_metric(self, metric, scope_attrs, resource_attrs, metric_family_id_metric_family) -> None:
        families = metric_family_id_metric_family
        before = {key: len(family.samples) for key, family in families.items()}
        super()._translate_metric(metric, scope_attrs, resource_attrs, families)
        if not isinstance(metric.data, Histogram):
            return
        for key, family in families.items():
            if len(family.samples) != before.get(key, 0):  # the family this metric's points went to
                self._add_exemplars(family.samples, before.get(key, 0), metric.data.data_points)

    def _add_exemplars(self, samples: list, start: int, points) -> None:
        """Points' samples follow each other from `start` in the points' order, each point's
        buckets first (one per bound, then +Inf)."""
        from prometheus_client.samples import Exemplar

        buckets = [i for i in range(start, len(samples)) if samples[i].name.endswith("_bucket")]
        for point in points:
            mine, buckets = buckets[:len(point.explicit_bounds) + 1], buckets[len(point.explicit_bounds) + 1:]
            for exemplar in point.exemplars:
                if exemplar.trace_id:  # sampled in a span: a trace to link to
                    sample = samples[mine[bisect_left(point.explicit_bounds, exemplar.value)]]
                    self._last[sample.name, tuple(sorted(sample.labels.items()))] = Exemplar(
                        {"trace_id": f"{exemplar.trace_id:032x}", "span_id": f"{exemplar.span_id:016x}"},
                        exemplar.value, exemplar.time_unix_nano / 1e9)
            for i in mine:
                exemplar = self._last.get((samples[i].name, tuple(sorted(samples[i].labels.items()))))
                if exemplar is not None:
                    samples[i] = samples[i]._replace(exemplar=exemplar)


class ExemplarPrometheusReader(PrometheusMetricReader):
    """PrometheusMetricReader serving its metrics through `_ExemplarCollector`."""

    def __init__(self, registry=None, **kwargs):
        from prometheus_client import REGISTRY

        super().__init__(registry=registry or REGISTRY, **kwargs)
        self._registry.unregister(self._collector)
        self._collector = _ExemplarCollector(disable_target_info=kwargs.get("disable_target_info", False))
        self._registry.register(self._collector)  # collects once to learn its names: no callback yet
        self._collector._callback = self.collect


def _setup_metrics(resource: Resource, port: int, port_file: Path) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(port, addr="127.0.0.1" if port == 0 else "0.0.0.0")
    except OSError as exc:  # metrics must never stop a service from starting
        log.warning("cannot serve metrics on port %d: %s", port, exc)
        return
    actual = server.server_address[1]
    port_file.parent.mkdir(parents=True, exist_ok=True)
    port_file.write_text(str(actual))
    _state["metrics_port_file"] = port_file
    provider = MeterProvider(resource=resource, metric_readers=[ExemplarPrometheusReader()])
    metrics.set_meter_provider(provider)
    _state["meter_provider"] = provider


def shutdown() -> None:
    """Flushes spans (called at exit and by services on SIGTERM)."""
    provider = _state.pop("tracer_provider", None)
    if provider is not None:
        provider.shutdown()
    port_file = _state.pop("metrics_port_file", None)
    if port_file is not None:
        try:
            port_file.unlink()
        except OSError:
            pass


def tracer(name: str = "longtail") -> trace.Tracer:
    return trace.get_tracer(name)


class HotPathSampler:
    """Head sampling for a hot path that makes its span only once the call is kept, so a
    call left out costs a random draw, not a span and its export: the decisions of
    ParentBased(TraceIdRatioBased(ratio)), taken before the span exists (a caller's valid
    traceparent decides by its sampled flag; a new trace is kept with probability `ratio`,
    as a ratio of random trace ids would). A call left out that turned out slow is kept
    anyway (keep_slow), up to `slow_per_s` per second: the tail an SRE looks for."""

    def __init__(self, ratio: float, keep_slower_than_ms: float, slow_per_s: int, clock=time.monotonic):
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"telemetry.fast_path_sample_ratio must be within [0, 1], not {ratio!r}")
        if keep_slower_than_ms < 0 or slow_per_s < 0:
            raise ValueError("telemetry.fast_path_keep_slower_than_ms and fast_path_slow_traces_per_s must be >= 0")
        self.ratio, self.slow_s, self.slow_per_s, self.clock = ratio, keep_slower_than_ms / 1000, slow_per_s, clock
        self._second, self._kept = -1, 0

    @classmethod
    def from_config(cls, tel) -> "HotPathSampler":
        return cls(float(tel.fast_path_sample_ratio), float(tel.fast_path_keep_slower_than_ms),
                   int(tel.fast_path_slow_traces_per_s))

    def sampled(self, parent: otel_context.Context | None) -> bool:
        """Whether the call's span is made (before it is answered)."""
        if parent is not None:
            caller = trace.get_current_span(parent).get_span_context()
            if caller.is_valid:
                return caller.trace_flags.sampled
        return self.ratio >= 1.0 or random.random() < self.ratio

    def keep_slow(self, seconds: float) -> bool:
        """Whether a call left out by sampled() is traced after all, having taken `seconds`."""
        if seconds < self.slow_s:
            return False
        second = int(self.clock())
        if second != self._second:
            self._second, self._kept = second, 0
        if self._kept >= self.slow_per_s:
            return False
        self._kept += 1
        return True


class BoundHistogram:
    """One attribute set of an SDK histogram, for a hot path that records it per call: the
    measurement goes straight into the histogram's aggregations, which Histogram.record
    reaches only after copying, cleaning and hashing the attributes and testing the
    exemplar filter each time (~12 us of a ~60 us call; no exemplar is taken here). The
    aggregations are found through the SDK's storage after a first record made the usual
    way; wherever that is not plain (an API or proxy instrument, a delta reader, a view
    filtering attributes, readers added since) every record takes the usual way."""

    def __init__(self, histogram, attributes: dict):
        self.histogram, self.attributes = histogram, dict(attributes)
        self._storages = None  # the SDK's reader storages the aggregations were found in
        self._aggregations: list | None = None

    def record(self, amount: float) -> None:
        aggregations = self._aggregations
        if aggregations and self.histogram._measurement_consumer._reader_storages is self._storages:
            measurement = Measurement(amount, time.time_ns(), self.histogram, _EMPTY_CONTEXT, None)
            for aggregation in aggregations:
                aggregation.aggregate(measurement, False)
            return
        self.histogram.record(amount, self.attributes)
        if aggregations is None or self._storages is not None:
            self._find_aggregations()

    def _find_aggregations(self) -> None:
        self._aggregations, self._storages = [], None
        try:
            if not isinstance(self.histogram, SdkHistogram) or not self.histogram._is_enabled():
                return
            storages = self.histogram._measurement_consumer._reader_storages
            key, found = _hash_attributes(self.attributes), []
            for storage in storages.values():
                for match in storage._instrument_view_instrument_matches.get(self.histogram, ()):
                    aggregation = match._attributes_aggregation.get(key)
                    if match._reset_on_collect or match._view._attribute_keys is not None or aggregation is None:
                        return
                    found.append(aggregation)
        except AttributeError:  # another SDK version: the usual way
            return
        self._aggregations, self._storages = found, storages


def meter(name: str = "longtail") -> metrics.Meter:
    return metrics.get_meter(name)


# -- topics ---------------------------------------------------------------------------


def inject_headers(headers: dict[str, bytes]) -> dict[str, bytes]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    for k, v in carrier.items():
        headers[k] = v.encode()
    return headers


def extract_context(message):
    carrier = {k: v.decode(errors="replace") for k, v in message.headers if k in _CONTEXT_HEADERS}
    return propagate.extract(carrier)


def record_error(span: trace.Span, reason: str, exc: BaseException | None = None) -> None:
    if exc is not None:
        span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, reason[:500]))
    span.set_attribute("longtail.failure_reason", reason[:500])


class TracingProducer:
    """Opens a PRODUCER span around each publish and puts its context in the headers."""

    def __init__(self, inner):
        self._inner = inner

    def publish(self, topic: str, value: bytes, key: bytes | None = None, headers: dict[str, bytes] | None = None,
                partition: int | None = None) -> None:
        attrs = {"messaging.system": "longtail", "messaging.destination.name": topic,
                 "messaging.message.body.size": len(value)}
        if key:
            attrs[VIDEO_ID] = key.decode(errors="replace")
        with tracer().start_as_current_span(f"publish {topic}", kind=SpanKind.PRODUCER, attributes=attrs):
            self._inner.publish(topic, value, key=key, headers=inject_headers(dict(headers or {})), partition=partition)

    def close(self) -> None:
        self._inner.close()


class TracingTopicBus:
    """A TopicBus whose producers trace and propagate context; consumers are unchanged
    (the consume loop continues the trace, see consumer.py)."""

    def __init__(self, inner):
        self._inner = inner

    def producer(self):
        return TracingProducer(self._inner.producer())

    def __getattr__(self, name):
        return getattr(self._inner, name)


# -- terminal waterfall ---------------------------------------------------------------


def load_spans(data_dir: Path) -> list[dict]:
    spans = []
    for path in sorted((data_dir / "traces").glob("*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    try:
                        spans.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue  # a line cut by a killed process
    return spans


def traces_for_video(spans: list[dict], video_id: str) -> dict[str, list[dict]]:
    ids = {s["trace_id"] for s in spans if s["attributes"].get(VIDEO_ID) == video_id}
    return {tid: [s for s in spans if s["trace_id"] == tid] for tid in ids}


def short_name(name: str) -> str:
    # "/longtail.metadata.v1.MetadataService/GetVideo" -> "MetadataService/GetVideo"
    if name.startswith("/") and "/" in name[1:]:
        service, method = name[1:].rsplit("/", 1)
        return f"{service.rsplit('.', 1)[-1]}/{method}"
    return name


def waterfall(spans: list[dict], width: int = 40) -> str:
    """Spans of one trace as an indented tree with start offsets and durations."""
    by_id = {s["span_id"]: s for s in spans}
    children: dict[str, list[dict]] = {}
    roots = []
    for s in spans:
        if s["parent_span_id"] and s["parent_span_id"] in by_id:
            children.setdefault(s["parent_span_id"], []).append(s)
        else:
            roots.append(s)
    t0 = min(s["start_ns"] for s in spans)
    total = max(s["end_ns"] for s in spans) - t0 or 1
    lines = [f"trace {spans[0]['trace_id']}  ({total / 1e6:.0f} ms, {len(spans)} spans)",
             f"{'service':<15} {'span':<44} {'start ms':>9} {'dur ms':>9}  timeline"]

    def walk(s: dict, depth: int) -> None:
        start, dur = s["start_ns"] - t0, s["end_ns"] - s["start_ns"]
        a = int(start / total * width)
        b = max(a + 1, int((start + dur) / total * width))
        bar = " " * a + "#" * (b - a)
        name = ("  " * depth + short_name(s["name"]))[:44]
        flag = " !" if s["status"] == "ERROR" else ""
        lines.append(f"{s['service'][:15]:<15} {name:<44} {start / 1e6:>9.1f} {dur / 1e6:>9.1f}  |{bar:<{width}}|{flag}")
        for c in sorted(children.get(s["span_id"], []), key=lambda x: x["start_ns"]):
            walk(c, depth + 1)

    for r in sorted(roots, key=lambda x: x["start_ns"]):
        walk(r, 0)
    return "\n".join(lines)
