"""The REST gateway: the only thing clients talk to.

It translates JSON/HTTP into calls on the gRPC services, speaks tus 1.0.0 for uploads
(forwarding bytes to upload_svc as a stream), builds the watch payload (codec per client,
CDN or origin URL per the placement decision), and, in the embedded setup, serves the
stream bytes from origin with HTTP Range support.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import re
import uuid
from typing import Any, Literal

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail.upload.v1 import upload_service_pb2 as upb
from longtail.upload.v1 import upload_service_pb2_grpc as upb_grpc
from longtail_common import telemetry
from longtail_common.adapters import make_object_store
from longtail_common.config import Config
from longtail_common.grpc_server import aio_client_channel
from gateway.pages import register_pages
from longtail_common.ports import (
    MEDIA_BUCKET,
    TOPIC_VIEWS,
    InvalidKeyError,
    NotFoundError,
    is_private_media_key,
    validate_object_key,
)

log = logging.getLogger("gateway")

S = video_pb2.VideoStatus
TUS_VERSION = "1.0.0"
MAX_TITLE = 200
MAX_DESCRIPTION = 5000
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"

_GRPC_TO_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra or {}


def status_name(value: int) -> str:
    return S.Name(value).removeprefix("VIDEO_STATUS_")


class CreateVideoBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    channel_id: str = Field(pattern=ID_PATTERN)
    language: str = Field(default="", max_length=35)
    category: str = Field(default="", max_length=64)
    # Total size of the file to come, if known now (tus Upload-Length may say it instead).
    size_bytes: int | None = Field(default=None, ge=0)


class ViewBody(BaseModel):
    """A player beacon: "start" counts a view; every kind adds the bytes watched since the last one."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["start", "progress", "complete"]
    bytes: int = Field(default=0, ge=0, le=1 << 40)
    region: str = Field(default="", pattern=r"^([A-Za-z]{2})?$")


class BatchViewItem(ViewBody):
    video_id: str = Field(pattern=ID_PATTERN)


class ViewBatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[BatchViewItem] = Field(min_length=1, max_length=500)


# Client platform -> codec families it can play, best first. H.264 plays everywhere.
CLIENT_CODECS = {
    "web": ["av1", "vp9", "h264"],
    "chrome": ["av1", "vp9", "h264"],
    "firefox": ["av1", "vp9", "h264"],
    "android": ["av1", "vp9", "h264"],
    "safari": ["h264"],
    "ios": ["h264"],
    "tv": ["h264"],
    "legacy": ["h264"],
}


# Sample entry of an RFC 6381 audio codecs entry -> the audio codec's plain name.
AUDIO_CODEC_NAMES = {"mp4a": "aac", "opus": "opus", "ac-3": "ac3", "ec-3": "eac3", "flac": "flac"}


def audio_codec_of(codecs: str) -> str | None:
    """The audio codec a rendition's codecs string names ("avc1.64001f,mp4a.40.2" -> "aac"),
    None when it names none (a video without sound)."""
    for entry in codecs.split(","):
        name = AUDIO_CODEC_NAMES.get(entry.strip().lower().split(".")[0])
        if name:
            return name
    return None


def client_from_user_agent(user_agent: str) -> str:
    ua = user_agent.lower()
    if "iphone" in ua or "ipad" in ua:
        return "ios"
    if "smart-tv" in ua or "smarttv" in ua or "tizen" in ua or "webos" in ua:
        return "tv"
    if "android" in ua:
        return "android"
    if "firefox" in ua:
        return "firefox"
    if "chrome" in ua or "chromium" in ua:
        return "chrome"
    if "safari" in ua:
        return "safari"
    return "legacy"


