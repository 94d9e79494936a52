"""Contract of the TopicBus port; the local durable log and Kafka must both pass it.

It checks the Kafka semantics the platform relies on: keyed partitions keep per-key
order, consumer groups share partitions without overlap, committed offsets survive, and
what a crashed (SIGKILLed) member took but never committed is redelivered to another,
and a group's lag can be read from outside it (with no member running, and without
disturbing the members that do).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from longtail_common.ports import PartitionLag, PortError, TopicBus

BACKENDS = ["local", pytest.param("kafka", marks=pytest.mark.real)]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    """(bus, spec): spec lets a child process build the same bus."""
    if request.param == "local":
        from longtail_common.adapters.local_log import LocalTopicBus

        spec = {"kind": "local", "root": str(tmp_path / "topics")}
        bus = LocalTopicBus(spec["root"])
    else:
        from tests.real_servers import make_real_topic_bus

        servers = request.getfixturevalue("real_servers")
        spec = {"kind": "kafka", "bootstrap": servers["config"].kafka.bootstrap_servers}
        bus = make_real_topic_bus(servers)
    assert isinstance(bus, TopicBus)
    yield bus, spec
    bus.close()


@pytest.fixture
def bus(backend):
    return backend[0]


def _poll_until(consumer, count: int, timeout_s: float = 40.0, max_records: int = 10) -> list:
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += consumer.poll(timeout_s=0.5, max_records=max_records)
    return got


def test_keyed_order_headers_and_commit(bus):
    topic = f"orders.{_uid()}"
    bus.ensure_topics({topic: 3})
    bus.ensure_topics({topic: 3})  # idempotent
    producer = bus.producer()
    for i in range(12):
        producer.publish(topic, f"v{i}".encode(), key=f"k{i % 4}".encode(), headers={"n": str(i).encode()})
    producer.close()

    group = f"g.{_uid()}"
    consumer = bus.consumer([topic], group)
    got = _poll_until(consumer, 12)
    assert sorted(m.value for m in got) == sorted(f"v{i}".encode() for i in range(12))
    by_key: dict = {}
    for m in got:
        assert m.header("n") == m.value[1:] and m.timestamp_ms > 0
        by_key.setdefault(m.key, []).append(m)
    for msgs in by_key.values():
        assert len({m.partition for m in msgs}) == 1
        values = [int(m.value[1:]) for m in sorted(msgs, key=lambda m: m.offset)]
        assert values == sorted(values)
    for m in got:
        consumer.commit(m)
    consumer.close()

    again = bus.consumer([topic], group)
    try:
        p = bus.producer()
        p.publish(topic, b"late", key=b"k1")
        p.close()
        more = _poll_until(again, 1)
        more += again.poll(timeout_s=1.0, max_records=50)
        assert [m.value for m in more] == [b"late"]
    finally:
        again.close()


def test_explicit_partition_overrides_the_key(bus):
    topic = f"spread.{_uid()}"
    bus.ensure_topics({topic: 3})
    producer = bus.producer()
    try:
        for i in range(6):  # one key, yet spread over every partition on purpose
            producer.publish(topic, f"c{i}".encode(), key=b"same-video", partition=i % 3)
        with pytest.raises(PortError):
            producer.publish(topic, b"x", key=b"same-video", partition=3)
    finally:
        producer.close()
    consumer = bus.consumer([topic], f"g.{_uid()}")
    try:
        got = _poll_until(consumer, 6)
    finally:
        consumer.close()
    assert sorted((m.value, m.partition) for m in got) == sorted((f"c{i}".encode(), i % 3) for i in range(6))


def test_uncommitted_is_redelivered_after_close(bus):
    topic = f"jobs.{_uid()}"
    bus.ensure_topics({topic: 1})
    producer = bus.producer()
    for i in range(5):
        producer.publish(topic, f"job{i}".encode(), key=b"same")
    producer.close()
    group = f"w.{_uid()}"
    first = bus.consumer([topic], group)
    got = _poll_until(first, 5)
    assert [m.value for m in got] == [f"job{i}".encode() for i in range(5)]
    first.commit(got[1])
    first.close()
    second = bus.consumer([topic], group)
    try:
        assert [m.value for m in _poll_until(second, 3)] == [b"job2", b"job3", b"job4"]
    finally:
        second.close()


def test_groups_are_independent(bus):
    topic = f"fanout.{_uid()}"
    bus.ensure_topics({topic: 2})
    p = bus.producer()
    for i in range(4):
        p.publish(topic, str(i).encode(), key=str(i).encode())
    p.close()
    for group in (f"search.{_uid()}", f"browse.{_uid()}"):
        c = bus.consumer([topic], group)
        try:
            assert sorted(int(m.value) for m in _poll_until(c, 4)) == [0, 1, 2, 3]
        finally:
            c.close()


def test_a_group_from_the_end_sees_only_what_comes_after_it(bus):
    """What every gateway process's cache listener relies on: its own group, no history."""
    topic = f"changes.{_uid()}"
    bus.ensure_topics({topic: 2})
    p = bus.producer()
    for i in range(4):
        p.publish(topic, b"old%d" % i, key=str(i).encode())
    c = bus.consumer([topic], f"cache.{_uid()}", from_end=True)
    try:
        deadline = time.monotonic() + 40
        while len(c.assignment()) < 2 and time.monotonic() < deadline:  # joined: its start is fixed
            assert c.poll(timeout_s=0.5, max_records=10) == []
        for i in range(2):
            p.publish(topic, b"new%d" % i, key=str(i).encode())
        assert sorted(m.value for m in _poll_until(c, 2)) == [b"new0", b"new1"]
    finally:
        c.close()
        p.close()


