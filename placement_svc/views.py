"""The `views` topic consumer: player beacons -> daily counts per video x region x day.

One job: decode a ViewEvent, count a view once per "start" beacon and add the bytes of
every beacon, on the event's UTC day, in the ViewCountStore, with the QoE the player
measured (start-up, rebuffering, ladder position per region x served_from) as counters
beside them (`longtail_common.qoe`). The store applies each
(topic/partition, offset) once, so redelivery (at least once) never double counts.
"""
from __future__ import annotations

import datetime as dt
import logging
import re

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import video_pb2
from longtail_common import qoe
from longtail_common.consumer import PermanentError
from longtail_common.ports import DailyQoE, DailyViews, Message, ViewCountStore

log = logging.getLogger("placement_svc.views")
CONSUMER_GROUP = "placement-views"
VIEW_KINDS = ("start", "progress", "complete")
_REGION_RE = re.compile(r"^[A-Z]{2}$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def event_to_row(event: events_pb2.ViewEvent) -> DailyViews:
    """Checks one beacon and turns it into a count row (PermanentError if malformed)."""
    if not _ID_RE.fullmatch(event.video_id):
        raise PermanentError(f"ViewEvent with invalid video_id {event.video_id!r}")
    if not _REGION_RE.fullmatch(event.region):
        raise PermanentError(f"ViewEvent with invalid region {event.region!r}")
    if event.kind not in VIEW_KINDS:
        raise PermanentError(f"ViewEvent with unknown kind {event.kind!r}")
    if event.bytes_watched < 0:
        raise PermanentError("ViewEvent with negative bytes_watched")
    if not event.HasField("event_time"):
        raise PermanentError("ViewEvent without event_time")
    day = dt.datetime.fromtimestamp(event.event_time.seconds, dt.timezone.utc).date().isoformat()
    return DailyViews(video_id=event.video_id, region=event.region, day=day,
                      views=1 if event.kind == "start" else 0, bytes=int(event.bytes_watched))


def event_to_qoe(event: events_pb2.ViewEvent, day: str) -> list[DailyQoE]:
    """The QoE counters of a beacon; none without a known served_from, and values out of
    range are dropped (a player's bug must not poison the penalty)."""
    where = {video_pb2.SERVED_FROM_ORIGIN: "origin", video_pb2.SERVED_FROM_CDN: "cdn"}.get(event.served_from)
    if where is None:
        return []
    startup = event.startup_ms if event.kind == "start" and 0 < event.startup_ms <= qoe.MAX_STARTUP_MS else 0
    rebuffer_ok = 0 <= event.rebuffer_count <= 10_000 and 0 <= event.rebuffer_ms <= qoe.MAX_REBUFFER_MS
    return qoe.qoe_rows(day, event.region, where, startup, event.rebuffer_count if rebuffer_ok else 0,
                        event.rebuffer_ms if rebuffer_ok else 0, max(0, min(event.ladder_position, 64)))


class ViewCounter:
    """run_consumer handler for the `views` topic."""

    def __init__(self, store: ViewCountStore):
        self.store = store

    def __call__(self, message: Message) -> None:
        event = events_pb2.ViewEvent()
        try:
            event.ParseFromString(message.value)
        except Exception as exc:  # noqa: BLE001
            raise PermanentError(f"undecodable ViewEvent: {exc}") from exc
        row = event_to_row(event)
        self.store.apply_views(f"{message.topic}/{message.partition}", message.offset, [row],
                               event_to_qoe(event, row.day))
