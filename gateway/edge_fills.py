"""The gateway's part of placement's on-day moment: announce a pair's first request.

One job: when a watch request's (video, region) decision is origin with
`fill_on_first_request`, publish an EdgeFillRequest on `edge.fills` (placement_svc pushes
the video to the region's edge and turns the decision to cdn; the video cache hears of it
on `video.changed`). The request itself is served from origin, as a pull-through edge
serves its first miss. Announced at most once per pair and gateway process while the
decision stays the same (a lost message is announced again after ANNOUNCE_AGAIN_S), in a
worker thread: the watch answer never waits for the topic.
"""
from __future__ import annotations

import asyncio
import logging
import threading

from cachetools import TTLCache

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import video_pb2
from longtail_common import telemetry
from longtail_common.ports import TOPIC_EDGE_FILLS

log = logging.getLogger("gateway.edge_fills")
ANNOUNCE_AGAIN_S = 60.0


def wants_fill(decision: video_pb2.PlacementDecision | None) -> bool:
    return (decision is not None and decision.served_from != video_pb2.SERVED_FROM_CDN
            and decision.fill_on_first_request)


class FillAnnouncer:
    def __init__(self, links, maxsize: int = 100_000):
        self._links = links  # ServiceLinks: its topic producer
        self._sent: TTLCache = TTLCache(maxsize, ttl=ANNOUNCE_AGAIN_S)
        self._lock = threading.Lock()
        self._counter = telemetry.meter().create_counter(
            "longtail.edge_fill_requests", description="first requests announced for an edge fill, by region")

    def maybe_announce(self, video_id: str, region: str, decision: video_pb2.PlacementDecision | None) -> None:
        """Schedules the announcement if the decision asks for a fill and none went out lately."""
        if not wants_fill(decision):
            return
        key = (video_id, region, decision.decide_time.seconds)
        with self._lock:
            if key in self._sent:
                return
            self._sent[key] = True
        asyncio.get_running_loop().run_in_executor(None, self._publish, video_id, region, key)

    def _publish(self, video_id: str, region: str, key) -> None:
        request = events_pb2.EdgeFillRequest(video_id=video_id, region=region)
        request.request_time.GetCurrentTime()
        try:
            self._links.views_producer().publish(TOPIC_EDGE_FILLS, request.SerializeToString(),
                                                 key=video_id.encode())
            self._counter.add(1, {"region": region})
        except Exception as exc:  # noqa: BLE001 - the next request announces it again
            log.warning("could not announce the first request of %s in %s: %s", video_id, region, exc)
            with self._lock:
                self._sent.pop(key, None)
