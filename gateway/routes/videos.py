"""Video resources: create one (with its upload; signed-in accounts, in their own
channels), read one, list a channel's, edit one (AIP-134 update mask, AIP-154 etag) or
delete it (AIP-135), the watch payload a player starts from (signed stream URLs and a
playback id for its beacons) and its stats (views, counted by placement_svc).

Privacy and ownership (gateway.video_access): a private video is its owner's and the admins'
only (404 to anyone else); listings show public videos unless the channel's owner asks for all.
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import time
import uuid

from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf import field_mask_pb2
from pydantic import BaseModel, ConfigDict, Field

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail.placement.v1 import placement_service_pb2 as ppb
from longtail.upload.v1 import upload_service_pb2 as upb
from longtail.upload.v1 import upload_service_pb2_grpc as upb_grpc
from longtail_common.config import Config
from longtail_common.mesh_identity import acting_as
from longtail_common.ports import ID_PATTERN, ObjectStore, is_valid_id
from longtail_common.proto_enums import CONTAINER_FORMAT, STREAM_PROTOCOL
from gateway.api_docs import CREATED_VIDEO_LINKS, UPLOAD_LENGTH_HEADER
from gateway.auth.principal import GATEWAY, Principal, sign_in_required
from gateway.dependencies import (
    Cfg,
    CurrentPrincipal,
    Links,
    MetadataStub,
    Objects,
    PlacementStub,
    RequiredPrincipal,
    UploadStub,
)
from gateway.audio_track_json import audio_tracks_json
from gateway.downloads import downloads_json, may_download
from gateway.errors import SERVICE_ERRORS, ApiError, error_responses, grpc_call
from gateway import media_links
from gateway.media_links import edge_url, media_grant, media_url, public_url_for
from gateway.quotas import check_creation
from gateway.playback import audio_codec_of, choose_stream, client_platform, streaming_protocol
from gateway.signing import MediaGrant, Playback
from gateway.validation import require_page_token, require_video_id, upload_length, viewer_region
from gateway.video_access import (
    PRIVACY_VALUES,
    media_account,
    owns_channel,
    require_owner,
    require_visible,
)
from gateway.video_cache import CachedVideo
from gateway.video_changes import start_delete
from gateway.video_json import S, ad_breaks_json, caption_json, status_name, video_json

TUS_VERSION = "1.0.0"
MAX_TITLE = 200
MAX_DESCRIPTION = 5000

router = APIRouter()


class CreateVideoBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    channel_id: str = Field(pattern=ID_PATTERN)
    language: str = Field(default="", max_length=35)
    category: str = Field(default="", max_length=64)
    # Total size of the file to come, if known now (tus Upload-Length may say it instead).
    size_bytes: int | None = Field(default=None, ge=0)
    privacy: Literal["public", "unlisted", "private"] = "public"


class EditVideoBody(BaseModel):
    """PATCH body: the fields to change (those named by `update_mask`, or else those given)
    and optionally the `etag` the video was read at (or an `If-Match` header)."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, min_length=1, max_length=MAX_TITLE)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    privacy: Literal["public", "unlisted", "private"] | None = None
    # Whether viewers may download it (gateway/downloads.py); its owner and admins always may.
    downloads_enabled: bool | None = None
    etag: str | None = Field(default=None, max_length=64)


EDITABLE_FIELDS = ("title", "description", "privacy", "downloads_enabled")
# The record's field each editable field writes, where the names differ.
RECORD_FIELDS = {"downloads_enabled": "download_policy"}
DOWNLOAD_POLICIES = {True: video_pb2.DOWNLOAD_POLICY_ALLOWED, False: video_pb2.DOWNLOAD_POLICY_DISABLED}


def new_video_id() -> str:
    # 11 url-safe characters, like the ids viewers already know from other platforms.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes)[:11].decode().replace("-", "a").replace("_", "b")


