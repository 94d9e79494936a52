"""A video's images beyond what its transcode made: a thumbnail of any moment, the poster
its owner picks (a moment, or an uploaded JPEG/PNG), and the cards' hover preview.

Thumbnails at a time are cut from the stored renditions (gateway/frames.py) once per
(time rounded to `thumbnails.time_step_s`, width) and kept in the media bucket under
videos/<id>/thumbs/at/: a second request for the same one is read back, never cut again
(requests racing in one process share one cut). A new poster is stored under a new key
and replaces the video's poster thumbnail in its record (metadata_svc then announces it on
`video.changed`), so caches holding the old one are never served a stale image under its URL.
"""
from __future__ import annotations

import asyncio
import io
import re
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from google.protobuf import field_mask_pb2
from PIL import Image, UnidentifiedImageError

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail_common.config import Config
from longtail_common.mesh_identity import acting_as
from longtail_common.ports import MEDIA_BUCKET, NotFoundError
from longtail_common.proto_enums import THUMBNAIL_KIND
from gateway.api_docs import route_per_method
from gateway.auth.principal import GATEWAY
from gateway.dependencies import Cfg, CurrentPrincipal, MetadataStub, Objects, RequiredPrincipal
from gateway.errors import SERVICE_ERRORS, ApiError, error_responses, grpc_call
from gateway.frames import even
from gateway.media_links import media_url
from gateway.routes.downloads import require_ready
from gateway.routes.videos import cached_video, load_video
from gateway.video_access import is_private, media_account, require_owner, require_visible
from gateway.video_json import video_json

router = APIRouter()

# Seconds in ASCII digits (no sign, exponent or leading zero), at most to the millisecond.
TIME = re.compile(r"(0|[1-9][0-9]{0,5})(\.[0-9]{1,3})?")
WIDTH = re.compile(r"[1-9][0-9]{0,3}")
POSTER_MAX_HEIGHT = 720  # as the transcode's own poster
POSTER_TYPES = ("image/jpeg", "image/png")
UPDATE_ROUNDS = 5
JPEG = {200: {"description": "The image.", "content": {"image/jpeg": {"schema": {"type": "string",
                                                                               "format": "binary"}}}}}


def parse_time(raw: str, video: video_pb2.Video) -> float:
    """Seconds into the video, strictly: digits with up to 3 decimals, within its duration."""
    if not TIME.fullmatch(raw):
        raise ApiError(400, "INVALID_ARGUMENT", "time must be seconds into the video, like 12.5")
    at = float(raw)
    if at > video.duration_seconds:
        raise ApiError(400, "INVALID_ARGUMENT", f"time {raw} is past the video's end ({video.duration_seconds:.3f} s)")
    return at


def parse_width(raw: str, cfg: Config) -> int:
    widths = sorted(int(w) for w in cfg.thumbnails.widths)
    if not WIDTH.fullmatch(raw) or int(raw) not in widths:
        raise ApiError(400, "INVALID_ARGUMENT", f"width must be one of {', '.join(str(w) for w in widths)}")
    return int(raw)


def rounded(at: float, video: video_pb2.Video, step: float) -> float:
    """`at` on the cache's grid of `step`, not past the video's end."""
    on_grid = round(at / step) * step
    return on_grid if on_grid <= video.duration_seconds else max(0.0, on_grid - step)


def thumbnail_key(video_id: str, at: float, width: int) -> str:
    return f"videos/{video_id}/thumbs/at/{width}/{int(round(at * 1000))}.jpg"


