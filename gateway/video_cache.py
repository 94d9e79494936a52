"""This gateway process's copy of the video records it serves, and of what it renders from
them, so the get and watch calls make no metadata round trip per request.

Kept fresh by the `video.changed` topic, which metadata_svc publishes after every write
(create, update, READY, placement change, delete): each gateway process reads all of it
(a consumer group of its own, from the end) and drops the changed video at once. Entries
also expire after `gateway.video_cache_ttl_s`, which bounds how long a change whose event
was missed (the topic down, a lost publish) is served; an expired video is read again, and
if it is the same version (etag) its renderings are kept; one read in the second half of its
TTL is reloaded in the background while it still answers, so a hot video never expires
under its viewers. A fetch that was in flight when its
video changed is never stored, and requests arriving after the change fetch anew, so a
deleted or privated video is not served from here once its event arrived.

Everything runs on the event loop; the listener thread hands its events over to it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from typing import Awaitable, Callable, Hashable, TypeVar

from cachetools import LRUCache

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import video_pb2
from longtail_common import telemetry
from longtail_common.adapters import make_topic_bus
from longtail_common.config import Config
from longtail_common.ports import TOPIC_VIDEO_CHANGED
from gateway.errors import ApiError

log = logging.getLogger("gateway.video_cache")

T = TypeVar("T")
# Renderings one video keeps (per window, host, region, client, protocol): bounded, since
# the Host header is the client's to choose.
MAX_RENDERINGS = 256
REFRESH_AHEAD = 0.5  # of the TTL
POLL_TIMEOUT_S = 0.5
RECONNECT_MAX_S = 10.0


class CachedVideo:
    """One video as metadata last answered (or its 404), with what was rendered from it."""

    def __init__(self, loaded_at: float, video: video_pb2.Video | None, missing: ApiError | None = None):
        self.loaded_at = loaded_at  # monotonic time the load that answered it started
        self._video = video
        self._missing = missing
        self._renderings: dict[Hashable, object] = {}

    def renewed(self, loaded_at: float, video: video_pb2.Video | None) -> "CachedVideo":
        """This entry, good until loaded_at + the TTL, if `video` is the same version (its
        renderings stay valid: every write gives a new etag); else a new entry."""
        # Captions live beside the record (they leave its etag alone): compared too.
        if (video is not None and self._video is not None and video.etag == self._video.etag
                and video.captions == self._video.captions):
            self.loaded_at = loaded_at
            return self
        return CachedVideo(loaded_at, video)

    def video(self) -> video_pb2.Video:
        if self._video is None:
            raise ApiError(self._missing.status, self._missing.code, self._missing.message)
        return self._video

    def rendered(self, key: Hashable, render: Callable[[], T]) -> T:
        """render()'s answer for `key`, made once for this copy of the video."""
        try:
            return self._renderings[key]
        except KeyError:
            if len(self._renderings) >= MAX_RENDERINGS:
                self._renderings.clear()
            value = self._renderings[key] = render()
            return value