async def create_video_with_upload(body: CreateVideoBody, request: Request, cfg: Config,
                                   metadata: mpb_grpc.MetadataServiceStub,
                                   upload: upb_grpc.UploadServiceStub, principal: Principal) -> JSONResponse:
    """Records the video in the uploader's channel (made, theirs, on its first video), opens
    its upload, and answers where to send the bytes (tus)."""
    length = upload_length(request, cfg, default=body.size_bytes)
    # Before anything is created: a refused upload leaves no video behind.
    await check_creation(metadata, cfg.limits, principal.account_id, principal.admin, length)
    video_id = new_video_id()
    video = video_pb2.Video(
        id=video_id, title=body.title, description=body.description,
        channel=video_pb2.Channel(id=body.channel_id, owner_account_id=principal.account_id),
        language=body.language, category=body.category, privacy=PRIVACY_VALUES[body.privacy],
        size_bytes=length or 0,  # what the account's quota counts for it until the bytes are in
    )
    created = await grpc_call(metadata.CreateVideo(mpb.CreateVideoRequest(video=video), timeout=15))
    if created.channel.owner_account_id != principal.account_id and not principal.admin:
        # metadata_svc refuses this itself; checked here too, so no upload opens for it.
        raise ApiError(403, "PERMISSION_DENIED", f"channel {body.channel_id} belongs to another account")
    create = upb.CreateUploadRequest(video_id=video_id)
    if length is not None:
        create.length = length
    await grpc_call(upload.CreateUpload(create, timeout=15))
    upload_url = public_url_for(request, "tus_upload", video_id=video_id)
    return JSONResponse(
        {"id": created.id, "status": status_name(created.status), "upload_url": upload_url},
        status_code=201,
        headers={"Location": upload_url, "Tus-Resumable": TUS_VERSION},
    )


async def load_video(metadata: mpb_grpc.MetadataServiceStub, video_id: str) -> video_pb2.Video:
    require_video_id(video_id)
    return await grpc_call(metadata.GetVideo(mpb.GetVideoRequest(id=video_id), timeout=15))


@router.post("/v1/videos", status_code=201, openapi_extra=UPLOAD_LENGTH_HEADER, responses={
    201: {"description": "Video created; send its bytes to `upload_url` (tus).",
          "headers": {"Location": {"schema": {"type": "string"}, "required": True}}, "links": CREATED_VIDEO_LINKS},
    **error_responses(400, 401, 403, 408, 409, 413, 422, *SERVICE_ERRORS)})
async def create_video(body: CreateVideoBody, request: Request, cfg: Cfg, metadata: MetadataStub,
                       upload: UploadStub, principal: RequiredPrincipal):
    return await create_video_with_upload(body, request, cfg, metadata, upload, principal)


# The get and watch routes read the app's shared state (gateway/dependencies.py) directly:
# on a cache hit FastAPI's dependency solving would cost them more than all they do.
async def cached_video(request: Request, video_id: str) -> CachedVideo:
    """The video from this process's cache (gateway/video_cache.py), loaded on a miss."""
    require_video_id(video_id)
    metadata = request.app.state.links.metadata()
    return await request.app.state.videos.get(video_id, lambda: load_for_cache(metadata, video_id))


async def load_for_cache(metadata: mpb_grpc.MetadataServiceStub, video_id: str) -> video_pb2.Video:
    """The video as it is, read as the gateway itself: one copy serves every viewer, and the
    privacy check is made per request (require_visible). Read as the requester, an anonymous
    miss would cache a private video's 404 for its owner too."""
    with acting_as(GATEWAY):
        return await load_video(metadata, video_id)


def origin_key(request: Request) -> tuple:
    """What the URLs a route renders depend on besides the video: where the client reached us
    (media_links.public_base; not the Host header, so no client adds renderings at will)."""
    return (media_links.public_base(request),)


@router.get("/v1/videos/{video_id}", responses=error_responses(404, 422, *SERVICE_ERRORS))
async def get_video(video_id: str, request: Request, principal: CurrentPrincipal):
    entry = await cached_video(request, video_id)
    video = require_visible(entry.video(), principal)
    return Response(video_answer(request, entry, video, media_account(video, principal)),
                    media_type="application/json")


@router.get("/v1/videos/{video_id}/stats", responses=error_responses(404, 422, *SERVICE_ERRORS))
async def video_stats(video_id: str, request: Request, principal: CurrentPrincipal, placement: PlacementStub):
    """How many times the video was watched (playbacks started, every region), for those who
    may see it. Counted from the view beacons as they arrive: a view shows within seconds."""
    entry = await cached_video(request, video_id)
    video = require_visible(entry.video(), principal)
    with acting_as(GATEWAY):  # counts are asked as the gateway, for a video checked visible above
        counted = await grpc_call(placement.BatchGetViewCounts(
            ppb.BatchGetViewCountsRequest(video_ids=[video.id]), timeout=10))
    return {"video_id": video.id, "views": counted.views.get(video.id, 0)}