def create_app(cfg: Config) -> FastAPI:
    app = FastAPI(title="Longtail gateway", version="1")
    # Server spans + http.server.request.duration per route; byte serving is left out of
    # traces (one span per segment fetch would drown the upload/watch flows).
    # (With telemetry.tracing off the tracer is the API's no-op one: route metrics stay.)
    FastAPIInstrumentor.instrument_app(app, excluded_urls="/origin/.*,/edge/.*,/static/.*,/healthz",
                                       exclude_spans=["receive", "send"])
    if telemetry.tracing_enabled():
        app.add_middleware(DetachedReceiveMiddleware)
    objects = make_object_store(cfg)
    state: dict[str, Any] = {}

    def metadata() -> mpb_grpc.MetadataServiceStub:
        if "metadata" not in state:
            channel = aio_client_channel(cfg.services.metadata)
            state["metadata"] = mpb_grpc.MetadataServiceStub(channel)
        return state["metadata"]

    def uploads() -> upb_grpc.UploadServiceStub:
        if "upload" not in state:
            channel = aio_client_channel(cfg.services.upload)
            state["upload"] = upb_grpc.UploadServiceStub(channel)
        return state["upload"]

    async def call(coro):
        try:
            return await coro
        except grpc.aio.AioRpcError as exc:
            status = _GRPC_TO_HTTP.get(exc.code(), 500)
            message = exc.details() or exc.code().name
            if status == 500:
                log.error("backend error: %s %s", exc.code(), exc.details())
                message = "internal error"
            raise ApiError(status, exc.code().name, message) from None

    # -- errors: always JSON {"error": {"code", "message"}}, never a stack trace --------
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError):
        body = {"error": {"code": exc.code, "message": exc.message, **exc.extra}}
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse({"error": {"code": "INVALID_ARGUMENT", "message": "; ".join(parts)}}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception):
        log.exception("unhandled error: %s", exc)
        return JSONResponse({"error": {"code": "INTERNAL", "message": "internal error"}}, status_code=500)

    # -- JSON views of resources -----------------------------------------------------------
    def media_url(request: Request, key: str) -> str:
        # Playlists always come through the gateway: their relative URIs would lose a
        # presigned URL's signature; origin_object signs the segment URIs inside instead.
        if not key.endswith(PLAYLIST_SUFFIXES):
            url = objects.presigned_get_url(MEDIA_BUCKET, key)
            if url:
                return url
        return str(request.url_for("origin_object", key=key))

    def video_json(request: Request, video: video_pb2.Video) -> dict:
        body = {
            "id": video.id,
            "title": video.title,
            "description": video.description,
            "channel": {"id": video.channel.id, "name": video.channel.name},
            "status": status_name(video.status),
            "duration_seconds": round(video.duration_seconds, 3),
            "language": video.language,
            "category": video.category,
            "create_time": video.create_time.ToJsonString() if video.HasField("create_time") else None,
        }
        if video.status == S.VIDEO_STATUS_FAILED:
            body["failure_reason"] = video.failure_reason
        if video.status == S.VIDEO_STATUS_READY:
            body["publish_time"] = video.publish_time.ToJsonString()
            body["thumbnails"] = [
                {"kind": t.kind, "url": media_url(request, t.object_key), "width": t.width, "height": t.height}
                for t in video.thumbnails
            ]
        return body

    def ad_breaks_json(video: video_pb2.Video) -> list[dict]:
        breaks = list(video.ad_breaks)
        if not breaks:
            # House pre-roll until an ad server is wired in: players always get the shape.
            breaks = [video_pb2.AdBreak(position=video_pb2.AD_POSITION_PRE_ROLL, offset_seconds=0, duration_seconds=5,
                                        creative_url="", ad_id="house-preroll")]
        return [
            {
                "position": video_pb2.AdPosition.Name(b.position).removeprefix("AD_POSITION_").lower(),
                "offset_seconds": b.offset_seconds,
                "duration_seconds": b.duration_seconds,
                "creative_url": b.creative_url,
                "ad_id": b.ad_id,
            }
            for b in breaks
        ]

    # -- videos ----------------------------------------------------------------------------
    @app.post("/v1/videos", status_code=201)
    async def create_video(body: CreateVideoBody, request: Request):
        length = body.size_bytes
        header_length = request.headers.get("upload-length")
        if header_length is not None:
            if not header_length.isdigit():
                raise ApiError(400, "INVALID_ARGUMENT", "Upload-Length must be a non-negative integer")
            length = int(header_length)
        if length is not None and length > cfg.platform.max_upload_bytes:
            raise ApiError(413, "TOO_LARGE", f"uploads are limited to {cfg.platform.max_upload_bytes} bytes")
        video_id = new_video_id()
        video = video_pb2.Video(
            id=video_id, title=body.title, description=body.description,
            channel=video_pb2.Channel(id=body.channel_id), language=body.language, category=body.category,
        )
        created = await call(metadata().CreateVideo(mpb.CreateVideoRequest(video=video), timeout=15))
        create = upb.CreateUploadRequest(video_id=video_id)
        if length is not None:
            create.length = length
        await call(uploads().CreateUpload(create, timeout=15))
        upload_url = str(request.url_for("tus_upload", video_id=video_id))
        return JSONResponse(
            {"id": created.id, "status": status_name(created.status), "upload_url": upload_url},
            status_code=201,
            headers={"Location": upload_url, "Tus-Resumable": TUS_VERSION},
        )

    async def load_video(video_id: str) -> video_pb2.Video:
        if not re.match(ID_PATTERN, video_id):
            raise ApiError(404, "NOT_FOUND", f"video {video_id} not found")
        return await call(metadata().GetVideo(mpb.GetVideoRequest(id=video_id), timeout=15))

    @app.get("/v1/videos/{video_id}")
    async def get_video(video_id: str, request: Request):
        return video_json(request, await load_video(video_id))

    @app.get("/v1/videos")
    async def list_videos(request: Request, channel_id: str, page_token: str = "", page_size: int = 20):
        if not re.match(ID_PATTERN, channel_id):
            raise ApiError(400, "INVALID_ARGUMENT", "invalid channel_id")
        if not 1 <= page_size <= 100:
            raise ApiError(400, "INVALID_ARGUMENT", "page_size must be between 1 and 100")
        resp = await call(
            metadata().ListVideos(
                mpb.ListVideosRequest(channel_id=channel_id, page_size=page_size, page_token=page_token,
                                      status=S.VIDEO_STATUS_READY),
                timeout=15,
            )
        )
        return {"videos": [video_json(request, v) for v in resp.videos], "next_page_token": resp.next_page_token}

    @app.get("/v1/videos/{video_id}/watch")
    async def watch(video_id: str, request: Request, region: str = "", client: str = "", protocol: str = ""):
        video = await load_video(video_id)
        if video.status != S.VIDEO_STATUS_READY:
            raise ApiError(409, "NOT_READY", f"video {video_id} is {status_name(video.status)}",
                           extra={"status": status_name(video.status)})
        region = (region or request.headers.get("x-client-region") or cfg.platform.default_region).upper()
        if not re.match(r"^[A-Z]{2}$", region):
            raise ApiError(400, "INVALID_ARGUMENT", "region must be a two-letter code")
        client = (client or client_from_user_agent(request.headers.get("user-agent", ""))).lower()
        if client not in CLIENT_CODECS:
            raise ApiError(400, "INVALID_ARGUMENT", f"unknown client {client!r}; one of {sorted(CLIENT_CODECS)}")
        protocol = protocol.lower() or "hls"
        if protocol not in ("hls", "dash"):
            raise ApiError(400, "INVALID_ARGUMENT", "protocol must be hls or dash")
        # The best family this client plays among those the video was encoded in.
        encoded = sorted({m.codec for m in video.manifests})
        codec = next(c for c in CLIENT_CODECS[client] if c in encoded or c == "h264")
        by_protocol = {m.protocol: m for m in video.manifests if m.codec == codec}
        # Asked-for protocol when present (videos made before DASH have HLS only).
        manifest = by_protocol.get(protocol) or by_protocol.get("hls") or next(iter(by_protocol.values()), None)
        if manifest is None:
            raise ApiError(500, "INTERNAL", "video has no H.264 manifest")
        decision = next((p for p in video.placements if p.region == region), None)
        on_cdn = decision is not None and decision.served_from == video_pb2.SERVED_FROM_CDN
        def stream_url(key: str) -> str:
            return str(request.url_for("edge_object", region=region, key=key)) if on_cdn else media_url(request, key)

        url = stream_url(manifest.object_key)
        body = video_json(request, video)
        body.pop("status", None)
        body["ad_breaks"] = ad_breaks_json(video)
        body["renditions"] = [
            {"codec": r.codec, "width": r.width, "height": r.height, "bitrate_bps": r.bitrate_bps,
             "container": r.container, "frame_rate": r.frame_rate, "codecs": r.codecs, "vmaf": r.vmaf}
            for r in video.renditions if r.codec == codec
        ]
        body["codecs"] = encoded  # every family the video exists in; stream.codec is the one handed out
        # The handed-out manifests' audio (AAC with H.264, Opus with VP9/AV1); None: no sound.
        audio_codec = next((a for a in (audio_codec_of(r["codecs"]) for r in body["renditions"]) if a), None)
        body["stream"] = {
            "url": url,
            "protocol": manifest.protocol,
            "codec": codec,
            "audio_codec": audio_codec,
            "manifests": {p: stream_url(m.object_key) for p, m in sorted(by_protocol.items())},
            "served_from": "cdn" if on_cdn else "origin",
            "region": region,
        }
        return body

    # -- view beacons -> `views` topic (placement counts them) ----------------------------------
    def views_producer():
        if "views_producer" not in state:
            from longtail_common.adapters import make_topic_bus

            state["views_producer"] = make_topic_bus(cfg).producer()
        return state["views_producer"]

    def view_region(body_region: str, request: Request) -> str:
        region = (body_region or request.headers.get("x-client-region") or cfg.platform.default_region).upper()
        if not re.match(r"^[A-Z]{2}$", region):
            raise ApiError(400, "INVALID_ARGUMENT", "region must be a two-letter code")
        return region

    async def publish_views(items: list[tuple[str, ViewBody]], request: Request) -> int:
        ids = list(dict.fromkeys(v for v, _ in items))
        for video_id in ids:
            if not re.match(ID_PATTERN, video_id):
                raise ApiError(404, "NOT_FOUND", f"video {video_id} not found")
        found = await call(metadata().BatchGetVideos(mpb.BatchGetVideosRequest(ids=ids), timeout=15))
        status = {v.id: v.status for v in found.videos}
        for video_id in ids:
            if video_id not in status:
                raise ApiError(404, "NOT_FOUND", f"video {video_id} not found")
            if status[video_id] != S.VIDEO_STATUS_READY:
                raise ApiError(409, "NOT_READY", f"video {video_id} is {status_name(status[video_id])}",
                               extra={"status": status_name(status[video_id])})
        events = []
        for video_id, body in items:
            event = events_pb2.ViewEvent(video_id=video_id, region=view_region(body.region, request),
                                         kind=body.kind, bytes_watched=body.bytes)
            event.event_time.GetCurrentTime()
            events.append(event)

        def send():
            producer = views_producer()
            for event in events:
                producer.publish(TOPIC_VIEWS, event.SerializeToString(), key=event.video_id.encode())

        await asyncio.to_thread(send)
        return len(events)

    @app.post("/v1/videos/{video_id}/views", status_code=202)
    async def post_view(video_id: str, body: ViewBody, request: Request):
        return {"accepted": await publish_views([(video_id, body)], request)}

    @app.post("/v1/views", status_code=202)
    async def post_views(body: ViewBatchBody, request: Request):
        """Batch of beacons (all accepted or none: any unknown/not-READY video rejects the batch)."""
        return {"accepted": await publish_views([(e.video_id, e) for e in body.events], request)}

    # -- tus 1.0.0 resumable uploads ------------------------------------------------------------
    tus_headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}

    def check_tus(request: Request) -> None:
        version = request.headers.get("tus-resumable")
        if version != TUS_VERSION:
            raise ApiError(412, "PRECONDITION_FAILED", f"Tus-Resumable {TUS_VERSION} required",
                           headers={"Tus-Version": TUS_VERSION})

    @app.options("/v1/uploads/{video_id}")
    @app.options("/v1/uploads")
    async def tus_options():
        return Response(status_code=204, headers={
            "Tus-Resumable": TUS_VERSION, "Tus-Version": TUS_VERSION,
            "Tus-Extension": "creation,creation-defer-length",
            "Tus-Max-Size": str(cfg.platform.max_upload_bytes),
        })

    @app.post("/v1/uploads")
    async def tus_create(request: Request):
        """tus creation: Upload-Metadata carries title, channel_id (and description)."""
        check_tus(request)
        meta = parse_upload_metadata(request.headers.get("upload-metadata", ""))
        try:
            body = CreateVideoBody(title=meta.get("title", ""), description=meta.get("description", ""),
                                   channel_id=meta.get("channel_id", ""))
        except Exception as exc:  # noqa: BLE001 - pydantic says what is wrong
            raise ApiError(400, "INVALID_ARGUMENT", f"Upload-Metadata: {exc}") from None
        response = await create_video(body, request)
        response.headers.update({"Tus-Resumable": TUS_VERSION})
        return response

    @app.head("/v1/uploads/{video_id}", name="tus_upload_head")
    async def tus_head(video_id: str, request: Request):
        check_tus(request)
        upload = await call(uploads().GetUpload(upb.GetUploadRequest(video_id=video_id), timeout=15))
        headers = dict(tus_headers, **{"Upload-Offset": str(upload.offset)})
        if upload.HasField("length"):
            headers["Upload-Length"] = str(upload.length)
        else:
            headers["Upload-Defer-Length"] = "1"
        return Response(status_code=200, headers=headers)

    @app.patch("/v1/uploads/{video_id}", name="tus_upload")
    async def tus_patch(video_id: str, request: Request):
        check_tus(request)
        if request.headers.get("content-type") != "application/offset+octet-stream":
            raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/offset+octet-stream")
        offset = request.headers.get("upload-offset", "")
        if not offset.isdigit():
            raise ApiError(400, "INVALID_ARGUMENT", "Upload-Offset header is required")
        length = request.headers.get("upload-length")
        if length is not None and not length.isdigit():
            raise ApiError(400, "INVALID_ARGUMENT", "Upload-Length must be a non-negative integer")
        header = upb.AppendUploadRequest.Header(video_id=video_id, offset=int(offset))
        if length is not None:
            header.length = int(length)

        # Check the offset before streaming the body: a mismatch is answered at once (409)
        # instead of racing the upload service's abort against our writes.
        current = await call(uploads().GetUpload(upb.GetUploadRequest(video_id=video_id), timeout=15))
        if current.complete:
            raise ApiError(409, "CONFLICT", "upload already complete", headers=tus_headers)
        if current.offset != int(offset):
            raise ApiError(409, "CONFLICT", f"offset mismatch: upload is at {current.offset}, request at {offset}",
                           headers=tus_headers)

        async def parts():
            yield upb.AppendUploadRequest(header=header)
            try:
                async for chunk in request.stream():
                    # Re-slice into bounded messages whatever the client's chunking.
                    for i in range(0, len(chunk), 1 << 20):
                        yield upb.AppendUploadRequest(data=chunk[i:i + (1 << 20)])
            except Exception:  # noqa: BLE001 - client went away: what arrived is kept
                return

        try:
            upload = await uploads().AppendUpload(parts(), timeout=3600)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "offset mismatch" in (exc.details() or ""):
                raise ApiError(409, "CONFLICT", exc.details(), headers=tus_headers) from None
            status = _GRPC_TO_HTTP.get(exc.code(), 500)
            if status >= 500:
                log.warning("upload append for %s failed: %s %s", video_id, exc.code().name, exc.details())
                raise ApiError(status, exc.code().name, "upload interrupted: ask HEAD for the offset and resume",
                               headers=tus_headers) from None
            raise ApiError(status, exc.code().name, exc.details() or "upload failed", headers=tus_headers) from None
        return Response(status_code=204, headers=dict(tus_headers, **{"Upload-Offset": str(upload.offset)}))

    # -- origin and (embedded) edge bytes ------------------------------------------------------
    def serve_object(bucket: str, key: str, request: Request) -> Response:
        try:
            validate_object_key(key)
            info = objects.stat(bucket, key)
        except InvalidKeyError:
            raise ApiError(404, "NOT_FOUND", "no such object") from None
        if info is None or is_private_media_key(key):
            raise ApiError(404, "NOT_FOUND", "no such object")
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{info.etag}"', "Cache-Control": "public, max-age=3600",
                   "Access-Control-Allow-Origin": "*"}
        range_header = request.headers.get("range")
        start, end, status = 0, info.size - 1, 200
        if range_header:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if not m or (not m.group(1) and not m.group(2)):
                raise ApiError(416, "RANGE_NOT_SATISFIABLE", "bad Range header",
                               headers={"Content-Range": f"bytes */{info.size}"})
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), info.size - 1) if m.group(2) else info.size - 1
            else:
                start = max(0, info.size - int(m.group(2)))
            if start > end or start >= info.size:
                raise ApiError(416, "RANGE_NOT_SATISFIABLE", "range outside the object",
                               headers={"Content-Range": f"bytes */{info.size}"})
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

    @app.api_route("/origin/{key:path}", methods=["GET", "HEAD"], name="origin_object")
    async def origin_object(key: str, request: Request):
        if key.endswith(".m3u8") and request.method == "GET":
            signed = signed_playlist(key)
            if signed is not None:
                return Response(signed, media_type="application/vnd.apple.mpegurl",
                                headers={"Cache-Control": "private, max-age=300", "Access-Control-Allow-Origin": "*"})
        return serve_object(MEDIA_BUCKET, key, request)

    def signed_playlist(key: str) -> bytes | None:
        """The playlist with its segment/init URIs as presigned object-store URLs, so the
        heavy bytes bypass the gateway; None when nothing changes (no presigning backend,
        or a master playlist that only names other playlists)."""
        try:
            validate_object_key(key)
            if objects.presigned_get_url(MEDIA_BUCKET, key) is None:
                return None  # the embedded store: everything is served here anyway
            text = objects.get_bytes(MEDIA_BUCKET, key).decode("utf-8")
        except (InvalidKeyError, NotFoundError, UnicodeDecodeError):
            return None
        base = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        rewritten = rewrite_playlist_uris(text, lambda uri: objects.presigned_get_url(MEDIA_BUCKET, base + uri))
        return rewritten.encode() if rewritten != text else None

    @app.api_route("/edge/{region}/{key:path}", methods=["GET", "HEAD"], name="edge_object")
    async def edge_object(region: str, key: str, request: Request):
        if not re.match(r"^[A-Z]{2}$", region):
            raise ApiError(404, "NOT_FOUND", "no such edge")
        return serve_object(f"edge-{region.lower()}", key, request)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    register_pages(app, cfg, objects)  # browser pages, search API, house ad (gateway/pages.py)
    return app


