"""The transcoder's step telemetry without ffmpeg: a step is a child span timed into the step
histogram, and an object-store write the store refuses while unavailable is retried with
a span event per failed attempt (then given up on, failing the job as before)."""
from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from longtail_common import telemetry
from longtail_common.ports import BackendUnavailableError
from transcoder_svc import metrics
from transcoder_svc.jobs import outputs


@pytest.fixture
def spans(monkeypatch):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "tracer", lambda name="longtail": provider.get_tracer(name))
    monkeypatch.setattr(outputs, "STORE_RETRY_DELAY_S", 0.0)
    return exporter


class FlakyStore:
    """Refuses the first `failures` writes as a restarting store would."""

    def __init__(self, failures: int):
        self.failures = failures
        self.stored: list[str] = []

    def put_file(self, bucket: str, key: str, path: str) -> None:
        if self.failures:
            self.failures -= 1
            raise BackendUnavailableError("S3 at minio:9000: connection refused")
        self.stored.append(key)


def test_a_refused_write_is_retried_with_an_event_per_attempt(spans, tmp_path):
    path = tmp_path / "segment.m4s"
    path.write_bytes(b"x" * 1000)
    store = FlakyStore(failures=2)
    with metrics.step("store chunk") as span:
        size = outputs.put_file(store, "videos/v1/chunks/00000/h264/240p.mp4", str(path))
        span.set_attributes({"longtail.objects": 1, "longtail.bytes": size})
    assert store.stored == ["videos/v1/chunks/00000/h264/240p.mp4"] and size == 1000
    (finished,) = spans.get_finished_spans()
    assert finished.name == "store chunk" and finished.attributes["longtail.bytes"] == 1000
    events = [(e.name, e.attributes["longtail.retry.attempt"]) for e in finished.events]
    assert events == [("retry", 1), ("retry", 2)]
    assert "connection refused" in finished.events[0].attributes["error"]


def test_a_store_that_stays_down_fails_the_step(spans, tmp_path):
    path = tmp_path / "segment.m4s"
    path.write_bytes(b"x")
    with pytest.raises(BackendUnavailableError):
        with metrics.step("store"):
            outputs.put_file(FlakyStore(failures=outputs.STORE_ATTEMPTS), "videos/v1/h264/240p/init.mp4", str(path))
    (finished,) = spans.get_finished_spans()
    assert finished.status.status_code.name == "ERROR"
    assert [e.name for e in finished.events] == ["retry"] * (outputs.STORE_ATTEMPTS - 1) + ["exception"]
