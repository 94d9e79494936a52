"""Removes every trace of a deleted video, from the `video.deleted` topic.

One job: for each VideoDeleted, make sure the metadata record is gone (the gateway deletes
it right after publishing; this covers a gateway that died in between), then remove the
staged upload (its state first, so no append goes on, then its unfinished multipart
uploads and staged bytes), the raw upload, every media object (renditions, manifests,
poster, storyboard, the transcoder's own records), the copies on every region's edge, and
its view counts and catalogue entry. Each step is idempotent, so a message that fails
half way is simply retried from the top by the consume loop (and dead-lettered, like any
message, if it keeps failing). search_svc drops the search entry from the same topic.

It runs in placement_svc because placement already holds the object store, pushes the
edge copies and keeps the view counts, and it is where a transcode that finishes after
the delete arrives: the result handler calls `purge_media` for a result whose video is
gone, so objects written after this deleter ran are removed too and never published.
"""
from __future__ import annotations

import logging

import grpc

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail_common.consumer import PermanentError
from longtail_common.ports import (
    MEDIA_BUCKET,
    RAW_BUCKET,
    STAGING_BUCKET,
    Message,
    ObjectStore,
    ViewCountStore,
    is_valid_id,
)
from placement_svc import edge

log = logging.getLogger("placement_svc.deleter")
CONSUMER_GROUP = "deleter"
# Attempts before a deletion is dead-lettered: the backoff doubles from 1 s, so about four
# minutes of a backend being away.
MAX_ATTEMPTS = 9
STAGING_STATE = "upload.json"  # upload_svc's state object; removed first, so appends stop


def _delete_prefix(objects: ObjectStore, bucket: str, prefix: str) -> int:
    """Deletes every object under prefix (a bucket never made lists nothing)."""
    keys = list(objects.list_keys(bucket, prefix))
    for key in keys:
        objects.delete(bucket, key)
    return len(keys)


def purge_media(objects: ObjectStore, video_id: str, regions) -> int:
    """Deletes the video's media objects and their copies on the regions' edges."""
    prefix = f"videos/{video_id}/"
    removed = _delete_prefix(objects, MEDIA_BUCKET, prefix)
    for region in sorted(set(regions)):
        removed += _delete_prefix(objects, edge.edge_bucket(region), prefix)
    return removed


def purge_upload(objects: ObjectStore, video_id: str, raw_object_key: str = "") -> int:
    """Deletes the staged upload (state first), its unfinished multipart uploads, and the raw upload."""
    prefix = f"{video_id}/"
    state = prefix + STAGING_STATE
    if objects.stat(STAGING_BUCKET, state) is not None:
        objects.delete(STAGING_BUCKET, state)
    removed = 0
    for key, upload_id in objects.list_multipart_uploads(RAW_BUCKET, prefix):
        objects.abort_multipart(RAW_BUCKET, key, upload_id)
        removed += 1
    removed += _delete_prefix(objects, STAGING_BUCKET, prefix)
    if raw_object_key and not raw_object_key.startswith(prefix):
        objects.delete(RAW_BUCKET, raw_object_key)
    return removed + _delete_prefix(objects, RAW_BUCKET, prefix)


class VideoDeleter:
    """run_consumer handler for `video.deleted`."""

    def __init__(self, metadata, objects: ObjectStore, view_counts: ViewCountStore | None, regions: list[str]):
        self.metadata = metadata  # a MetadataServiceStub
        self.objects = objects
        self.view_counts = view_counts
        self.regions = list(regions)

    def __call__(self, message: Message) -> None:
        event = events_pb2.VideoDeleted()
        try:
            event.ParseFromString(message.value)
        except Exception as exc:  # noqa: BLE001
            raise PermanentError(f"undecodable VideoDeleted: {exc}") from exc
        if not is_valid_id(event.video_id):
            raise PermanentError(f"VideoDeleted with invalid video_id {event.video_id!r}")
        self.delete_record(event.video_id)
        removed = purge_upload(self.objects, event.video_id, event.raw_object_key)
        removed += purge_media(self.objects, event.video_id, [*self.regions, *event.regions])
        if self.view_counts is not None:
            self.view_counts.delete_video(event.video_id)
        log.info("video %s deleted: record, %d objects, view counts", event.video_id, removed)

    def delete_record(self, video_id: str) -> None:
        """Deletes the record whatever its etag now: the owner's delete wins over any later
        write (a transcode finishing, an edit racing it)."""
        for _attempt in range(10):
            try:
                video = self.metadata.GetVideo(mpb.GetVideoRequest(id=video_id), timeout=30)
                self.metadata.DeleteVideo(mpb.DeleteVideoRequest(id=video_id, etag=video.etag), timeout=30)
                return
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return
                if exc.code() != grpc.StatusCode.ABORTED:
                    raise
        raise RuntimeError(f"video {video_id} keeps changing; its delete is retried")