class VideoCache:
    def __init__(self, ttl_s: float, max_videos: int):
        self._ttl_s = ttl_s
        # A video read this late in its life is reloaded in the background while its copy
        # (still within the TTL) keeps answering: a hot video never expires under its viewers
        # (who would all wait on one metadata call), and none is served older than the TTL.
        self._refresh_after_s = ttl_s * REFRESH_AHEAD
        self._entries: LRUCache = LRUCache(maxsize=max_videos)
        self._loading: dict[str, asyncio.Future] = {}
        # Plain counts, read at scrape time: a metric call per request would cost more than a hit.
        self.hits = self.misses = 0
        telemetry.meter().create_observable_counter(
            "longtail.gateway.video_cache.lookups", callbacks=[self._observe_lookups],
            description="video lookups of the get and watch calls, by result (hit: no metadata call)")

    def _observe_lookups(self, _options):
        from opentelemetry.metrics import Observation

        return [Observation(self.hits, {"result": "hit"}), Observation(self.misses, {"result": "miss"})]

    def fresh(self, video_id: str, load: Callable[[], Awaitable[video_pb2.Video]]) -> CachedVideo | None:
        """The cached video if it is fresh (refreshed ahead like get()), else None; no lookup
        counted (the caller counts a hit once it answers from it: gateway/fast_routes.py)."""
        entry = self._entries.get(video_id)
        if entry is None:
            return None
        age = time.monotonic() - entry.loaded_at
        if age >= self._ttl_s:
            return None
        if age >= self._refresh_after_s:
            self._refresh(video_id, entry, load)
        return entry

    def _refresh(self, video_id: str, entry: CachedVideo | None, load) -> asyncio.Future:
        """The load of the video in flight, started if there is none."""
        flight = self._loading.get(video_id)
        if flight is None:
            flight = asyncio.ensure_future(self._load(entry, load))
            self._loading[video_id] = flight
            flight.add_done_callback(lambda done: self._landed(video_id, done))
        return flight

    async def get(self, video_id: str, load: Callable[[], Awaitable[video_pb2.Video]]) -> CachedVideo:
        """The cached video, else load()'s answer (one load at a time per video: concurrent
        requests share it). A 404 is cached like a video; other errors are not."""
        entry = self.fresh(video_id, load)
        if entry is not None:
            self.hits += 1
            return entry
        self.misses += 1
        flight = self._refresh(video_id, self._entries.get(video_id), load)
        # Shielded: a client that hangs up does not cancel the load others wait for.
        return await asyncio.shield(flight)

    @staticmethod
    async def _load(expired: CachedVideo | None, load: Callable[[], Awaitable[video_pb2.Video]]) -> CachedVideo:
        """A fresh entry; an expired one whose video has not changed is renewed, renderings and all."""
        started = time.monotonic()
        try:
            video = await load()
        except ApiError as err:
            if err.status != 404:
                raise
            return CachedVideo(started, None, err)
        return expired.renewed(started, video) if expired is not None else CachedVideo(started, video)

    def _landed(self, video_id: str, flight: asyncio.Future) -> None:
        if self._loading.get(video_id) is not flight:
            return  # the video changed while it loaded: the answer may predate the change
        del self._loading[video_id]
        if not flight.cancelled() and flight.exception() is None:
            self._entries[video_id] = flight.result()

    def invalidate(self, video_id: str) -> None:
        """Forgets the video, and any load of it in flight (its answer is not stored)."""
        self._entries.pop(video_id, None)
        self._loading.pop(video_id, None)

    def clear(self) -> None:
        """Forgets every video (changes may have gone unheard)."""
        self._entries.clear()
        self._loading.clear()


class ChangeListener:
    """Reads `video.changed` on a thread of its own and invalidates the changed videos on
    the event loop. A consumer group of this process alone, starting at the end: every
    process sees every change, and none replays the history."""

    def __init__(self, cfg: Config, cache: VideoCache, loop: asyncio.AbstractEventLoop):
        self._cfg = cfg
        self._cache = cache
        self._loop = loop
        self._group = f"gateway-cache-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="video-changes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=POLL_TIMEOUT_S + 5)

    def _run(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                self._consume()
                return
            except Exception as exc:  # noqa: BLE001 - the bus is down: retry, the TTL covers the gap
                log.warning("video.changed unavailable (%s); cache entries live %.1fs meanwhile; retrying in %.1fs",
                            exc, self._cfg.gateway.video_cache_ttl_s, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)

    def _consume(self) -> None:
        bus = make_topic_bus(self._cfg)
        try:
            consumer = bus.consumer([TOPIC_VIDEO_CHANGED], self._group, from_end=True)
            try:
                consumer.poll(timeout_s=0)  # takes the partitions, so the end is where we are now
                # What was cached before now may have changed unheard (a start, a reconnect).
                self._loop.call_soon_threadsafe(self._cache.clear)
                while not self._stopping.is_set():
                    for message in consumer.poll(timeout_s=POLL_TIMEOUT_S, max_records=500):
                        self._on_message(message.value)
            finally:
                consumer.close()
        finally:
            bus.close()

    def _on_message(self, value: bytes) -> None:
        event = events_pb2.VideoChanged()
        try:
            event.ParseFromString(value)
        except Exception:  # noqa: BLE001 - a malformed event names no video to drop
            log.warning("unreadable video.changed event ignored")
            return
        if event.video_id:
            self._loop.call_soon_threadsafe(self._cache.invalidate, event.video_id)
