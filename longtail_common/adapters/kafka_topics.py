"""Real topic backend: Apache Kafka through kafka-python (3.x).

* Topics are created explicitly by `ensure_topics` (the test broker has topic
  auto-creation off, as a production cluster should).
* `publish` is durable when it returns: acks=all with the idempotent producer, and the
  send future is awaited. The key picks the partition (kafka-python's default
  partitioner: murmur2 of the key bytes, the same as the Java client).
* Consumers are group members with auto-commit off: `commit(message)` commits
  `message.offset + 1` for its partition, so an uncommitted message is redelivered to
  whichever member owns the partition next (after a close, a crash or a rebalance).
* A broker that cannot be reached raises `BackendUnavailableError` after a bounded
  wait instead of hanging.
"""
from __future__ import annotations

import logging
import threading

from longtail_common.config import KafkaConfig
from longtail_common.ports import BackendUnavailableError, GroupLag, Message, PartitionLag, PortError

log = logging.getLogger(__name__)

# Bounded waits (seconds). KafkaConfig has no timeouts; the constructor takes overrides.
CONNECT_TIMEOUT_S = 15.0
PUBLISH_TIMEOUT_S = 30.0
# A consumer that does not poll for this long is considered stuck and leaves its group.
# Handlers run between polls and a transcode may take up to platform.transcode_timeout_s
# (3600 s by default), so this is longer than that.
MAX_POLL_INTERVAL_S = 3900.0
# A crashed member (no heartbeats) loses its partitions after this long.
SESSION_TIMEOUT_S = 10.0


def _unavailable(what: str, cfg: KafkaConfig, exc: Exception) -> BackendUnavailableError:
    return BackendUnavailableError(f"Kafka at {cfg.bootstrap_servers}: {what} failed: {exc}")


def _wrap(what: str, cfg: KafkaConfig, exc: Exception) -> PortError:
    from kafka import errors as kerr

    if isinstance(exc, (kerr.KafkaTimeoutError, kerr.KafkaConnectionError, kerr.NodeNotReadyError,
                        kerr.RequestTimedOutError, kerr.MetadataEmptyBrokerList)) or isinstance(exc, OSError):
        return _unavailable(what, cfg, exc)
    if isinstance(exc, kerr.KafkaError) and getattr(exc, "retriable", False):
        return _unavailable(what, cfg, exc)
    return PortError(f"Kafka at {cfg.bootstrap_servers}: {what} failed: {exc}")


class KafkaTopicProducer:
    def __init__(self, cfg: KafkaConfig, connect_timeout_s: float, publish_timeout_s: float):
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self._cfg = cfg
        self._timeout_s = publish_timeout_s
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=cfg.bootstrap_servers,
                client_id="longtail-producer",
                acks="all",
                enable_idempotence=True,
                linger_ms=0,
                retries=2**31 - 1,
                # everything below stays inside publish_timeout_s
                max_block_ms=int(publish_timeout_s * 1000),
                request_timeout_ms=int(min(publish_timeout_s, 15.0) * 1000),
                delivery_timeout_ms=int(publish_timeout_s * 1000),
                bootstrap_timeout_ms=int(connect_timeout_s * 1000),
                max_request_size=16 * 1024 * 1024,
            )
        except (KafkaError, OSError) as exc:
            raise _wrap("connecting a producer", cfg, exc) from exc

    def publish(self, topic: str, value: bytes, key: bytes | None = None,
                headers: dict[str, bytes] | None = None, partition: int | None = None) -> None:
        from kafka.errors import KafkaError

        header_list = [(str(k), bytes(v)) for k, v in (headers or {}).items()]
        try:
            if partition is not None and partition not in self._producer.partitions_for(topic):
                raise PortError(f"topic {topic!r} has no partition {partition}")
            future = self._producer.send(topic, value=value, key=key, headers=header_list or None, partition=partition)
            future.get(timeout=self._timeout_s)
        except (KafkaError, OSError) as exc:
            raise _wrap(f"publishing to {topic!r}", self._cfg, exc) from exc

    def close(self) -> None:
        try:
            self._producer.close(timeout=10)
        except Exception as exc:  # noqa: BLE001 - closing must not fail the caller
            log.debug("closing Kafka producer: %s", exc)


