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
from longtail_common.ports import CONSUMER_GROUPS, TopicBus

log = logging.getLogger(__name__)

REFRESH_INTERVAL_S = 5.0


class GroupLagExporter:
    """Reads the groups' lag on `run`'s schedule; the gauges report the last reading."""

    def __init__(self, bus: TopicBus, groups: dict[str, tuple[str, ...]] = CONSUMER_GROUPS):
        self._bus = bus
        self._groups = groups
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

    def refresh(self) -> None:
        """One reading of every group. A group that cannot be read drops out of the gauges
        until it can (a gap says "unknown"; a stale number would say "fine")."""
        for group, topics in self._groups.items():
            try:
                reading = self._bus.group_lag(group, list(topics))
            except Exception as exc:  # noqa: BLE001 - a metric must never stop the loop
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
