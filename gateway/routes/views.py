"""View beacons from players, published to the `views` topic (placement counts them).

A beacon counts only for the playback it names (gateway/beacons.py decides); one for a
video that does not exist or is not READY is rejected, and a batch is accepted whole or
not at all.
"""
from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail_common import qoe
from longtail_common.config import Config
from longtail_common.ports import ID_PATTERN, TOPIC_VIEWS
from longtail_common.proto_enums import VIEW_KIND
from gateway.beacons import BeaconRefused, Charge, PlaybackLedger, count_rejected, playback_byte_bound, record_qoe
from gateway.dependencies import Cfg, Ledger, Links, MetadataStub, ServiceLinks, Signer
from gateway.errors import SERVICE_ERRORS, ApiError, error_responses, grpc_call
from gateway.signing import PlaybackSigner, TokenRefused
from gateway.validation import require_video_id
from gateway.video_json import S, status_name

router = APIRouter()
SERVED_FROM = {"origin": video_pb2.SERVED_FROM_ORIGIN, "cdn": video_pb2.SERVED_FROM_CDN}


class ViewBody(BaseModel):
    """A player beacon: "start" counts a view; every kind adds the bytes watched since the last one."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["start", "progress", "complete"]
    bytes: int = Field(default=0, ge=0, le=1 << 40)
    # The body's shape only: two letters in any case, or none for the X-Client-Region header
    # or the playback's own; claimed_region makes the real check.
    region: str = Field(default="", pattern=r"^([A-Za-z]{2})?$")
    # From the watch payload (`playback.id`); a beacon without a valid one is refused (403).
    playback_id: str = Field(default="", max_length=512,
                             description="the watch payload's playback.id; required for the beacon to count")
    # Quality of experience as the player measured it (Mux's definitions; see
    # longtail_common/qoe.py): start-up on "start", rebuffering since the previous beacon.
    startup_ms: int = Field(default=0, ge=0, le=qoe.MAX_STARTUP_MS,
                            description="play request to first frame, ms (on start; 0: not measured)")
    rebuffer_count: int = Field(default=0, ge=0, le=10_000, description="stalls since the previous beacon")
    rebuffer_ms: int = Field(default=0, ge=0, le=qoe.MAX_REBUFFER_MS, description="their milliseconds")
    ladder_position: int = Field(default=0, ge=0, le=64,
                                 description="rendition playing, 1 = lowest bitrate of the ladder; 0 unknown")
    served_from: Literal["", "origin", "cdn"] = Field(
        default="", description="the watch payload's stream.served_from the playback streamed from")


class BatchViewItem(ViewBody):
    video_id: str = Field(pattern=ID_PATTERN)


class ViewBatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[BatchViewItem] = Field(min_length=1, max_length=500)


async def ready_videos(metadata: mpb_grpc.MetadataServiceStub, ids: list[str]) -> dict[str, video_pb2.Video]:
    """The videos by id; 404 unless every one exists, 409 unless every one is READY."""
    for video_id in ids:
        require_video_id(video_id)
    found = await grpc_call(metadata.BatchGetVideos(mpb.BatchGetVideosRequest(ids=ids), timeout=15))
    videos = {v.id: v for v in found.videos}
    for video_id in ids:
        if video_id not in videos:
            raise ApiError(404, "NOT_FOUND", f"video {video_id} not found")
        if videos[video_id].status != S.VIDEO_STATUS_READY:
            status = status_name(videos[video_id].status)
            raise ApiError(409, "NOT_READY", f"video {video_id} is {status}", extra={"status": status})
    return videos


def claimed_region(body: ViewBody, request: Request, cfg: Config) -> str:
    """The region the beacon names (body, else X-Client-Region), upper-cased; "" if none.
    One outside platform.regions is refused."""
    region = (body.region or request.headers.get("x-client-region", "")).upper()
    if region and region not in cfg.platform.regions:
        raise BeaconRefused(400, "INVALID_ARGUMENT", "unknown_region",
                            f"unknown region {region!r}; one of {', '.join(cfg.platform.regions)}")
    return region


def charge_of(video: video_pb2.Video, body: ViewBody, request: Request, cfg: Config,
              signer: PlaybackSigner) -> Charge:
    """What the beacon charges to its playback, if it may count for this video at all."""
    region = claimed_region(body, request, cfg)
    try:
        playback = signer.check_playback(body.playback_id)
    except TokenRefused as refused:
        raise BeaconRefused(403, "PLAYBACK_INVALID", refused.reason,
                            f"playback_id: {refused.message} (take it from the watch payload)") from None
    if playback.video_id != video.id:
        raise BeaconRefused(403, "PLAYBACK_INVALID", "wrong_video", "the playback is for another video")
    if playback.region not in cfg.platform.regions:
        raise BeaconRefused(400, "INVALID_ARGUMENT", "unknown_region", f"region {playback.region} is not served")
    if region and region != playback.region:
        raise BeaconRefused(400, "INVALID_ARGUMENT", "region_mismatch",
                            f"the playback is for region {playback.region}, not {region}")
    return Charge(playback, body.kind, body.bytes, playback_byte_bound(video))


async def publish_views(items: list[tuple[str, ViewBody]], request: Request, cfg: Config, signer: PlaybackSigner,
                        ledger: PlaybackLedger, metadata: mpb_grpc.MetadataServiceStub, links: ServiceLinks) -> int:
    """Checks every beacon, then publishes them all; answers how many."""
    try:
        videos = await ready_videos(metadata, list(dict.fromkeys(v for v, _ in items)))
        charges = [charge_of(videos[video_id], body, request, cfg, signer) for video_id, body in items]
        before = ledger.record(ledger.admit(charges))  # no await between: no other beacon interleaves
    except BeaconRefused as refused:
        count_rejected(refused.reason, len(items))
        raise ApiError(refused.status, refused.code, refused.message, extra={"reason": refused.reason}) from None
    except ApiError as error:
        count_rejected(error.code.lower(), len(items))
        raise
    events = []
    for charge, (_, body) in zip(charges, items):
        event = events_pb2.ViewEvent(video_id=charge.playback.video_id, region=charge.playback.region,
                                     **VIEW_KIND.fields(charge.kind), bytes_watched=charge.bytes,
                                     startup_ms=body.startup_ms if charge.kind == "start" else 0,
                                     rebuffer_count=body.rebuffer_count, rebuffer_ms=body.rebuffer_ms,
                                     ladder_position=body.ladder_position,
                                     served_from=SERVED_FROM.get(body.served_from, 0))
        event.event_time.GetCurrentTime()
        events.append(event)

    def send():
        producer = links.views_producer()
        for event in events:
            producer.publish(TOPIC_VIEWS, event.SerializeToString(), key=event.video_id.encode())

    try:
        await asyncio.to_thread(send)
    except BaseException:
        ledger.restore(before)  # not counted: the player may send them again
        raise
    for event in events:
        record_qoe(event)
    return len(events)


@router.post("/v1/videos/{video_id}/views", status_code=202,
             responses=error_responses(400, 403, 404, 408, 409, 413, 422, *SERVICE_ERRORS))
async def post_view(video_id: str, body: ViewBody, request: Request, cfg: Cfg, signer: Signer, ledger: Ledger,
                    metadata: MetadataStub, links: Links):
    return {"accepted": await publish_views([(video_id, body)], request, cfg, signer, ledger, metadata, links)}


@router.post("/v1/views", status_code=202,
             responses=error_responses(400, 403, 404, 408, 409, 413, 422, *SERVICE_ERRORS))
async def post_views(body: ViewBatchBody, request: Request, cfg: Cfg, signer: Signer, ledger: Ledger,
                     metadata: MetadataStub, links: Links):
    """Batch of beacons, all accepted or none: one that does not count rejects the batch."""
    items = [(e.video_id, e) for e in body.events]
    return {"accepted": await publish_views(items, request, cfg, signer, ledger, metadata, links)}
