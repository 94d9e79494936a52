"""Decides whether view beacons count. A beacon must name a genuine, unexpired playback id
issued for its video; it counts in the playback's region (one of platform.regions); a
playback counts one start and at most the bytes it could have fetched. Every refusal is
counted by reason in longtail_beacons_rejected_total.

What each playback has used so far is remembered in this gateway process (a TTL cache,
entries dropped when their playback expires). Several gateway processes would share it in
a store with atomic updates and expiry, e.g. Redis: SET nonce NX EXAT expires for the start,
and a small Lua script doing INCRBY-unless-over-the-bound for the bytes.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from cachetools import TLRUCache

from longtail.metadata.v1 import video_pb2
from longtail_common import qoe, telemetry
from gateway.signing import Playback

# Playlists, init segments, poster and storyboard: small next to the media, bounded here.
NON_MEDIA_BYTES = 1 << 20

_counter: list = []
_counter_lock = threading.Lock()


def count_rejected(reason: str, beacons: int) -> None:
    """longtail_beacons_rejected_total{reason} += beacons (a refused batch counts all of its own)."""
    with _counter_lock:
        if not _counter:
            _counter.append(telemetry.meter().create_counter(
                "longtail.beacons.rejected", description="view beacons refused, by reason"))
    _counter[0].add(beacons, {"reason": reason})


_qoe: dict = {}


def record_qoe(event) -> None:
    """The player's QoE of an accepted beacon as histograms per region x served_from:
    longtail_playback_startup_seconds, longtail_playback_rebuffer_seconds (per beacon that
    stalled) and longtail_playback_rebuffers_total."""
    where = {video_pb2.SERVED_FROM_ORIGIN: "origin", video_pb2.SERVED_FROM_CDN: "cdn"}.get(event.served_from)
    if where is None:
        return
    with _counter_lock:
        if not _qoe:
            m = telemetry.meter()
            _qoe["startup"] = m.create_histogram(
                "longtail.playback.startup", unit="s", description="play request to first frame (Mux start-up time)",
                explicit_bucket_boundaries_advisory=[b / 1000 for b in qoe.STARTUP_BUCKETS_MS])
            _qoe["rebuffer"] = m.create_histogram(
                "longtail.playback.rebuffer", unit="s", description="seconds stalled after the first frame, per beacon",
                explicit_bucket_boundaries_advisory=list(qoe.REBUFFER_BUCKETS_S))
            _qoe["rebuffers"] = m.create_counter("longtail.playback.rebuffers", description="stalls after the first frame")
    attrs = {"region": event.region, "served_from": where}
    if event.startup_ms > 0:
        _qoe["startup"].record(event.startup_ms / 1000, attrs)
    if event.rebuffer_count > 0 or event.rebuffer_ms > 0:
        _qoe["rebuffer"].record(event.rebuffer_ms / 1000, attrs)
        _qoe["rebuffers"].add(event.rebuffer_count, attrs)


class BeaconRefused(Exception):
    """A beacon that does not count: answered with status, counted under reason."""

    def __init__(self, status: int, code: str, reason: str, message: str):
        super().__init__(message)
        self.status, self.code, self.reason, self.message = status, code, reason, message


def playback_byte_bound(video: video_pb2.Video) -> int:
    """The most bytes one playback of the video can fetch: every rendition whole (a player
    switching renditions fetches parts of several) at its advertised peak bitrate (HLS
    BANDWIDTH bounds every segment, so a whole rendition is at most bitrate x duration / 8),
    plus NON_MEDIA_BYTES."""
    duration_s = max(video.duration_seconds, 1.0)
    return int(sum(r.bitrate_bps for r in video.renditions) * duration_s / 8) + NON_MEDIA_BYTES


@dataclass(frozen=True)
class Charge:
    """One beacon against its playback: kind, bytes it reports, and that playback's byte bound."""

    playback: Playback
    kind: str
    bytes: int
    bound: int


@dataclass(frozen=True)
class Usage:
    started: bool
    bytes: int
    expires: int  # the playback's: after it no beacon names it, so it is forgotten


class PlaybackLedger:
    """What each playback has used: whether its start was counted, and its bytes so far."""

    def __init__(self, maxsize: int):
        self._seen: TLRUCache = TLRUCache(maxsize, ttu=lambda _nonce, usage, _now: usage.expires, timer=time.time)

    def admit(self, charges: list[Charge]) -> dict[str, Usage]:
        """The usages after all these beacons, if every one counts; else BeaconRefused for the
        first that does not (and nothing is recorded: record() does that)."""
        after: dict[str, Usage] = {}
        for charge in charges:
            nonce = charge.playback.nonce
            usage = after.get(nonce) or self._seen.get(nonce) or Usage(False, 0, charge.playback.expires)
            if charge.kind == "start" and usage.started:
                raise BeaconRefused(409, "ALREADY_COUNTED", "repeat", "this playback's view was already counted")
            total = usage.bytes + charge.bytes
            if total > charge.bound:
                raise BeaconRefused(400, "BYTES_OUT_OF_BOUND", "too_many_bytes",
                                    f"more bytes than one playback of this video can fetch ({charge.bound})")
            after[nonce] = Usage(usage.started or charge.kind == "start", total, usage.expires)
        return after

    def record(self, after: dict[str, Usage]) -> dict[str, Usage | None]:
        """Stores the admitted usages; answers what they replaced, for restore()."""
        before = {nonce: self._seen.get(nonce) for nonce in after}
        self._seen.update(after)
        return before

    def restore(self, before: dict[str, Usage | None]) -> None:
        """Undoes record() (the beacons could not be published)."""
        for nonce, usage in before.items():
            if usage is None:
                self._seen.pop(nonce, None)
            else:
                self._seen[nonce] = usage