def video_answer(request: Request, entry: CachedVideo, video: video_pb2.Video, account: str | None) -> bytes:
    """The get call's JSON bytes. Its thumbnail URLs are signed for the current window (and a
    private video's viewer): rendered once per grant and origin."""
    key = ("get", media_grant(request, video.id, account), origin_key(request))
    return entry.rendered(key, lambda: orjson.dumps(video_json(request, request.app.state.objects, video, account)))


@router.get("/v1/videos", responses=error_responses(400, 401, 403, 422, *SERVICE_ERRORS))
async def list_videos(request: Request, metadata: MetadataStub, objects: Objects, principal: CurrentPrincipal,
                      channel_id: str, page_token: str = "", page_size: int = 20, include_non_public: bool = False):
    """A channel's READY videos, newest first: public ones, or all of them for its owner
    (or an admin) with `include_non_public=true`."""
    if not is_valid_id(channel_id):
        raise ApiError(400, "INVALID_ARGUMENT", "invalid channel_id")
    if not 1 <= page_size <= 100:
        raise ApiError(400, "INVALID_ARGUMENT", "page_size must be between 1 and 100")
    require_page_token(page_token)
    if include_non_public:
        await require_channel_owner(metadata, channel_id, principal)
    resp = await grpc_call(
        metadata.ListVideos(
            mpb.ListVideosRequest(channel_id=channel_id, page_size=page_size, page_token=page_token,
                                  status=S.VIDEO_STATUS_READY, include_non_public=include_non_public),
            timeout=15,
        )
    )
    return {"videos": [video_json(request, objects, v, media_account(v, principal)) for v in resp.videos],
            "next_page_token": resp.next_page_token}


async def require_channel_owner(metadata: mpb_grpc.MetadataServiceStub, channel_id: str, principal) -> None:
    if principal is None:
        raise sign_in_required()
    channel = await grpc_call(metadata.GetChannel(mpb.GetChannelRequest(id=channel_id), timeout=15))
    if not owns_channel(principal, channel):
        raise ApiError(403, "PERMISSION_DENIED", f"channel {channel_id} belongs to another account")


def edit_mask(body: EditVideoBody, update_mask: str) -> list[str]:
    """The fields to write: those `update_mask` names (comma-separated, AIP-134), or, without
    one, those the body sets; "*" names every editable field."""
    if not update_mask:
        paths = [f for f in EDITABLE_FIELDS if getattr(body, f) is not None]
    elif update_mask.strip() == "*":
        paths = list(EDITABLE_FIELDS)
    else:
        paths = [p.strip() for p in update_mask.split(",") if p.strip()]
    unknown = [p for p in paths if p not in EDITABLE_FIELDS]
    if unknown:
        raise ApiError(400, "INVALID_ARGUMENT", f"not editable: {', '.join(unknown)} (one of {', '.join(EDITABLE_FIELDS)})")
    if not paths:
        raise ApiError(400, "INVALID_ARGUMENT", "nothing to change: give title, description, privacy or "
                       "downloads_enabled")
    missing = [p for p in paths if p != "description" and getattr(body, p) is None]
    if missing:
        raise ApiError(400, "INVALID_ARGUMENT", f"update_mask names {', '.join(missing)} but the body has no value")
    return paths


def require_fresh(video: video_pb2.Video, etag: str | None) -> None:
    """AIP-154: an etag the video no longer has is a conflict (409): read it again."""
    if etag and etag.strip('"') != video.etag:
        raise ApiError(409, "ABORTED", f"video {video.id} changed since it was read (etag mismatch)",
                       extra={"etag": video.etag})


@router.patch("/v1/videos/{video_id}", responses=error_responses(400, 401, 403, 404, 409, 422, *SERVICE_ERRORS))
async def edit_video(video_id: str, body: EditVideoBody, request: Request, metadata: MetadataStub, objects: Objects,
                     principal: RequiredPrincipal, update_mask: str = "",
                     if_match: Annotated[str | None, Header(max_length=66)] = None):
    """Changes title, description, privacy or downloads_enabled (its owner or an admin);
    answers the video with its new etag. A stale etag (body `etag` or `If-Match`) answers 409."""
    video = await load_video(metadata, video_id)
    require_owner(video, principal)
    paths = edit_mask(body, update_mask)
    updated = await update_video(request, metadata, video, body, paths, body.etag or if_match)
    return video_json(request, objects, updated, media_account(updated, principal))