def test_members_share_partitions_without_overlap(bus):
    topic = f"shared.{_uid()}"
    bus.ensure_topics({topic: 4})
    group = f"pool.{_uid()}"
    a, b = bus.consumer([topic], group), bus.consumer([topic], group)
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            a.poll(timeout_s=0.2)
            b.poll(timeout_s=0.2)
            # Until the rebalance settles: for a moment the first member still holds all four
            # partitions while the second already has its share (each learns on its own poll).
            if (a.assignment() and b.assignment() and len(a.assignment() | b.assignment()) == 4
                    and not a.assignment() & b.assignment()):
                break
        assert not (a.assignment() & b.assignment())
        assert len(a.assignment() | b.assignment()) == 4
        p = bus.producer()
        for i in range(40):
            p.publish(topic, str(i).encode(), key=f"key-{i}".encode())
        p.close()
        seen = []
        deadline = time.monotonic() + 45
        while len(seen) < 40 and time.monotonic() < deadline:
            for c in (a, b):
                for m in c.poll(timeout_s=0.3, max_records=20):
                    seen.append(m)
                    c.commit(m)
        assert sorted(int(m.value) for m in seen) == list(range(40))
        assert len({(m.partition, m.offset) for m in seen}) == 40
    finally:
        a.close()
        b.close()


_CHILD = r"""
import json, sys, time
spec = json.loads(sys.argv[1])
if spec["kind"] == "local":
    from longtail_common.adapters.local_log import LocalTopicBus
    bus = LocalTopicBus(spec["root"])
else:
    from longtail_common.adapters.kafka_topics import KafkaTopicBus
    from longtail_common.config import KafkaConfig
    bus = KafkaTopicBus(KafkaConfig(bootstrap_servers=spec["bootstrap"]))
mode = sys.argv[2]
if mode == "take":  # take one message, never commit, then hang until killed
    c = bus.consumer([spec["topic"]], spec["group"])
    while True:
        got = c.poll(timeout_s=0.5)
        if got:
            print("took", got[0].value.decode(), flush=True)
            time.sleep(3600)
else:  # publish N messages
    p = bus.producer()
    for i in range(int(sys.argv[3])):
        p.publish(spec["topic"], f"{mode}-{i}".encode(), key=f"{i % 7}".encode())
    p.close()
"""


def _child(spec: dict, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "gen")]))
    return subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(spec), *args], env=env,
                            stdout=subprocess.PIPE, text=True)