class ThumbnailCache:
    """Thumbnails at a time, kept in the media bucket; concurrent misses of one key in this
    process share one ffmpeg run."""

    def __init__(self, objects, frames):
        self.objects, self.frames = objects, frames
        self._pending: dict[str, asyncio.Future] = {}

    async def get(self, video: video_pb2.Video, at: float, width: int) -> bytes:
        key = thumbnail_key(video.id, at, width)
        try:
            return await asyncio.to_thread(self.objects.get_bytes, MEDIA_BUCKET, key)
        except NotFoundError:
            pass
        if key in self._pending:
            return await asyncio.shield(self._pending[key])
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            jpeg, _, _ = await self.frames.frame(video, at, width)
            await asyncio.to_thread(self.objects.put_bytes, MEDIA_BUCKET, key, jpeg, "image/jpeg")
            future.set_result(jpeg)
            return jpeg
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: no "never retrieved" warning when nobody waited
            raise
        finally:
            del self._pending[key]


@router.get("/v1/videos/{video_id}/thumbnail.jpg", response_class=Response,
            responses={**JPEG, **error_responses(400, 404, 409, 422, *SERVICE_ERRORS)})
async def thumbnail_at(video_id: str, request: Request, cfg: Cfg, principal: CurrentPrincipal,
                       time: str = "", width: str = "320"):
    """A JPEG of the video at `time` seconds (default: its middle), `width` pixels wide (one
    of `thumbnails.widths`), its height keeping the picture's shape."""
    video = require_visible((await cached_video(request, video_id)).video(), principal)
    require_ready(video)
    pixels = parse_width(width, cfg)
    at = parse_time(time, video) if time else video.duration_seconds / 2
    jpeg = await request.app.state.thumbnails.get(video, rounded(at, video, cfg.thumbnails.time_step_s), pixels)
    # A private video's images stay out of shared caches; the others' are the same for everyone.
    cache = "private, max-age=3600" if is_private(video) else "public, max-age=3600"
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": cache})


def poster_width(video: video_pb2.Video) -> int:
    """The width of a poster cut from the video: its top H.264 rendition's, at most 720 high."""
    top = max((r for r in video.renditions if r.codec == "h264"), key=lambda r: r.width * r.height, default=None)
    if top is None:
        raise ApiError(409, "NOT_READY", f"video {video.id} has no H.264 rendition")
    height = min(POSTER_MAX_HEIGHT, top.height)
    return even(height * top.width / max(1, top.height))