class KafkaTopicConsumer:
    def __init__(self, cfg: KafkaConfig, topics: list[str], group_id: str, connect_timeout_s: float,
                 session_timeout_s: float, max_poll_interval_s: float, from_end: bool = False):
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        self._cfg = cfg
        self._group_id = group_id
        self._closed = False
        try:
            self._consumer = KafkaConsumer(
                *topics,
                bootstrap_servers=cfg.bootstrap_servers,
                client_id=f"longtail-{group_id}",
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset="latest" if from_end else "earliest",
                allow_auto_create_topics=False,
                session_timeout_ms=int(session_timeout_s * 1000),
                heartbeat_interval_ms=int(max(500, session_timeout_s * 1000 / 4)),
                max_poll_interval_ms=int(max_poll_interval_s * 1000),
                request_timeout_ms=int(max(30.0, session_timeout_s + 5) * 1000),
                bootstrap_timeout_ms=int(connect_timeout_s * 1000),
                # re-read metadata often so partitions added by ensure_topics are seen soon
                metadata_max_age_ms=30_000,
            )
        except (KafkaError, OSError) as exc:
            raise _wrap(f"joining group {group_id!r}", cfg, exc) from exc

    def poll(self, timeout_s: float = 1.0, max_records: int = 1) -> list[Message]:
        from kafka.errors import KafkaError

        try:
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max(1, max_records))
        except (KafkaError, OSError) as exc:
            raise _wrap(f"polling for group {self._group_id!r}", self._cfg, exc) from exc
        messages = []
        for records in batches.values():
            for r in records:
                messages.append(Message(
                    topic=r.topic,
                    partition=r.partition,
                    offset=r.offset,
                    key=r.key,
                    value=r.value if r.value is not None else b"",
                    headers=tuple((k, v if v is not None else b"") for k, v in (r.headers or ())),
                    timestamp_ms=int(r.timestamp or 0),
                ))
        return messages

    def commit(self, message: Message) -> None:
        from kafka import errors as kerr
        from kafka.structs import OffsetAndMetadata, TopicPartition

        # kafka-python 3.x: OffsetAndMetadata(offset, metadata, leader_epoch); -1 = unknown epoch.
        offsets = {TopicPartition(message.topic, message.partition): OffsetAndMetadata(message.offset + 1, "", -1)}
        try:
            self._consumer.commit(offsets)
        except (kerr.CommitFailedError, kerr.RebalanceInProgressError, kerr.IllegalGenerationError,
                kerr.UnknownMemberIdError) as exc:
            # The partition moved to another member (rebalance) before this commit. That
            # member resumes from the last committed offset and redoes the message: the same
            # outcome as a crash just before committing, which at-least-once handlers
            # tolerate. Not an error for the caller's loop.
            log.warning("commit of %s[%d]@%d lost to a rebalance (it will be redelivered): %s",
                        message.topic, message.partition, message.offset, exc)
        except (kerr.KafkaError, OSError) as exc:
            raise _wrap(f"committing {message.topic}[{message.partition}]@{message.offset}", self._cfg, exc) from exc

    def assignment(self) -> set[tuple[str, int]]:
        """(topic, partition) pairs this member owns now. Not part of the port (tests, metrics)."""
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close(autocommit=False)  # leaves the group: partitions move at once
        except Exception as exc:  # noqa: BLE001 - closing must not fail the caller
            log.debug("closing Kafka consumer: %s", exc)


