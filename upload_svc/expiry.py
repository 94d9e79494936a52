"""Abandoned uploads expire: a sweep removes unfinished uploads untouched for
`platform.upload_expiry_s` (tus `Upload-Expires`), with their videos.

For each such upload the sweep takes its lease (an append in flight keeps it alive), marks
it expired (appends and HEADs now answer NOT_FOUND), deletes its video through metadata_svc
(`DeleteVideo`, only while the video is still UPLOADING, at the etag it read) and then
removes the staged bytes: multipart parts, tail, state. A sweep cut short is finished by the
next one, since an expired upload is always swept again. The bookkeeping of finished
uploads (their state object; the raw original and the video stay) is dropped after the same
time. Several upload_svc replicas may sweep at once: the lease gives each upload to one.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable

import grpc

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail_common.ports import NotFoundError
from upload_svc.staging import COMPLETE, EXPIRED, UPLOADING, Busy, Staging

log = logging.getLogger("upload_svc.expiry")

S = video_pb2.VideoStatus


@dataclasses.dataclass
class ExpiryResult:
    expired: list[str] = dataclasses.field(default_factory=list)  # uploads removed with their video
    forgotten: int = 0  # finished uploads whose state was dropped
    kept: int = 0  # live, held by an append, or a video delete to retry


class UploadExpiry:
    def __init__(self, staging: Staging, metadata, expiry_s: float, clock: Callable[[], float] = time.time):
        if expiry_s <= 0:
            raise ValueError(f"platform.upload_expiry_s must be > 0, not {expiry_s}")
        self.staging = staging
        self.metadata = metadata  # a MetadataServiceStub
        self.expiry_s = expiry_s
        self.clock = clock

    def sweep(self) -> ExpiryResult:
        result = ExpiryResult()
        for video_id in list(self.staging.list_video_ids()):
            state = self.staging.load(video_id)
            if state is None:
                continue
            if state.phase != EXPIRED and state.touched + self.expiry_s > self.clock():
                result.kept += 1
                continue
            try:
                lease = self.staging.acquire(video_id)
            except (Busy, NotFoundError):
                result.kept += 1
                continue
            try:
                found = lease.found  # as it was before this sweep took it
                if found.phase == COMPLETE:
                    self.staging.discard(video_id, found)
                    result.forgotten += 1
                elif found.phase in (UPLOADING, EXPIRED) and (
                        found.phase == EXPIRED or found.touched + self.expiry_s <= self.clock()):
                    lease.save(phase=EXPIRED)
                    if self._delete_video(video_id):
                        self.staging.discard(video_id, lease.state)
                        result.expired.append(video_id)
                        log.info("upload of %s expired: staged bytes and video deleted", video_id)
                    else:
                        result.kept += 1
                else:
                    result.kept += 1  # touched since it was listed, or stored and awaiting its hand-off
            finally:
                if self.staging.load(video_id) is not None:
                    lease.release()
        return result

    def _delete_video(self, video_id: str) -> bool:
        """Deletes the video if it is still UPLOADING; False to try again next sweep."""
        try:
            video = self.metadata.GetVideo(mpb.GetVideoRequest(id=video_id), timeout=30)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return True
            raise
        if video.status != S.VIDEO_STATUS_UPLOADING:
            log.warning("expired upload of %s: its video is %s, so it is kept", video_id, S.Name(video.status))
            return True
        try:
            self.metadata.DeleteVideo(mpb.DeleteVideoRequest(id=video_id, etag=video.etag), timeout=30)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return True
            if exc.code() == grpc.StatusCode.ABORTED:
                return False  # changed under us: look again next time
            raise
        return True

    def run(self, stopping: threading.Event, interval_s: float) -> None:
        """Sweeps every `interval_s` until `stopping`; a failed sweep is retried next time."""
        while not stopping.wait(interval_s):
            try:
                swept = self.sweep()
                if swept.expired or swept.forgotten:
                    log.info("upload sweep: %d expired, %d finished forgotten, %d kept", len(swept.expired),
                             swept.forgotten, swept.kept)
            except Exception as exc:  # noqa: BLE001 - a backend hiccup must not kill the thread
                log.warning("upload sweep failed (will retry in %.0fs): %s", interval_s, exc)