async def update_video(request: Request, metadata: mpb_grpc.MetadataServiceStub, video: video_pb2.Video,
                       body: EditVideoBody, paths: list[str], etag: str | None) -> video_pb2.Video:
    """Writes `paths` of `body` into the video (its owner's call, checked before); 409 when
    `etag` is stale. Shared by the API and the "My videos" page."""
    require_fresh(video, etag)
    patch = video_pb2.Video(id=video.id, etag=video.etag, title=body.title or "", description=body.description or "",
                            privacy=PRIVACY_VALUES[body.privacy] if body.privacy else 0,
                            download_policy=DOWNLOAD_POLICIES.get(body.downloads_enabled, 0))
    record_paths = [RECORD_FIELDS.get(p, p) for p in paths]
    updated = await grpc_call(metadata.UpdateVideo(
        mpb.UpdateVideoRequest(video=patch, update_mask=field_mask_pb2.FieldMask(paths=record_paths)), timeout=15))
    # metadata_svc announces the change (video.changed) to search and every gateway; this
    # process forgets its copy now, so the editor reads the edit back at once.
    request.app.state.videos.invalidate(video.id)
    return updated


@router.delete("/v1/videos/{video_id}", status_code=204, response_class=Response, responses={
    202: {"description": "Deleting: the video's record could not be removed at once; the deleter finishes."},
    **error_responses(401, 403, 404, 409, 422, *SERVICE_ERRORS)})
async def delete_video(video_id: str, request: Request, metadata: MetadataStub, links: Links,
                       principal: RequiredPrincipal, etag: str = "",
                       if_match: Annotated[str | None, Header(max_length=66)] = None):
    """Deletes the video and everything of it (its owner or an admin): 204 once it is gone
    from every answer; its files, edge copies, search entry and view counts follow within
    seconds. A stale etag (`etag` or `If-Match`) answers 409."""
    video = await load_video(metadata, video_id)
    require_owner(video, principal)
    gone = await remove_video(request, links, metadata, video, etag or if_match)
    return Response(status_code=204 if gone else 202)


async def remove_video(request: Request, links, metadata: mpb_grpc.MetadataServiceStub, video: video_pb2.Video,
                       etag: str | None) -> bool:
    """Deletes the video (its owner's call, checked before); 409 when `etag` is stale. True
    when its record is gone at once (else the deleter finishes). Shared by the API and the page."""
    require_fresh(video, etag)
    gone = await start_delete(links, metadata, video)
    request.app.state.videos.invalidate(video.id)  # the others hear video.changed
    return gone


def playback_region(given: str, request: Request, cfg: Config) -> str:
    """The viewer's region (viewer_region), which must be one placement decides for."""
    region = viewer_region(given, request, cfg)
    if region not in cfg.platform.regions:
        raise ApiError(400, "INVALID_ARGUMENT", f"unknown region {region!r}; one of {', '.join(cfg.platform.regions)}")
    return region


def expiry_json(expires: int | None, now: float) -> dict:
    """When signed URLs or a playback id stop working; players refresh the payload before."""
    if expires is None:
        return {"expires_at": None, "expires_in_s": None}
    return {"expires_at": iso_time(expires), "expires_in_s": max(0, int(expires - now))}


@functools.lru_cache(maxsize=256)
def iso_time(unix_s: int) -> str:
    """"2026-12-07T04:00:00Z": a few distinct expiries per window, each formatted once."""
    return dt.datetime.fromtimestamp(unix_s, dt.timezone.utc).isoformat().replace("+00:00", "Z")


class WatchTemplate:
    """A watch answer's JSON bytes up to its per-call tail (the stream URLs' countdown and
    the playback), serialized once per video version, grant, origin, region, client and
    protocol; answer() appends the tail. The bytes equal orjson.dumps of the whole dict."""

    __slots__ = ("head", "expires")

    def __init__(self, body: dict, expires: int | None):
        rest = {k: v for k, v in body.items() if k != "stream"}
        stream = {k: v for k, v in body["stream"].items() if k != "expires_in_s"}
        stream["expires_at"] = iso_time(expires) if expires is not None else None
        # "stream" is the body's last key and "expires_in_s" the stream's (watch_body).
        self.head = orjson.dumps(rest)[:-1] + b',"stream":' + orjson.dumps(stream)[:-1] + b',"expires_in_s":'
        self.expires = expires

    def answer(self, playback_id: str, playback: Playback, now: float) -> bytes:
        left = b"null" if self.expires is None else str(max(0, int(self.expires - now))).encode()
        tail = orjson.dumps({"id": playback_id, "region": playback.region, **expiry_json(playback.expires, now)})
        return b"".join((self.head, left, b'},"playback":', tail, b"}"))


