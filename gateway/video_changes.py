"""Makes a delete's first moves. (Edits need nothing here: metadata_svc announces every
write of a video on `video.changed`, which search_svc and every gateway process read.)

One job. A delete first publishes `video.deleted`, so the intent is durable before
anything is removed, then deletes the metadata record, so the video is gone from every answer when DELETE returns. The rest (raw upload, staged parts,
media, edge copies, view counts, search entry) is done by that event's consumers,
placement_svc's deleter and search_svc, each step idempotent and retried; the deleter
deletes the record too, so a gateway that dies between the two moves loses nothing.
"""
from __future__ import annotations

import asyncio
import logging

import grpc

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail_common.ports import TOPIC_VIDEO_DELETED
from gateway.dependencies import ServiceLinks
from gateway.errors import ApiError

log = logging.getLogger("gateway.video_changes")
# Rounds of re-reading a record that changes under the delete (a transcode finishing) before
# leaving the rest to the deleter.
DELETE_ROUNDS = 5


async def _publish(links: ServiceLinks, topic: str, event, video_id: str) -> None:
    def send():
        links.views_producer().publish(topic, event.SerializeToString(), key=video_id.encode())

    try:
        await asyncio.to_thread(send)
    except Exception as exc:  # noqa: BLE001 - the topic backend is away: the client may retry
        log.warning("publishing %s for %s failed: %s", topic, video_id, exc)
        raise ApiError(503, "UNAVAILABLE", "the event bus is unavailable; retry later") from None


async def start_delete(links: ServiceLinks, metadata: mpb_grpc.MetadataServiceStub, video: video_pb2.Video) -> bool:
    """Publishes `video.deleted` (503 if it cannot), then deletes the record at whatever etag
    it has by then: once the intent is published, the delete wins over any later write.
    True when the record is gone; False when the deleter is left to remove it."""
    event = events_pb2.VideoDeleted(video_id=video.id, channel_id=video.channel.id,
                                    raw_object_key=video.raw_object_key,
                                    regions=sorted({p.region for p in video.placements}))
    event.delete_time.GetCurrentTime()
    await _publish(links, TOPIC_VIDEO_DELETED, event, video.id)
    etag = video.etag
    for _round in range(DELETE_ROUNDS):
        try:
            await metadata.DeleteVideo(mpb.DeleteVideoRequest(id=video.id, etag=etag), timeout=15)
            return True
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return True
            if exc.code() != grpc.StatusCode.ABORTED:
                log.warning("deleting the record of %s failed (%s); the deleter retries it", video.id, exc.code())
                return False
        try:
            etag = (await metadata.GetVideo(mpb.GetVideoRequest(id=video.id), timeout=15)).etag
        except grpc.aio.AioRpcError as exc:
            return exc.code() == grpc.StatusCode.NOT_FOUND
    log.warning("video %s kept changing during its delete; the deleter finishes it", video.id)
    return False
