"""Raw-upload janitor: raw originals are temporary.

upload_svc owns the raw bucket, so it also empties it: a sweep lists the raw bucket,
asks metadata_svc (BatchGetVideos) for the status of the videos found there, and
deletes the raw files of videos that have been READY for longer than
`platform.raw_retention_s`. FAILED videos keep theirs until an operator acts; videos
still in flight, and raw files whose video is unknown, are never touched. Done in the
service rather than with S3 lifecycle rules, which not every store has.

Deleting is idempotent, so several upload_svc replicas may sweep at the same time.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable, Iterable

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail_common.ports import RAW_BUCKET, InvalidKeyError, validate_id

log = logging.getLogger("upload_svc.janitor")

S = video_pb2.VideoStatus
BATCH = 500  # ids per BatchGetVideos call (the API takes up to 1000)


@dataclasses.dataclass
class SweepResult:
    deleted: list[str] = dataclasses.field(default_factory=list)  # raw keys removed
    kept_failed: int = 0
    kept_recent: int = 0  # READY, but within the retention
    kept_other: int = 0  # still uploading/processing, or unknown to metadata


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class RawJanitor:
    def __init__(self, objects, metadata, retention_s: float, clock: Callable[[], float] = time.time):
        if retention_s < 0:
            raise ValueError(f"platform.raw_retention_s must be >= 0, not {retention_s}")
        self.objects = objects
        self.metadata = metadata  # a MetadataServiceStub
        self.retention_s = retention_s
        self.clock = clock

    def sweep(self) -> SweepResult:
        result = SweepResult()
        by_video: dict[str, list[str]] = {}
        for key in self.objects.list_keys(RAW_BUCKET):
            video_id = key.split("/", 1)[0]
            try:
                validate_id(video_id, "video id")
            except InvalidKeyError:
                result.kept_other += 1  # not ours (an operator's file?): leave it
                continue
            by_video.setdefault(video_id, []).append(key)
        cutoff = self.clock() - self.retention_s
        for ids in _batches(sorted(by_video), BATCH):
            found = {v.id: v for v in self.metadata.BatchGetVideos(mpb.BatchGetVideosRequest(ids=ids), timeout=30).videos}
            for video_id in ids:
                video, keys = found.get(video_id), by_video[video_id]
                if video is None or video.status not in (S.VIDEO_STATUS_READY, S.VIDEO_STATUS_FAILED):
                    result.kept_other += len(keys)
                elif video.status == S.VIDEO_STATUS_FAILED:
                    result.kept_failed += len(keys)
                elif not video.HasField("publish_time") or video.publish_time.ToNanoseconds() / 1e9 > cutoff:
                    result.kept_recent += len(keys)
                else:
                    for key in keys:
                        self.objects.delete(RAW_BUCKET, key)
                        result.deleted.append(key)
                    log.info("deleted raw upload of %s (READY since %s)", video_id,
                             video.publish_time.ToJsonString())
        return result

    def run(self, stopping: threading.Event, interval_s: float) -> None:
        """Sweeps every `interval_s` until `stopping`; a failed sweep is retried next time."""
        while not stopping.wait(interval_s):
            try:
                swept = self.sweep()
                if swept.deleted:
                    log.info("raw sweep: deleted %d, kept %d failed, %d recent, %d other", len(swept.deleted),
                             swept.kept_failed, swept.kept_recent, swept.kept_other)
            except Exception as exc:  # noqa: BLE001 - a backend hiccup must not kill the thread
                log.warning("raw sweep failed (will retry in %.0fs): %s", interval_s, exc)
