"""Stream bytes: origin objects (with HLS playlists' segments presigned when the store
presigns) and each region's edge copy (the embedded CDN stand-in), with HTTP Range support.

Every route refuses (403) a request whose path token is missing, tampered with, expired,
for another video, or (a private video's) issued to another account than the request is
signed in as, before it looks at the object: the same check a CDN's edge makes on
the same token (README, "Signed playback"). With playback.signed off, unsigned paths are
served as before (the signing benchmark's baseline).
"""
from __future__ import annotations

import asyncio
import logging
import re

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from longtail.metadata.v1 import video_pb2
from longtail_common.config import Config
from longtail_common.ports import (
    EDGE_BUCKET_PREFIX,
    MEDIA_BUCKET,
    InvalidKeyError,
    NotFoundError,
    ObjectStore,
    is_private_media_key,
    is_valid_region,
    validate_object_key,
)
from gateway.audio_tracks import is_audio_track_key, with_audio_tracks
from gateway.api_docs import MEDIA_TYPES, RANGE_HEADER, media_responses, route_per_method
from gateway.caption_tracks import is_caption_key, with_captions
from gateway.manifests_extra import manifest_video
from gateway.dependencies import Cfg, Objects, Signer
from gateway.errors import ApiError, error_responses
from gateway.media_links import presign_seconds, signed_playlist
from gateway.routes.videos import cached_video
from gateway.signing import MediaGrant, PlaybackSigner, TokenRefused

log = logging.getLogger("gateway.media")
router = APIRouter()
# A manifest with tracks added after the transcode (captions, alternate audio) is made
# from the stored one per video version: caches keep it briefly, so a change reaches
# players within a minute.
EXTENDED_MANIFEST_MAX_AGE_S = 60
TRACKS_LOOKUP_TIMEOUT_S = 2.0
MANIFEST_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".mpd": "application/dash+xml"}


def byte_range(range_header: str, size: int) -> tuple[int, int]:
    """(first, last) byte of a `Range: bytes=a-b` header (suffix form too); 416 if unsatisfiable."""
    m = re.fullmatch(r"bytes=([0-9]{0,19})-([0-9]{0,19})", range_header.strip())  # ASCII digits only
    if not m or (not m.group(1) and not m.group(2)):
        raise ApiError(416, "RANGE_NOT_SATISFIABLE", "bad Range header", headers={"Content-Range": f"bytes */{size}"})
    if m.group(1):
        start = int(m.group(1))
        end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    else:
        start, end = max(0, size - int(m.group(2))), size - 1
    if start > end or start >= size:
        raise ApiError(416, "RANGE_NOT_SATISFIABLE", "range outside the object",
                       headers={"Content-Range": f"bytes */{size}"})
    return start, end


def serve_object(objects: ObjectStore, bucket: str, key: str, request: Request, grant: MediaGrant | None) -> Response:
    try:
        validate_object_key(key)
        info = objects.stat(bucket, key)
    except InvalidKeyError:
        raise ApiError(404, "NOT_FOUND", "no such object") from None
    if info is None or is_private_media_key(key):
        raise ApiError(404, "NOT_FOUND", "no such object")
    # A private video's bytes (a grant naming an account) stay out of shared caches.
    cache = "private, max-age=3600" if grant is not None and grant.account else "public, max-age=3600"
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{info.etag}"', "Cache-Control": cache,
               "Access-Control-Allow-Origin": "*"}
    range_header = request.headers.get("range")
    start, end, status = 0, info.size - 1, 200
    if range_header:
        start, end = byte_range(range_header, info.size)
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    headers["Content-Length"] = str(end - start + 1)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=info.content_type)
    try:
        stream = objects.open_stream(bucket, key, start, end)
    except NotFoundError:
        raise ApiError(404, "NOT_FOUND", "no such object") from None
    return StreamingResponse(stream, status_code=status, headers=headers, media_type=info.content_type)


async def extended_manifest(request: Request, objects: ObjectStore, bucket: str, key: str,
                            grant: MediaGrant | None) -> Response | None:
    """A master playlist or MPD with what was added to the video after its transcode: its
    captions (gateway/caption_tracks.py) and READY alternate audio tracks
    (gateway/audio_tracks.py); None when `key` is no manifest or nothing is added."""
    video_id = manifest_video(key)
    if video_id is None or request.method != "GET":
        return None
    try:
        # The token was checked: the video's tracks are the grant's. Bounded: with metadata
        # slow or away, players get the stored manifest, not a stall.
        entry = await asyncio.wait_for(cached_video(request, video_id), TRACKS_LOOKUP_TIMEOUT_S)
        video = entry.video()
        audio = any(t.status == video_pb2.AUDIO_TRACK_STATUS_READY for t in video.audio_tracks)
        if not video.captions and not audio:
            return None
        body = entry.rendered(("manifest", bucket, key), lambda: _with_added_tracks(objects, bucket, key, video, audio))
    except (ApiError, NotFoundError, InvalidKeyError):
        return None  # no record or no stored manifest: served (or refused) as stored
    except Exception as exc:  # noqa: BLE001 - metadata unreachable: the stored manifest still plays
        log.warning("added tracks of video %s unavailable (%s); manifest served as stored", video_id, exc)
        return None
    cache = "private" if grant is not None and grant.account else "public"
    return Response(body, media_type=MANIFEST_TYPES[key[key.rindex("."):]], headers={
        "Cache-Control": f"{cache}, max-age={EXTENDED_MANIFEST_MAX_AGE_S}", "Access-Control-Allow-Origin": "*"})