def watch_template(request: Request, entry: CachedVideo, video: video_pb2.Video, region: str, client: str,
                   protocol: str, account: str | None, principal=None) -> WatchTemplate:
    """The video's watch answer for this request but for its per-call part, made once per
    grant (window; a private video's account), origin, region, client, protocol and whether
    the viewer (`principal`, None: anonymous) may download it."""
    grant = media_grant(request, video.id, account)
    downloads = may_download(video, principal, request.app.state.config)
    key = ("watch", grant, origin_key(request), region, client, protocol, downloads)
    return entry.rendered(key, lambda: WatchTemplate(
        {**watch_body(request, request.app.state.objects, video, region, client, protocol, account, grant),
         "downloads": downloads_json(request, video, account, downloads), "audio_tracks": audio_tracks_json(video)},
        grant.expires if grant else None))


@router.get("/v1/videos/{video_id}/watch", responses=error_responses(400, 403, 404, 409, 422, *SERVICE_ERRORS))
async def watch(video_id: str, request: Request, principal: CurrentPrincipal, region: str = "", client: str = "",
                protocol: str = ""):
    state = request.app.state
    entry = await cached_video(request, video_id)
    video = require_watchable(entry.video(), principal)
    region = playback_region(region, request, state.config)
    client = client_platform(client, request.headers.get("user-agent", ""))
    protocol = streaming_protocol(protocol)
    template = watch_template(request, entry, video, region, client, protocol, media_account(video, principal),
                              principal)
    now = time.time()
    # The on-day moment of placement: this may be the pair's first request today.
    state.fills.maybe_announce(video.id, region, next((p for p in video.placements if p.region == region), None))
    # View beacons name this playback: they count for this video and region, until it expires.
    playback_id, playback = state.signer.issue_playback(video.id, region, now)
    return Response(template.answer(playback_id, playback, now), media_type="application/json")


def require_watchable(video: video_pb2.Video, principal) -> video_pb2.Video:
    """The video if this principal may watch it now: visible to them (else 404) and READY (else 409)."""
    video = require_visible(video, principal)
    if video.status != S.VIDEO_STATUS_READY:
        raise ApiError(409, "NOT_READY", f"video {video.id} is {status_name(video.status)}",
                       extra={"status": status_name(video.status)})
    return video


def watch_body(request: Request, objects: ObjectStore, video: video_pb2.Video, region: str, client: str,
               protocol: str, account: str | None, grant: MediaGrant | None) -> dict:
    """The watch payload without its per-call part (the expiry countdown, the playback)."""
    choice = choose_stream(video, client, protocol)
    decision = next((p for p in video.placements if p.region == region), None)
    on_cdn = decision is not None and decision.served_from == video_pb2.SERVED_FROM_CDN

    def stream_url(key: str) -> str:
        return edge_url(request, region, key, account) if on_cdn else media_url(request, objects, key, account)

    body = video_json(request, objects, video, account)
    body.pop("status", None)
    body["ad_breaks"] = ad_breaks_json(video)
    body["renditions"] = [
        {"codec": r.codec, "width": r.width, "height": r.height, "bitrate_bps": r.bitrate_bps,
         "container": CONTAINER_FORMAT.text(r), "frame_rate": r.frame_rate, "codecs": r.codecs, "vmaf": r.vmaf}
        for r in video.renditions if r.codec == choice.codec
    ]
    body["codecs"] = choice.encoded  # every family the video exists in; stream.codec is the one handed out
    # Also in the HLS master and DASH MPD as subtitle tracks (gateway/caption_tracks.py).
    body["captions"] = [{**caption_json(request, objects, c, account), "url": stream_url(c.object_key)}
                        for c in video.captions]
    # The handed-out manifests' audio (AAC with H.264, Opus with VP9/AV1); None: no sound.
    audio_codec = next((a for a in (audio_codec_of(r["codecs"]) for r in body["renditions"]) if a), None)
    body["stream"] = {
        "url": stream_url(choice.manifest.object_key),
        "protocol": STREAM_PROTOCOL.text(choice.manifest),
        "codec": choice.codec,
        "audio_codec": audio_codec,
        "manifests": {p: stream_url(m.object_key) for p, m in sorted(choice.manifests.items())},
        "served_from": "cdn" if on_cdn else "origin",
        "region": region,
        **expiry_json(grant.expires if grant else None, time.time()),
    }
    return body
