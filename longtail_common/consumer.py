"""The at-least-once consume loop every topic consumer uses.

A message is committed only after its handler finished (or after it was sent to the
dead-letter topic), so a crash redelivers it; handlers are therefore idempotent.
A handler that keeps failing is retried a bounded number of times with backoff, then
the message goes to the dead-letter topic with the error, so one poison message can
never stall a partition or cause a crash loop.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Callable

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from longtail_common import telemetry
from longtail_common.ports import TOPIC_DEAD_LETTER, Message, TopicBus

log = logging.getLogger(__name__)

_dead_letter_counter: list = []


def dead_letter_counter():
    """longtail.dead_lettered_messages{topic, group}: messages this process sent to the
    dead-letter topic, by the topic they came from and the group that gave up on them."""
    if not _dead_letter_counter:
        _dead_letter_counter.append(telemetry.meter().create_counter(
            "longtail.dead_lettered_messages",
            description="messages sent to the dead-letter topic, by source topic and consumer group"))
    return _dead_letter_counter[0]


class PermanentError(Exception):
    """The message can never succeed (malformed): dead-letter it at once, no retries."""


def run_consumer(
    bus: TopicBus,
    topics: list[str],
    group_id: str,
    handler: Callable[[Message], None],
    stopping: threading.Event,
    max_attempts: int = 3,
    backoff_s: float = 1.0,
    on_idle: Callable[[], None] | None = None,
) -> None:
    consumer = bus.consumer(topics, group_id)
    producer = bus.producer()
    for topic in topics:  # a series at 0 from the start, so the first dead letter is an increase
        dead_letter_counter().add(0, {"topic": topic, "group": group_id})
    try:
        while not stopping.is_set():
            messages = consumer.poll(timeout_s=1.0, max_records=1)
            if not messages and on_idle:
                on_idle()
            for message in messages:
                with _process_span(message, group_id):
                    done = _handle_with_retries(message, handler, producer, group_id, stopping, max_attempts, backoff_s)
                if not done:
                    return  # abandoned because we are stopping: uncommitted, so another member redoes it
                consumer.commit(message)
    finally:
        consumer.close()
        producer.close()


def _process_span(message: Message, group_id: str):
    """A CONSUMER span that continues the trace the producer put in the headers."""
    attrs = {"messaging.system": "longtail", "messaging.destination.name": message.topic,
             "messaging.consumer.group.name": group_id, "messaging.destination.partition.id": str(message.partition),
             "messaging.message.offset": message.offset}
    if message.key:
        attrs[telemetry.VIDEO_ID] = message.key.decode(errors="replace")
    return telemetry.tracer().start_as_current_span(
        f"process {message.topic}", context=telemetry.extract_context(message), kind=SpanKind.CONSUMER, attributes=attrs)


def _handle_with_retries(message, handler, producer, group_id, stopping, max_attempts, backoff_s) -> bool:
    """True when the message is finished with (handled or dead-lettered)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            handler(message)
            return True
        except PermanentError as exc:
            telemetry.record_error(trace.get_current_span(), f"dead-lettered: {exc}", exc)
            _dead_letter(producer, message, group_id, str(exc), attempt)
            return True
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
            log.warning(
                "handler failed for %s[%d]@%d (attempt %d/%d): %s",
                message.topic, message.partition, message.offset, attempt, max_attempts, exc,
            )
            trace.get_current_span().add_event("handler failed", {"attempt": attempt, "error": str(exc)[:500]})
            if attempt >= max_attempts:
                telemetry.record_error(trace.get_current_span(), f"dead-lettered after {attempt} attempts: {exc}", exc)
                _dead_letter(producer, message, group_id, f"{type(exc).__name__}: {exc}", attempt,
                             traceback.format_exc(limit=5))
                return True
            if stopping.wait(backoff_s * 2 ** (attempt - 1)):
                return False


def _dead_letter(producer, message: Message, group_id: str, reason: str, attempts: int, trace: str = "") -> None:
    headers = dict(message.headers)
    headers.update(
        {
            "dlq.source_topic": message.topic.encode(),
            "dlq.source_partition": str(message.partition).encode(),
            "dlq.source_offset": str(message.offset).encode(),
            "dlq.group": group_id.encode(),
            "dlq.reason": reason.encode()[:2000],
            "dlq.attempts": str(attempts).encode(),
            "dlq.time_ms": str(int(time.time() * 1000)).encode(),
        }
    )
    if trace:
        headers["dlq.trace"] = trace.encode()[:4000]
    producer.publish(TOPIC_DEAD_LETTER, message.value, key=message.key, headers=headers)
    dead_letter_counter().add(1, {"topic": message.topic, "group": group_id})
    log.error("dead-lettered %s[%d]@%d after %d attempt(s): %s", message.topic, message.partition,
              message.offset, attempts, reason)
