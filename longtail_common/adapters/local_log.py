"""Embedded topic backend: a durable local log with the Kafka semantics Longtail relies on.

One SQLite database (WAL mode, fsync on commit) under the data directory, shared by every
process on the machine:

* topics with a fixed number of partitions; a message's key picks its partition
  (crc32(key) mod partitions), so one video's events stay in order;
* `publish` returns only once the message is durable;
* consumer groups: each member heartbeats from a background thread; partitions of a
  topic are spread round-robin over the group's live members, and a member owns a
  partition through a lease that its heartbeat renews. A member that crashes stops
  heartbeating, its leases expire after `session_timeout_s`, and another member takes the
  partition over from the last committed offset, so uncommitted messages are redelivered
  (at least once). A long handler (a transcode) keeps its lease because the heartbeat
  runs beside it.
* committed offsets per (group, topic, partition); a group with no commit starts at the
  earliest message, as `auto.offset.reset=earliest` does (or at the end, `from_end`, as
  `latest` does). `group_lag` reads them, and the group's live members, without joining.

Messages are kept (no retention) - the embedded setup is for one machine and small data.
"""
from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
import uuid
import zlib
from pathlib import Path

from longtail_common.ports import GroupLag, Message, PartitionLag, PortError

SESSION_TIMEOUT_S = 6.0
HEARTBEAT_INTERVAL_S = 1.0
_IDLE_SLEEP_S = 0.05

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    key BLOB, value BLOB NOT NULL, headers TEXT NOT NULL, timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    group_id TEXT NOT NULL, member_id TEXT NOT NULL, topics TEXT NOT NULL, heartbeat_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, member_id));
CREATE TABLE IF NOT EXISTS leases (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    member_id TEXT NOT NULL, expires_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition));
CREATE TABLE IF NOT EXISTS committed (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition));
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so writers queue on the
    # database lock (busy_timeout) instead of failing on an upgrade from a read lock.
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class _Tx:
    """`with _Tx(conn):` runs the block in one write transaction."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _encode_headers(headers: dict[str, bytes] | None) -> str:
    return json.dumps([[k, bytes(v).hex()] for k, v in (headers or {}).items()])


def _decode_headers(text: str) -> tuple[tuple[str, bytes], ...]:
    return tuple((k, bytes.fromhex(v)) for k, v in json.loads(text))


def partition_for(key: bytes | None, partitions: int) -> int:
    if key is None:
        return random.randrange(partitions)
    return zlib.crc32(key) % partitions


class LocalTopicBus:
    def __init__(self, root: str | os.PathLike, session_timeout_s: float = SESSION_TIMEOUT_S,
                 heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "log.sqlite3"
        self.session_timeout_s = session_timeout_s
        self.heartbeat_interval_s = heartbeat_interval_s
        conn = _connect(self.path)
        try:
            conn.executescript(_SCHEMA)
        finally:
            conn.close()

    def ensure_topics(self, topics: dict[str, int]) -> None:
        conn = _connect(self.path)
        try:
            with _Tx(conn):
                for name, partitions in topics.items():
                    row = conn.execute("SELECT partitions FROM topics WHERE name=?", (name,)).fetchone()
                    if row is None:
                        conn.execute("INSERT INTO topics VALUES (?, ?)", (name, int(partitions)))
                    elif row[0] < partitions:  # like Kafka: partitions can grow, never shrink
                        conn.execute("UPDATE topics SET partitions=? WHERE name=?", (int(partitions), name))
        finally:
            conn.close()

    def topic_partitions(self, topic: str) -> int:
        """Number of partitions of `topic` (0 when it does not exist). Not part of the port."""
        conn = _connect(self.path)
        try:
            row = conn.execute("SELECT partitions FROM topics WHERE name=?", (topic,)).fetchone()
        finally:
            conn.close()
        return row[0] if row else 0

    def group_lag(self, group_id: str, topics: list[str]) -> GroupLag:
        conn = _connect(self.path)
        try:
            live_after = _now_ms() - int(self.session_timeout_s * 1000)
            (members,) = conn.execute("SELECT COUNT(*) FROM members WHERE group_id=? AND heartbeat_ms>=?",
                                      (group_id, live_after)).fetchone()
            partitions = []
            for topic in sorted(set(topics)):
                row = conn.execute("SELECT partitions FROM topics WHERE name=?", (topic,)).fetchone()
                for partition in range(row[0] if row else 0):
                    (last,) = conn.execute("SELECT MAX(offset) FROM messages WHERE topic=? AND partition=?",
                                           (topic, partition)).fetchone()
                    committed = conn.execute(
                        "SELECT next_offset FROM committed WHERE group_id=? AND topic=? AND partition=?",
                        (group_id, topic, partition)).fetchone()
                    partitions.append(PartitionLag(topic, partition, committed[0] if committed else 0,
                                                   last + 1 if last is not None else 0))
        finally:
            conn.close()
        return GroupLag(group_id, members, tuple(partitions))

    def list_groups(self, prefix: str) -> list[str]:
        conn = _connect(self.path)
        try:
            rows = conn.execute("SELECT group_id FROM committed UNION SELECT group_id FROM members").fetchall()
        finally:
            conn.close()
        return sorted(g for (g,) in rows if g.startswith(prefix))

    def producer(self) -> "LocalTopicProducer":
        return LocalTopicProducer(self)

    def consumer(self, topics: list[str], group_id: str, from_end: bool = False) -> "LocalTopicConsumer":
        return LocalTopicConsumer(self, topics, group_id, from_end)

    def close(self) -> None:
        pass


class LocalTopicProducer:
    def __init__(self, bus: LocalTopicBus):
        self._conn = _connect(bus.path)
        self._lock = threading.Lock()

    def publish(self, topic: str, value: bytes, key: bytes | None = None,
                headers: dict[str, bytes] | None = None, partition: int | None = None) -> None:
        with self._lock, _Tx(self._conn) as conn:
            row = conn.execute("SELECT partitions FROM topics WHERE name=?", (topic,)).fetchone()
            if row is None:
                raise PortError(f"unknown topic {topic!r}: create it with ensure_topics first")
            if partition is None:
                partition = partition_for(key, row[0])
            elif not 0 <= partition < row[0]:
                raise PortError(f"topic {topic!r} has no partition {partition} (it has {row[0]})")
            (last,) = conn.execute(
                "SELECT COALESCE(MAX(offset), -1) FROM messages WHERE topic=? AND partition=?", (topic, partition)
            ).fetchone()
            conn.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
                (topic, partition, last + 1, key, bytes(value), _encode_headers(headers), _now_ms()),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class LocalTopicConsumer:
    def __init__(self, bus: LocalTopicBus, topics: list[str], group_id: str, from_end: bool = False):
        self._bus = bus
        self.group_id = group_id
        self._from_end = from_end
        self.topics = sorted(set(topics))
        self.member_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._conn = _connect(bus.path)
        self._hb_conn = _connect(bus.path)
        self._positions: dict[tuple[str, int], int] = {}  # owned partition -> next offset to read
        self._rr = 0
        self._closed = threading.Event()
        self._heartbeat()
        self._hb_thread = threading.Thread(target=self._heartbeat_loop, name=f"heartbeat-{group_id}", daemon=True)
        self._hb_thread.start()

    # -- membership -------------------------------------------------------------------

    def _heartbeat(self) -> None:
        now = _now_ms()
        expires = now + int(self._bus.session_timeout_s * 1000)
        with _Tx(self._hb_conn) as conn:
            conn.execute(
                "INSERT INTO members VALUES (?, ?, ?, ?) ON CONFLICT(group_id, member_id) "
                "DO UPDATE SET heartbeat_ms=excluded.heartbeat_ms",
                (self.group_id, self.member_id, json.dumps(self.topics), now),
            )
            conn.execute("UPDATE leases SET expires_ms=? WHERE group_id=? AND member_id=?",
                         (expires, self.group_id, self.member_id))

    def _heartbeat_loop(self) -> None:
        while not self._closed.wait(self._bus.heartbeat_interval_s):
            try:
                self._heartbeat()
            except sqlite3.Error:
                pass  # a busy database: the next beat retries well inside the session timeout

    def _rebalance(self, conn: sqlite3.Connection) -> None:
        """Release partitions that are no longer ours, claim the ones that are and are free."""
        now = _now_ms()
        live_after = now - int(self._bus.session_timeout_s * 1000)
        conn.execute("DELETE FROM members WHERE group_id=? AND heartbeat_ms<?", (self.group_id, live_after))
        members = [(m, set(json.loads(t))) for m, t in conn.execute(
            "SELECT member_id, topics FROM members WHERE group_id=? ORDER BY member_id", (self.group_id,))]
        wanted: set[tuple[str, int]] = set()
        for topic in self.topics:
            row = conn.execute("SELECT partitions FROM topics WHERE name=?", (topic,)).fetchone()
            if row is None:
                continue
            subscribers = [m for m, t in members if topic in t] or [self.member_id]
            for p in range(row[0]):
                if subscribers[p % len(subscribers)] == self.member_id:
                    wanted.add((topic, p))
        for tp in list(self._positions):
            if tp not in wanted:
                conn.execute("DELETE FROM leases WHERE group_id=? AND topic=? AND partition=? AND member_id=?",
                             (self.group_id, tp[0], tp[1], self.member_id))
                del self._positions[tp]
        expires = now + int(self._bus.session_timeout_s * 1000)
        for tp in sorted(wanted):
            lease = conn.execute("SELECT member_id, expires_ms FROM leases WHERE group_id=? AND topic=? AND partition=?",
                                 (self.group_id, tp[0], tp[1])).fetchone()
            if lease is not None and lease[0] != self.member_id and lease[1] > now:
                self._positions.pop(tp, None)  # still held by a member that has not let go yet
                continue
            conn.execute(
                "INSERT INTO leases VALUES (?, ?, ?, ?, ?) ON CONFLICT(group_id, topic, partition) "
                "DO UPDATE SET member_id=excluded.member_id, expires_ms=excluded.expires_ms",
                (self.group_id, tp[0], tp[1], self.member_id, expires),
            )
            if tp not in self._positions or lease is None or lease[0] != self.member_id:
                committed = conn.execute(
                    "SELECT next_offset FROM committed WHERE group_id=? AND topic=? AND partition=?",
                    (self.group_id, tp[0], tp[1])).fetchone()
                self._positions[tp] = committed[0] if committed else self._start_offset(conn, tp)

    def _start_offset(self, conn: sqlite3.Connection, tp: tuple[str, int]) -> int:
        """Where a partition the group never committed on is read from."""
        if not self._from_end:
            return 0
        (last,) = conn.execute("SELECT COALESCE(MAX(offset), -1) FROM messages WHERE topic=? AND partition=?",
                               tp).fetchone()
        return last + 1

    # -- consuming --------------------------------------------------------------------

    def assignment(self) -> set[tuple[str, int]]:
        """(topic, partition) pairs this member owns now. Not part of the port (tests, metrics)."""
        return set(self._positions)

    def poll(self, timeout_s: float = 1.0, max_records: int = 1) -> list[Message]:
        if self._closed.is_set():
            raise PortError("consumer is closed")
        deadline = time.monotonic() + timeout_s
        while True:
            with _Tx(self._conn) as conn:
                self._rebalance(conn)
            out = self._fetch(max(1, max_records))
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(min(_IDLE_SLEEP_S, max(0.0, deadline - time.monotonic())))

    def _fetch(self, max_records: int) -> list[Message]:
        owned = sorted(self._positions)
        out: list[Message] = []
        if not owned:
            return out
        # Rotate the starting partition so one busy partition cannot starve the others.
        self._rr = (self._rr + 1) % len(owned)
        for tp in owned[self._rr:] + owned[: self._rr]:
            rows = self._conn.execute(
                "SELECT offset, key, value, headers, timestamp_ms FROM messages "
                "WHERE topic=? AND partition=? AND offset>=? ORDER BY offset LIMIT ?",
                (tp[0], tp[1], self._positions[tp], max_records - len(out)),
            ).fetchall()
            for offset, key, value, headers, ts in rows:
                out.append(Message(tp[0], tp[1], offset, key, value, _decode_headers(headers), ts))
                self._positions[tp] = offset + 1
            if len(out) >= max_records:
                break
        return out

    def commit(self, message: Message) -> None:
        with _Tx(self._conn) as conn:
            conn.execute(
                "INSERT INTO committed VALUES (?, ?, ?, ?) ON CONFLICT(group_id, topic, partition) "
                "DO UPDATE SET next_offset=MAX(next_offset, excluded.next_offset)",
                (self.group_id, message.topic, message.partition, message.offset + 1),
            )

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._hb_thread.join(timeout=5)
        try:
            with _Tx(self._conn) as conn:
                conn.execute("DELETE FROM leases WHERE group_id=? AND member_id=?", (self.group_id, self.member_id))
                conn.execute("DELETE FROM members WHERE group_id=? AND member_id=?", (self.group_id, self.member_id))
        finally:
            self._conn.close()
            self._hb_conn.close()