class KafkaTopicBus:
    def __init__(self, cfg: KafkaConfig, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 publish_timeout_s: float = PUBLISH_TIMEOUT_S, session_timeout_s: float = SESSION_TIMEOUT_S,
                 max_poll_interval_s: float = MAX_POLL_INTERVAL_S):
        self.cfg = cfg
        self._connect_timeout_s = connect_timeout_s
        self._publish_timeout_s = publish_timeout_s
        self._session_timeout_s = session_timeout_s
        self._max_poll_interval_s = max_poll_interval_s
        self._admin = None
        self._lock = threading.Lock()

    def _admin_client(self):
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        with self._lock:
            if self._admin is None:
                try:
                    self._admin = KafkaAdminClient(
                        bootstrap_servers=self.cfg.bootstrap_servers,
                        client_id="longtail-admin",
                        request_timeout_ms=int(self._publish_timeout_s * 1000),
                        bootstrap_timeout_ms=int(self._connect_timeout_s * 1000),
                    )
                except (KafkaError, OSError) as exc:
                    raise _wrap("connecting the admin client", self.cfg, exc) from exc
            return self._admin

    def ensure_topics(self, topics: dict[str, int]) -> None:
        """Create missing topics; grow ones that have fewer partitions than asked (never shrink)."""
        from kafka.errors import KafkaError, TopicAlreadyExistsError

        if not topics:
            return
        wanted = {name: int(n or self.cfg.partitions) for name, n in topics.items()}
        admin = self._admin_client()
        try:
            existing = {t["name"]: len(t.get("partitions") or ())
                        for t in admin.describe_topics(list(wanted)) if t.get("error_code", 0) == 0}
            missing = {name: n for name, n in wanted.items() if name not in existing}
            if missing:
                result = admin.create_topics(
                    {name: {"num_partitions": n, "replication_factor": self.cfg.replication_factor}
                     for name, n in missing.items()},
                    timeout_ms=int(self._publish_timeout_s * 1000), raise_errors=False)
                for topic in result.get("topics", ()):
                    code = topic.get("error_code", 0)
                    if code not in (0, TopicAlreadyExistsError.errno):
                        raise PortError(f"Kafka: creating topic {topic.get('name')!r} failed: error {code} "
                                        f"{topic.get('error_message') or ''}".strip())
            grow = {name: n for name, n in wanted.items() if name in existing and existing[name] < n}
            if grow:
                admin.create_partitions(grow, timeout_ms=int(self._publish_timeout_s * 1000))
            admin.wait_for_topics(list(wanted), timeout_ms=int(self._publish_timeout_s * 1000))
        except PortError:
            raise
        except (KafkaError, OSError) as exc:
            raise _wrap(f"ensuring topics {sorted(wanted)}", self.cfg, exc) from exc

    def topic_partitions(self, topic: str) -> int:
        """Number of partitions of `topic` (0 when it does not exist). Not part of the port."""
        from kafka.errors import KafkaError

        try:
            for t in self._admin_client().describe_topics([topic]):
                if t.get("name") == topic and t.get("error_code", 0) == 0:
                    return len(t.get("partitions") or ())
        except (KafkaError, OSError) as exc:
            raise _wrap(f"describing {topic!r}", self.cfg, exc) from exc
        return 0

    def group_lag(self, group_id: str, topics: list[str]) -> GroupLag:
        """Through the admin client only (committed offsets, end offsets, the group's
        description), so reading never joins the group nor triggers a rebalance."""
        from kafka.admin import OffsetSpec
        from kafka.errors import KafkaError
        from kafka.structs import TopicPartition

        admin = self._admin_client()
        try:
            parts = [TopicPartition(t["name"], p["partition_index"])
                     for t in admin.describe_topics(sorted(set(topics))) if t.get("error_code", 0) == 0
                     for p in t.get("partitions") or ()]
            if not parts:
                return GroupLag(group_id, self._members(admin, group_id), ())
            committed = admin.list_group_offsets({group_id: parts}).get(group_id, {})
            ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in parts})
            firsts = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in parts})
            members = self._members(admin, group_id)
        except (KafkaError, OSError) as exc:
            raise _wrap(f"reading the lag of group {group_id!r}", self.cfg, exc) from exc
        lags = []
        for tp in sorted(parts):
            mark = committed.get(tp)
            # No commit (offset -1): a member would start at the earliest retained message.
            start = mark.offset if mark is not None and mark.offset >= 0 else firsts[tp].offset
            lags.append(PartitionLag(tp.topic, tp.partition, start, ends[tp].offset))
        return GroupLag(group_id, members, tuple(lags))

    def list_groups(self, prefix: str) -> list[str]:
        from kafka.errors import KafkaError

        try:
            listed = self._admin_client().list_groups()
        except (KafkaError, OSError) as exc:
            raise _wrap("listing the consumer groups", self.cfg, exc) from exc
        ids = [g["group_id"] if isinstance(g, dict) else g[0] for g in listed]
        return sorted(g for g in ids if g.startswith(prefix))

    @staticmethod
    def _members(admin, group_id: str) -> int:
        described = admin.describe_groups([group_id]).get(group_id) or {}
        return len(described.get("members") or ())

    def producer(self) -> KafkaTopicProducer:
        return KafkaTopicProducer(self.cfg, self._connect_timeout_s, self._publish_timeout_s)

    def consumer(self, topics: list[str], group_id: str, from_end: bool = False) -> KafkaTopicConsumer:
        return KafkaTopicConsumer(self.cfg, list(topics), group_id, self._connect_timeout_s,
                                  self._session_timeout_s, self._max_poll_interval_s, from_end)

    def close(self) -> None:
        with self._lock:
            admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception as exc:  # noqa: BLE001
                log.debug("closing Kafka admin client: %s", exc)