def _with_added_tracks(objects: ObjectStore, bucket: str, key: str, video, audio: bool) -> bytes:
    """The stored manifest with the audio tracks, then the captions, written in (each
    rewrite takes manifest text and returns it, so they compose)."""
    body = objects.get_bytes(bucket, key)
    if audio:
        body = with_audio_tracks(key, body, video, lambda k: objects.get_bytes(MEDIA_BUCKET, k))
    return with_captions(key, body, video) if video.captions else body


def refuse_unsigned(cfg: Config) -> None:
    if cfg.playback.signed:
        raise ApiError(403, "SIGNATURE_REQUIRED",
                       "media URLs must be signed: take them from GET /v1/videos/{id}/watch")


async def check_token(signer: PlaybackSigner, token: str, key: str, request: Request) -> MediaGrant:
    """The grant of a signed media URL; 403 unless it covers this key now. A private video's
    grant names an account: only a request signed in as it passes (the others' is resolved
    only then, so public videos' segments cost no sign-in lookup)."""
    try:
        account = None
        if signer.media_grant_of(token).account is not None:
            principal = await request.app.state.auth.authenticate(request)
            account = principal.account_id if principal else None
        return signer.check_media(token, key, account=account)
    except TokenRefused as refused:
        raise ApiError(403, "SIGNATURE_INVALID", refused.message, extra={"reason": refused.reason}) from None


def origin_response(objects: ObjectStore, signer: PlaybackSigner, key: str, request: Request,
                    grant: MediaGrant | None) -> Response:
    if key.endswith(".m3u8") and request.method == "GET":
        # On S3 the segments inside outlive the grant by one ttl: a player that read this
        # playlist just before refreshing its grant still fetches them (VOD playlists are
        # read once).
        signed = signed_playlist(objects, key, presign_seconds(grant, extra_s=signer.ttl_s))
        if signed is not None:
            return Response(signed, media_type="application/vnd.apple.mpegurl",
                            headers={"Cache-Control": "private, max-age=300", "Access-Control-Allow-Origin": "*"})
    return serve_object(objects, MEDIA_BUCKET, key, request, grant)


@route_per_method(router, "/origin/t/{token}/{key:path}", ["GET", "HEAD"], name="signed_origin_object",
                  openapi_extra=RANGE_HEADER,
                  responses={**media_responses(*MEDIA_TYPES), **error_responses(403, 404, 416, 422)})
async def signed_origin_object(token: str, key: str, request: Request, objects: Objects, signer: Signer):
    grant = await check_token(signer, token, key, request)
    extended = await extended_manifest(request, objects, MEDIA_BUCKET, key, grant)
    return extended or origin_response(objects, signer, key, request, grant)


@route_per_method(router, "/origin/{key:path}", ["GET", "HEAD"], name="origin_object",
                  openapi_extra=RANGE_HEADER,
                  responses={**media_responses(*MEDIA_TYPES), **error_responses(403, 404, 416, 422)})
async def origin_object(key: str, request: Request, cfg: Cfg, objects: Objects, signer: Signer):
    refuse_unsigned(cfg)
    extended = await extended_manifest(request, objects, MEDIA_BUCKET, key, None)
    return extended or origin_response(objects, signer, key, request, None)


def edge_bucket(region: str) -> str:
    if not is_valid_region(region):
        raise ApiError(404, "NOT_FOUND", "no such edge")
    return f"{EDGE_BUCKET_PREFIX}{region.lower()}"


def edge_source(objects: ObjectStore, bucket: str, key: str) -> str:
    """Where the edge stand-in reads `key` from: its own bucket, or for a caption or audio
    track added after the video was pushed there, the origin's (a CDN fetches a miss from origin)."""
    if (is_caption_key(key) or is_audio_track_key(key)) and objects.stat(bucket, key) is None:
        return MEDIA_BUCKET
    return bucket


@route_per_method(router, "/edge/{region}/t/{token}/{key:path}", ["GET", "HEAD"], name="signed_edge_object",
                  openapi_extra=RANGE_HEADER,
                  responses={**media_responses(*MEDIA_TYPES), **error_responses(403, 404, 416, 422)})
async def signed_edge_object(region: str, token: str, key: str, request: Request, objects: Objects, signer: Signer):
    bucket = edge_bucket(region)
    grant = await check_token(signer, token, key, request)
    extended = await extended_manifest(request, objects, bucket, key, grant)
    return extended or serve_object(objects, edge_source(objects, bucket, key), key, request, grant)


@route_per_method(router, "/edge/{region}/{key:path}", ["GET", "HEAD"], name="edge_object",
                  openapi_extra=RANGE_HEADER,
                  responses={**media_responses(*MEDIA_TYPES), **error_responses(403, 404, 416, 422)})
async def edge_object(region: str, key: str, request: Request, cfg: Cfg, objects: Objects):
    bucket = edge_bucket(region)
    refuse_unsigned(cfg)
    extended = await extended_manifest(request, objects, bucket, key, None)
    return extended or serve_object(objects, edge_source(objects, bucket, key), key, request, None)