class DetachedReceiveMiddleware:
    """Reads request bodies outside the request's trace context.

    uvicorn resumes a paused socket from inside receive(), and asyncio's add_reader keeps
    the caller's context for the next read callback: the next request on a keep-alive
    connection would then inherit this request's span as its parent (one endless trace
    per connection). Receiving under an empty OpenTelemetry context stops that leak."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def detached_receive():
            token = otel_context.attach(otel_context.Context())
            try:
                return await receive()
            finally:
                otel_context.detach(token)

        return await self.app(scope, detached_receive, send)


PLAYLIST_SUFFIXES = (".m3u8", ".mpd")
_URI_ATTR = re.compile(r'URI="([^"]+)"')


def rewrite_playlist_uris(text: str, sign) -> str:
    """Replaces relative non-playlist URIs (segment lines, URI="..." attributes) of an HLS
    playlist with sign(uri); URIs that sign() returns None for, absolute ones, ones that
    climb out with "..", and nested playlists are left alone."""

    def mapped(uri: str) -> str:
        if uri.endswith(".m3u8") or "://" in uri or uri.startswith("/") or ".." in uri.split("/"):
            return uri
        return sign(uri) or uri

    out = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            line = mapped(line.strip())
        elif line.startswith("#") and 'URI="' in line:
            line = _URI_ATTR.sub(lambda m: f'URI="{mapped(m.group(1))}"', line)
        out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def new_video_id() -> str:
    # 11 url-safe characters, like the ids viewers already know from other platforms.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes)[:11].decode().replace("-", "a").replace("_", "b")


def parse_upload_metadata(header: str) -> dict[str, str]:
    """tus Upload-Metadata: comma-separated `key base64value` pairs."""
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = pair.partition(" ")
        try:
            out[key] = base64.b64decode(value).decode() if value else ""
        except Exception:  # noqa: BLE001
            raise ApiError(400, "INVALID_ARGUMENT", f"Upload-Metadata value for {key!r} is not base64") from None
    return out