def poster_from_upload(data: bytes, max_side: int) -> tuple[bytes, int, int]:
    """The uploaded image, decoded (a JPEG or PNG, whole, within max_side) and stored as a
    JPEG at most 1280 px a side with no metadata (EXIF positions stay with the uploader)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in ("JPEG", "PNG"):
                raise ApiError(400, "INVALID_ARGUMENT", "the poster must be a JPEG or PNG image")
            width, height = image.size
            if not (16 <= width <= max_side and 16 <= height <= max_side):
                raise ApiError(400, "INVALID_ARGUMENT", f"the poster must be 16 to {max_side} pixels a side")
            image.load()  # decodes every byte: a truncated or corrupt file fails here
            picture = image.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        reason = f"the poster is not a readable JPEG or PNG image: {exc}"[:300]
        raise ApiError(400, "INVALID_ARGUMENT", reason) from None
    picture.thumbnail((1280, 1280))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=85)
    return out.getvalue(), picture.width, picture.height


async def poster_image(request: Request, cfg: Config, video: video_pb2.Video, time: str) -> tuple[bytes, int, int]:
    """The new poster: the frame at `time`, or the image in the body (never both)."""
    body = await request.body()
    if time and body:
        raise ApiError(400, "INVALID_ARGUMENT", "give either ?time= or an image, not both")
    if time:
        return await request.app.state.frames.frame(video, parse_time(time, video), poster_width(video))
    if not body:
        raise ApiError(400, "INVALID_ARGUMENT", "give ?time= (seconds) or a JPEG/PNG image as the body")
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in POSTER_TYPES:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "the poster's Content-Type must be image/jpeg or image/png")
    if len(body) > cfg.thumbnails.max_poster_bytes:
        raise ApiError(413, "PAYLOAD_TOO_LARGE", f"the poster is larger than {cfg.thumbnails.max_poster_bytes} bytes")
    return await asyncio.to_thread(poster_from_upload, body, cfg.thumbnails.max_poster_side)


async def replace_poster(metadata, video: video_pb2.Video, poster: video_pb2.Thumbnail) -> video_pb2.Video:
    """The video with `poster` as its poster thumbnail (compare-and-set, re-read on a race).
    Written by the gateway as itself: an account writes no thumbnails (the owner was checked)."""
    for _round in range(UPDATE_ROUNDS):
        thumbs = [t for t in video.thumbnails if THUMBNAIL_KIND.text(t) != "poster"] + [poster]
        patch = video_pb2.Video(id=video.id, etag=video.etag, thumbnails=thumbs)
        try:
            with acting_as(GATEWAY):
                return await grpc_call(metadata.UpdateVideo(mpb.UpdateVideoRequest(
                    video=patch, update_mask=field_mask_pb2.FieldMask(paths=["thumbnails"])), timeout=15))
        except ApiError as err:
            if err.code != "ABORTED":
                raise
        video = await load_video(metadata, video.id)
    raise ApiError(409, "ABORTED", f"video {video.id} kept changing; retry")


@route_per_method(router, "/v1/videos/{video_id}/poster", ["PUT", "POST"], name="set_poster",
                  responses=error_responses(400, 401, 403, 404, 409, 413, 415, 422, *SERVICE_ERRORS))
async def set_poster(video_id: str, request: Request, cfg: Cfg, metadata: MetadataStub, objects: Objects,
                     principal: RequiredPrincipal, time: str = ""):
    """Sets the video's poster (its owner or an admin): the frame at `?time=` seconds, or a
    JPEG/PNG image sent as the body. Answers the video with its new thumbnails."""
    video = await load_video(metadata, video_id)
    require_owner(video, principal)
    require_ready(video)
    jpeg, width, height = await poster_image(request, cfg, video, time)
    key = f"videos/{video.id}/thumbs/poster-{uuid.uuid4().hex[:12]}.jpg"
    await asyncio.to_thread(objects.put_bytes, MEDIA_BUCKET, key, jpeg, "image/jpeg")
    poster = video_pb2.Thumbnail(**THUMBNAIL_KIND.fields("poster"), object_key=key, width=width, height=height)
    old = [t.object_key for t in video.thumbnails if THUMBNAIL_KIND.text(t) == "poster"]
    try:
        updated = await replace_poster(metadata, video, poster)
    except Exception:
        await asyncio.to_thread(objects.delete, MEDIA_BUCKET, key)
        raise
    for previous in old:
        if "/thumbs/poster-" in previous:  # an earlier chosen poster (the transcode's own is kept)
            await asyncio.to_thread(objects.delete, MEDIA_BUCKET, previous)
    request.app.state.videos.invalidate(video.id)  # the other processes hear video.changed
    return video_json(request, objects, updated, media_account(updated, principal))


@router.get("/v1/videos/{video_id}/preview.webp", response_class=RedirectResponse, status_code=302,
            responses={302: {"description": "To the signed URL of the video's animated preview."},
                       **error_responses(404, 409, 422, *SERVICE_ERRORS)})
async def preview(video_id: str, request: Request, objects: Objects, principal: CurrentPrincipal):
    """The video's short looping preview (animated WebP), as the home page's cards show on hover."""
    video = require_visible((await cached_video(request, video_id)).video(), principal)
    require_ready(video)
    key = next((t.object_key for t in video.thumbnails if THUMBNAIL_KIND.text(t) == "preview"), None)
    if key is None:
        raise ApiError(404, "NOT_FOUND", f"video {video.id} has no preview")
    cache = "private, max-age=600" if is_private(video) else "public, max-age=600"
    return RedirectResponse(media_url(request, objects, key, media_account(video, principal)), status_code=302,
                            headers={"Cache-Control": cache})
