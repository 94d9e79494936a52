"""View beacons from players, published to the `views` topic (placement counts them).

A beacon for a video that does not exist or is not READY is rejected, and a batch is
accepted whole or not at all.
"""
from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail_common.config import Config
from longtail_common.ports import ID_PATTERN, TOPIC_VIEWS
from longtail_common.proto_enums import VIEW_KIND
from gateway.dependencies import Cfg, Links, MetadataStub, ServiceLinks
from gateway.errors import SERVICE_ERRORS, ApiError, error_responses, grpc_call
from gateway.validation import require_video_id, viewer_region
from gateway.video_json import S, status_name

router = APIRouter()


class ViewBody(BaseModel):
    """A player beacon: "start" counts a view; every kind adds the bytes watched since the last one."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["start", "progress", "complete"]
    bytes: int = Field(default=0, ge=0, le=1 << 40)
    # The body's shape only: two letters in any case, or none for the X-Client-Region header
    # or the default; viewer_region upper-cases it and makes the real check.
    region: str = Field(default="", pattern=r"^([A-Za-z]{2})?$")


class BatchViewItem(ViewBody):
    video_id: str = Field(pattern=ID_PATTERN)


class ViewBatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[BatchViewItem] = Field(min_length=1, max_length=500)


async def require_ready(metadata: mpb_grpc.MetadataServiceStub, ids: list[str]) -> None:
    """404 unless every video exists, 409 unless every one is READY."""
    for video_id in ids:
        require_video_id(video_id)
    found = await grpc_call(metadata.BatchGetVideos(mpb.BatchGetVideosRequest(ids=ids), timeout=15))
    status = {v.id: v.status for v in found.videos}
    for video_id in ids:
        if video_id not in status:
            raise ApiError(404, "NOT_FOUND", f"video {video_id} not found")
        if status[video_id] != S.VIDEO_STATUS_READY:
            raise ApiError(409, "NOT_READY", f"video {video_id} is {status_name(status[video_id])}",
                           extra={"status": status_name(status[video_id])})


async def publish_views(items: list[tuple[str, ViewBody]], request: Request, cfg: Config,
                        metadata: mpb_grpc.MetadataServiceStub, links: ServiceLinks) -> int:
    """Checks every beacon, then publishes them all; answers how many."""
    await require_ready(metadata, list(dict.fromkeys(v for v, _ in items)))
    events = []
    for video_id, body in items:
        event = events_pb2.ViewEvent(video_id=video_id, region=viewer_region(body.region, request, cfg),
                                     **VIEW_KIND.fields(body.kind), bytes_watched=body.bytes)
        event.event_time.GetCurrentTime()
        events.append(event)

    def send():
        producer = links.views_producer()
        for event in events:
            producer.publish(TOPIC_VIEWS, event.SerializeToString(), key=event.video_id.encode())

    await asyncio.to_thread(send)
    return len(events)


@router.post("/v1/videos/{video_id}/views", status_code=202,
             responses=error_responses(400, 403, 404, 408, 409, 413, 422, *SERVICE_ERRORS))
async def post_view(video_id: str, body: ViewBody, request: Request, cfg: Cfg, metadata: MetadataStub,
                    links: Links):
    return {"accepted": await publish_views([(video_id, body)], request, cfg, metadata, links)}


@router.post("/v1/views", status_code=202,
             responses=error_responses(400, 403, 404, 408, 409, 413, 422, *SERVICE_ERRORS))
async def post_views(body: ViewBatchBody, request: Request, cfg: Cfg, metadata: MetadataStub, links: Links):
    """Batch of beacons (all accepted or none: any unknown/not-READY video rejects the batch)."""
    return {"accepted": await publish_views([(e.video_id, e) for e in body.events], request, cfg, metadata, links)}
