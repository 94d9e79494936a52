"""The dead-letter counter (alert DeadLetterNonEmpty): a consume loop exports it at 0 for each
topic it reads from its start, and adds one per message it sends to the dead-letter topic."""
from __future__ import annotations

import threading

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry

from longtail_common import consumer, telemetry
from longtail_common.adapters.local_log import LocalTopicBus
from longtail_common.ports import TOPIC_DEAD_LETTER


def _counts(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {(s.labels["topic"], s.labels["group"]): s.value for family in registry.collect()
            for s in family.samples if s.name == "longtail_dead_lettered_messages_total"}


def test_dead_letters_are_counted_by_topic_and_group(tmp_path, monkeypatch):
    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(disable_target_info=True, registry=registry)])
    monkeypatch.setattr(telemetry, "meter", lambda name="longtail": provider.get_meter(name))
    monkeypatch.setattr(consumer, "_dead_letter_counter", [])
    bus = LocalTopicBus(tmp_path / "log")
    bus.ensure_topics({"jobs": 1, "other": 1, TOPIC_DEAD_LETTER: 1})
    producer = bus.producer()
    for value in (b"poison", b"fine", b"poison"):
        producer.publish("jobs", value, key=b"k")
    producer.close()
    stopping, handled = threading.Event(), []

    def handler(message):
        handled.append(message.value)
        if len(handled) == 3:
            stopping.set()
        if message.value == b"poison":
            raise consumer.PermanentError("cannot parse")

    loop = threading.Thread(target=consumer.run_consumer, args=(bus, ["jobs", "other"], "workers", handler, stopping))
    loop.start()
    loop.join(timeout=60)
    assert not loop.is_alive() and handled == [b"poison", b"fine", b"poison"]
    assert _counts(registry) == {("jobs", "workers"): 2, ("other", "workers"): 0}
    provider.shutdown()
