"""Channels: make one (`POST /v1/channels`, owned by the caller; a first upload into a new
channel id makes it too), read one, and its page, which lists its public READY videos only
(unlisted and private ones are never listed, as on PeerTube)."""
from __future__ import annotations

import urllib.parse

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail_common.ports import ID_PATTERN, is_valid_id
from longtail_common.proto_enums import THUMBNAIL_KIND
from gateway.api_docs import html_responses
from gateway.dependencies import MetadataStub, Objects, PageViewer, Pages, RequiredPrincipal
from gateway.errors import SERVICE_ERRORS, ApiError, error_responses, grpc_call
from gateway.html_pages import channel_body, message_body
from gateway.media_links import media_url
from gateway.validation import require_page_token

CHANNEL_PAGE_SIZE = 24
MAX_CHANNEL_NAME = 100

router = APIRouter()


class CreateChannelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(default="", max_length=MAX_CHANNEL_NAME)


def channel_json(channel: video_pb2.Channel) -> dict:
    return {"id": channel.id, "name": channel.name or channel.id, "page_url": f"/channel/{channel.id}"}


@router.post("/v1/channels", status_code=201, responses={
    201: {"description": "The channel, yours.", "headers": {"Location": {"schema": {"type": "string"}}}},
    **error_responses(400, 401, 403, 409, 422, *SERVICE_ERRORS)})
async def create_channel(body: CreateChannelBody, metadata: MetadataStub, principal: RequiredPrincipal):
    """A new channel owned by the caller; 409 if the id is taken (by anyone)."""
    channel = video_pb2.Channel(id=body.id, name=body.name.strip(), owner_account_id=principal.account_id)
    created = await grpc_call(metadata.CreateChannel(mpb.CreateChannelRequest(channel=channel), timeout=15))
    return JSONResponse(channel_json(created), status_code=201, headers={"Location": f"/v1/channels/{created.id}"})


async def load_channel(metadata, channel_id: str) -> video_pb2.Channel:
    if not is_valid_id(channel_id):
        raise ApiError(404, "NOT_FOUND", "no such channel")
    return await grpc_call(metadata.GetChannel(mpb.GetChannelRequest(id=channel_id), timeout=15))


@router.get("/v1/channels/{channel_id}", responses=error_responses(404, *SERVICE_ERRORS))
async def get_channel(channel_id: str, metadata: MetadataStub):
    """A channel's id and name (its videos: `GET /v1/videos?channel_id=`)."""
    return channel_json(await load_channel(metadata, channel_id))


def poster_of(request: Request, objects, video: video_pb2.Video) -> str | None:
    poster = next((t for t in video.thumbnails if THUMBNAIL_KIND.text(t) == "poster"), None)
    return media_url(request, objects, poster.object_key) if poster is not None else None


@router.get("/channel/{channel_id}", response_class=HTMLResponse, responses=html_responses(400, 404, 429, 503, 504))
async def channel_page(channel_id: str, request: Request, pages: Pages, viewer: PageViewer, metadata: MetadataStub,
                       objects: Objects, page_token: str = ""):
    """The channel's public READY videos, newest first."""
    try:
        require_page_token(page_token)
        channel = await load_channel(metadata, channel_id)
        listed = await grpc_call(metadata.ListVideos(mpb.ListVideosRequest(
            channel_id=channel.id, page_size=CHANNEL_PAGE_SIZE, page_token=page_token,
            status=video_pb2.VIDEO_STATUS_READY, include_non_public=False), timeout=15))
    except ApiError as err:
        heading = "Channel not found" if err.status == 404 else "Something went wrong"
        return pages.page(heading, message_body(heading, err.message), status=err.status, viewer=viewer)
    # include_non_public=False lists public videos only; checked here too, as the page promises it.
    videos = [(v, poster_of(request, objects, v)) for v in listed.videos
              if v.privacy in (video_pb2.PRIVACY_PUBLIC, video_pb2.PRIVACY_UNSPECIFIED)]
    more = (f"/channel/{channel.id}?{urllib.parse.urlencode({'page_token': listed.next_page_token})}"
            if listed.next_page_token else "")
    return pages.page(channel.name or channel.id, channel_body(channel, videos, more), viewer=viewer)
