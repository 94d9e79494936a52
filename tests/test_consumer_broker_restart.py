"""A consume loop outlives a Kafka restart: messages published after the broker came back
are handled by the same loop, idle or busy when the broker went away.

Found on the real-engine platform: after a broker restart, search indexed nothing new for
minutes (its loop was idle-polling while the broker was down).
"""
from __future__ import annotations

import threading
import time

import pytest

from longtail_common.consumer import run_consumer
from tests.real_servers import make_real_topic_bus, restart_kafka, unique_topic

pytestmark = [pytest.mark.real, pytest.mark.slow]


def _wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_idle_consume_loop_handles_messages_after_a_broker_restart(real_servers):
    bus = make_real_topic_bus(real_servers)
    topic = unique_topic("restart")
    bus.ensure_topics({topic: 2})
    handled: list[bytes] = []
    stopping = threading.Event()
    loop = threading.Thread(target=run_consumer, args=(bus, [topic], unique_topic("group"), lambda m: handled.append(m.value), stopping),
                            daemon=True)
    loop.start()
    producer = bus.producer()
    try:
        producer.publish(topic, b"before", key=b"k")
        assert _wait_for(lambda: b"before" in handled, 60), "the loop never handled the first message"

        restart_kafka(real_servers, downtime_s=3.0)

        producer.publish(topic, b"after", key=b"k")
        assert _wait_for(lambda: b"after" in handled, 60), (
            f"nothing published after the restart was handled (loop alive: {loop.is_alive()})")
        assert loop.is_alive()
        assert handled.count(b"before") >= 1
    finally:
        stopping.set()
        loop.join(timeout=30)
        producer.close()
        bus.close()


def test_a_commit_while_the_broker_is_down_does_not_end_the_loop(real_servers):
    """The handler finishes while the broker is away, so the commit meets no broker: the
    message may come again (at-least-once), and the loop goes on to what follows."""
    bus = make_real_topic_bus(real_servers)
    topic = unique_topic("restart")
    bus.ensure_topics({topic: 1})
    handled: list[bytes] = []
    in_handler, release = threading.Event(), threading.Event()

    def handler(message) -> None:
        if message.value == b"slow" and not release.is_set():
            in_handler.set()
            release.wait(60)
        handled.append(message.value)

    stopping = threading.Event()
    loop = threading.Thread(target=run_consumer, args=(bus, [topic], unique_topic("group"), handler, stopping),
                            daemon=True)
    loop.start()
    producer = bus.producer()
    try:
        producer.publish(topic, b"slow", key=b"k")
        assert in_handler.wait(60), "the loop never took the message"
        outage = threading.Thread(target=restart_kafka, args=(real_servers, 12.0))
        outage.start()
        time.sleep(4)  # the broker is down now
        release.set()
        outage.join()

        producer.publish(topic, b"after", key=b"k")
        assert _wait_for(lambda: b"after" in handled, 90), (
            f"nothing after the outage was handled (loop alive: {loop.is_alive()}; handled {handled})")
        assert b"slow" in handled
    finally:
        release.set()
        stopping.set()
        loop.join(timeout=30)
        producer.close()
        bus.close()
