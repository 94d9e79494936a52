"""Exports every platform consumer group's lag and live members, read from outside the groups.

A consumer cannot report its own group's backlog when it matters most: once the group's
last member stops, the messages that queue up for it are exactly what must stay visible.
So a process that consumes nothing (upload_svc, under the launcher and in compose alike)
reads each group's committed offsets against its topics' end offsets through
`TopicBus.group_lag` every few seconds and serves them:

* longtail_topic_lag{topic, group}: messages the group has not committed yet;
* longtail_consumer_group_members{group}: the group's live members (0: nothing consumes).

Every replica of the host process reports the same numbers; rules take the max.
"""
from __future__ import annotations

import logging
import threading

from longtail_common import telemetry
from longtail_common.ports import CONSUMER_GROUPS, REPLICA_GROUPS, TopicBus

log = logging.getLogger(__name__)

REFRESH_INTERVAL_S = 5.0


class GroupLagExporter:
    """Reads the groups' lag on `run`'s schedule; the gauges report the last reading."""

    def __init__(self, bus: TopicBus, groups: dict[str, tuple[str, ...]] = CONSUMER_GROUPS,
                 replica_groups: dict[str, tuple[str, ...]] = REPLICA_GROUPS):
        self._bus = bus
        self._groups = groups
        self._replica_groups = replica_groups
        self._lock = threading.Lock()
        self._lags: dict[tuple[str, str], int] = {}  # (topic, group) -> messages behind
        self._members: dict[str, int] = {}
        meter = telemetry.meter()
        meter.create_observable_gauge(
            "longtail.topic.lag", callbacks=[self._observe_lags],
            description="messages not yet committed by the consumer group, summed over the topic's partitions")
        meter.create_observable_gauge(
            "longtail.consumer_group.members", callbacks=[self._observe_members],
            description="live members of the consumer group")

    def _replicas(self) -> dict[str, tuple[str, ...]]:
        """The replica groups there are now (one per search replica)."""
        found = {}
        for prefix, topics in self._replica_groups.items():
            try:
                found.update({group: topics for group in self._bus.list_groups(prefix)})
            except Exception as exc:  # noqa: BLE001 - a metric must never stop the loop
                log.warning("consumer groups %s* unavailable: %s", prefix, exc)
        return found

    def refresh(self) -> None:
        """One reading of every group. A group that cannot be read drops out of the gauges
        until it can (a gap says "unknown"; a stale number would say "fine"), and so does a
        replica's group without members: its replica is gone, and nobody will read its backlog."""
        replicas = self._replicas()
        with self._lock:
            for topic, group in [key for key in self._lags if key[1] not in self._groups and key[1] not in replicas]:
                self._lags.pop((topic, group))
            for group in [g for g in self._members if g not in self._groups and g not in replicas]:
                self._members.pop(group)
        for group, topics in {**self._groups, **replicas}.items():
            try:
                reading = self._bus.group_lag(group, list(topics))
                if group in replicas and not reading.members:
                    raise LookupError("no live member")
            except Exception as exc:  # noqa: BLE001 - a metric must never stop the loop
                if not isinstance(exc, LookupError):
                    log.warning("lag of consumer group %s unavailable: %s", group, exc)
                with self._lock:
                    self._members.pop(group, None)
                    for topic in topics:
                        self._lags.pop((topic, group), None)
                continue
            with self._lock:
                self._members[group] = reading.members
                for topic, behind in reading.by_topic().items():
                    self._lags[(topic, group)] = behind

    def run(self, stopping: threading.Event, interval_s: float = REFRESH_INTERVAL_S) -> None:
        """Refreshes until `stopping` is set (a service's Background)."""
        while True:
            self.refresh()
            if stopping.wait(interval_s):
                return

    def _observe_lags(self, _options):
        from opentelemetry.metrics import Observation

        with self._lock:
            return [Observation(n, {"topic": t, "group": g}) for (t, g), n in self._lags.items()]

    def _observe_members(self, _options):
        from opentelemetry.metrics import Observation

        with self._lock:
            return [Observation(n, {"group": g}) for g, n in self._members.items()]