def test_killed_member_work_is_redelivered(backend):
    bus, spec = backend
    spec = dict(spec, topic=f"crash.{_uid()}", group=f"crash.{_uid()}")
    bus.ensure_topics({spec["topic"]: 1})
    p = bus.producer()
    p.publish(spec["topic"], b"the-job", key=b"v1")
    p.close()
    child = _child(spec, "take")
    try:
        line = child.stdout.readline()
        assert line.strip() == "took the-job"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    survivor = bus.consumer([spec["topic"]], spec["group"])
    try:
        got = _poll_until(survivor, 1, timeout_s=60)
        assert [m.value for m in got] == [b"the-job"]
    finally:
        survivor.close()


def test_concurrent_producers_in_processes_lose_nothing(backend):
    bus, spec = backend
    spec = dict(spec, topic=f"many.{_uid()}")
    bus.ensure_topics({spec["topic"]: 3})
    children = [_child(spec, name, "60") for name in ("a", "b", "c")]
    for c in children:
        assert c.wait(timeout=120) == 0
    consumer = bus.consumer([spec["topic"]], f"count.{_uid()}")
    try:
        got = _poll_until(consumer, 180, max_records=100)
        got += consumer.poll(timeout_s=1.0, max_records=100)
        assert sorted(m.value for m in got) == sorted(f"{n}-{i}".encode() for n in "abc" for i in range(60))
        assert len({(m.partition, m.offset) for m in got}) == 180
    finally:
        consumer.close()


def test_publish_to_unknown_topic_is_an_error(bus):
    p = bus.producer()
    try:
        with pytest.raises(PortError):
            p.publish(f"missing.{_uid()}", b"x")
    finally:
        p.close()


def _lags(bus, group: str, topics: list[str]) -> tuple[int, dict]:
    lag = bus.group_lag(group, topics)
    assert lag.group_id == group
    return lag.members, {(p.topic, p.partition): p for p in lag.partitions}


def test_group_lag_is_read_from_outside_the_group(bus):
    topic, group = f"lag.{_uid()}", f"lagged.{_uid()}"
    bus.ensure_topics({topic: 2})
    producer = bus.producer()
    for i in range(5):
        producer.publish(topic, f"m{i}".encode(), key=b"k", partition=0 if i < 3 else 1)
    producer.close()
    # Before any member ran: every message is behind; a missing topic has no partitions.
    members, before = _lags(bus, group, [topic, f"missing.{_uid()}"])
    assert members == 0
    assert before == {(topic, 0): PartitionLag(topic, 0, 0, 3), (topic, 1): PartitionLag(topic, 1, 0, 2)}
    assert bus.group_lag(group, [topic]).by_topic() == {topic: 5}

    consumer = bus.consumer([topic], group)
    try:
        got = _poll_until(consumer, 5)
        assert len(got) == 5
        consumer.commit(next(m for m in got if m.partition == 0 and m.offset == 1))
        deadline = time.monotonic() + 30
        while _lags(bus, group, [topic])[0] != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        members, during = _lags(bus, group, [topic])
        assert members == 1
        assert [(p.committed, p.end, p.lag) for _, p in sorted(during.items())] == [(2, 3, 1), (0, 2, 2)]
        # Reading joined nothing: no rebalance, so nothing uncommitted came back to the member.
        assert consumer.poll(timeout_s=2.0, max_records=10) == []
    finally:
        consumer.close()
    deadline = time.monotonic() + 30
    while _lags(bus, group, [topic])[0] != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    members, after = _lags(bus, group, [topic])
    assert members == 0 and after == during


def test_list_groups_finds_groups_by_prefix(bus):
    """A search replica's group is found by its prefix while it runs and after it stopped
    (its committed offsets stay), and nothing else is."""
    topic, prefix = f"groups.{_uid()}", f"replica{_uid()}."
    bus.ensure_topics({topic: 1})
    producer = bus.producer()
    producer.publish(topic, b"m", key=b"k")
    producer.close()
    consumer = bus.consumer([topic], prefix + "a")
    try:
        got = _poll_until(consumer, 1)
        consumer.commit(got[0])
        assert bus.list_groups(prefix) == [prefix + "a"]
    finally:
        consumer.close()
    assert bus.list_groups(prefix) == [prefix + "a"]
    assert bus.list_groups(f"other{_uid()}.") == []
