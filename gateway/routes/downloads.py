"""Download files of a video (a progressive MP4 of an H.264 rung, an audio-only M4A): asked
for by the video's owner (or made for every video by config), listed, and served.

Asking publishes a request on `transcode.requests`: a transcoder remuxes the stored
renditions (no re-encode) and records the file in the video, whose `video.changed` event
refreshes every gateway's cached watch payload; the request never waits for the work.
Files are served only under a download token for that one file (gateway/signing.py) and
only while the video's downloads are open to the caller (gateway/downloads.py).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import video_pb2
from longtail_common.ports import MEDIA_BUCKET, TOPIC_TRANSCODE_REQUESTS
from longtail_common.proto_enums import DOWNLOAD_KINDS
from gateway.api_docs import RANGE_HEADER, media_responses, route_per_method
from gateway.dependencies import Cfg, CurrentPrincipal, Links, MetadataStub, Objects, RequiredPrincipal, Signer
from gateway.downloads import attachment_name, download_json, downloads_enabled, downloads_json, may_download
from gateway.errors import SERVICE_ERRORS, ApiError, error_responses
from gateway.routes.media import serve_object
from gateway.routes.videos import cached_video, load_video
from gateway.signing import TokenRefused
from gateway.video_access import media_account, require_owner, require_visible
from gateway.video_json import S, status_name

log = logging.getLogger("gateway.downloads")
router = APIRouter()


class DownloadBody(BaseModel):
    """`kind` "mp4" (a rung with its sound; `height` one of the video's H.264 heights, or
    omitted for the top one) or "m4a" (the sound alone; no height)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["mp4", "m4a"]
    height: int | None = Field(default=None, ge=1, le=4320)


def require_ready(video: video_pb2.Video) -> None:
    if video.status != S.VIDEO_STATUS_READY:
        raise ApiError(409, "NOT_READY", f"video {video.id} is {status_name(video.status)}",
                       extra={"status": status_name(video.status)})


def asked_download(video: video_pb2.Video, body: DownloadBody) -> video_pb2.Download:
    """The (kind, height) asked for, checked against the video's renditions (400 otherwise)."""
    h264 = [r for r in video.renditions if r.codec == "h264"]
    if body.kind == "m4a":
        if body.height is not None:
            raise ApiError(400, "INVALID_ARGUMENT", "an m4a download has no height")
        if not any("mp4a" in r.codecs for r in h264):
            raise ApiError(400, "INVALID_ARGUMENT", f"video {video.id} has no sound")
        return video_pb2.Download(kind=DOWNLOAD_KINDS["m4a"])
    heights = sorted({r.height for r in h264})
    if not heights:
        raise ApiError(409, "NOT_READY", f"video {video.id} has no H.264 rendition")
    height = body.height if body.height is not None else heights[-1]
    if height not in heights:
        raise ApiError(400, "INVALID_ARGUMENT",
                       f"no {height}p rendition; one of {', '.join(str(h) for h in heights)}")
    return video_pb2.Download(kind=DOWNLOAD_KINDS["mp4"], height=height)


async def publish_request(links, request: events_pb2.TranscodeRequest) -> None:
    def send():
        links.views_producer().publish(TOPIC_TRANSCODE_REQUESTS, request.SerializeToString(),
                                       key=request.video_id.encode())

    try:
        await asyncio.to_thread(send)
    except Exception as exc:  # noqa: BLE001 - the topic backend is away: the client may retry
        log.warning("publishing a downloads request for %s failed: %s", request.video_id, exc)
        raise ApiError(503, "UNAVAILABLE", "the event bus is unavailable; retry later") from None


@router.post("/v1/videos/{video_id}/downloads", status_code=202, responses={
    200: {"description": "The file exists already: it, with its URL."},
    202: {"description": "The file is being made; it appears in the watch payload's `downloads` (and "
                         "GET .../downloads) within seconds.",
          "headers": {"Location": {"schema": {"type": "string"}, "required": True}}},
    **error_responses(400, 401, 403, 404, 409, 422, *SERVICE_ERRORS)})
async def create_download(video_id: str, body: DownloadBody, request: Request, metadata: MetadataStub,
                          links: Links, principal: RequiredPrincipal):
    """Asks for a download file of the video (its owner or an admin), made from its stored
    renditions without re-encoding."""
    video = await load_video(metadata, video_id)
    require_owner(video, principal)
    require_ready(video)
    asked = asked_download(video, body)
    existing = next((d for d in video.downloads if (d.kind, d.height) == (asked.kind, asked.height)), None)
    if existing is not None:
        grant = request.app.state.signer.media_grant(video.id, media_account(video, principal))
        return JSONResponse({"status": "READY", **download_json(request, existing, grant)}, status_code=200)
    transcode = events_pb2.TranscodeRequest(video_id=video.id, make_downloads=[asked])
    transcode.request_time.GetCurrentTime()
    await publish_request(links, transcode)
    location = str(request.url_for("list_downloads", video_id=video.id))
    return JSONResponse({"status": "PREPARING", "kind": body.kind, "height": asked.height or None},
                        status_code=202, headers={"Location": location})


@router.get("/v1/videos/{video_id}/downloads", responses=error_responses(403, 404, 409, 422, *SERVICE_ERRORS))
async def list_downloads(video_id: str, request: Request, cfg: Cfg, principal: CurrentPrincipal):
    """The video's download files with signed URLs (403 when its owner disabled downloads)."""
    video = require_visible((await cached_video(request, video_id)).video(), principal)
    require_ready(video)
    if not may_download(video, principal, cfg):
        raise ApiError(403, "DOWNLOADS_DISABLED", f"the owner of video {video.id} has disabled downloads")
    return {"downloads": downloads_json(request, video, media_account(video, principal), True),
            "downloads_enabled": downloads_enabled(video, cfg)}


@route_per_method(router, "/dl/t/{token}/{key:path}", ["GET", "HEAD"], name="signed_download",
                  openapi_extra=RANGE_HEADER,
                  responses={**media_responses("video/mp4", "audio/mp4"), **error_responses(403, 404, 416, 422)})
async def signed_download(token: str, key: str, request: Request, cfg: Cfg, objects: Objects, signer: Signer):
    """A download file, as an attachment: 403 unless the URL was signed for this file (and a
    private video's account) and the video's downloads are open to the caller now."""
    principal = await request.app.state.auth.authenticate(request)
    try:
        grant = signer.check_download(token, key, account=principal.account_id if principal else None)
    except TokenRefused as refused:
        raise ApiError(403, "SIGNATURE_INVALID", refused.message, extra={"reason": refused.reason}) from None
    try:
        video = require_visible((await cached_video(request, grant.video_id)).video(), principal)
    except ApiError as err:
        if err.status == 404:  # deleted, or private now: the URL no longer works
            raise ApiError(403, "SIGNATURE_INVALID", "the video is no longer available") from None
        raise
    if not may_download(video, principal, cfg):
        raise ApiError(403, "DOWNLOADS_DISABLED", f"the owner of video {video.id} has disabled downloads")
    response = serve_object(objects, MEDIA_BUCKET, key, request, grant)
    response.headers["Content-Disposition"] = f'attachment; filename="{attachment_name(video.id, key)}"'
    return response
