"""tus 1.0.0 resumable uploads (creation, creation-defer-length, expiration), on to upload_svc, which
keeps the offset.

Every call needs a signed-in account, and upload_svc lets only the video's owner reach its
upload.

A PATCH body is buffered here and sent on in `http.upload_chunk_bytes` pieces, each its
own short AppendUpload call at its offset: an upload_svc thread is held only while bytes
move, so clients that stall mid-body (until `http.body_idle_timeout_s` answers them 408)
cannot take the threads every other upload and HEAD needs. What arrived before a stall or
a dropped connection is kept; the client asks HEAD for the offset and resumes.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import email.utils
import logging
from typing import Annotated

import grpc
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from longtail.upload.v1 import upload_service_pb2 as upb
from longtail.upload.v1 import upload_service_pb2_grpc as upb_grpc
from longtail_common.config import Config
from gateway.api_docs import CREATED_VIDEO_LINKS
from gateway.dependencies import Cfg, MetadataStub, RequiredPrincipal, UploadStub
from gateway.errors import GRPC_TO_HTTP, SERVICE_ERRORS, ApiError, error_responses, grpc_call
from gateway.routes.videos import TUS_VERSION, CreateVideoBody, create_video_with_upload
from gateway.limits import lift_body_cap
from gateway.quotas import reserve_deferred_patch
from gateway.validation import parse_count, require_video_id

log = logging.getLogger("gateway")

TUS_HEADERS = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
PATCH_CONTENT_TYPE = "application/offset+octet-stream"
MESSAGE_BYTES = 1 << 20  # the most body bytes one AppendUpload message carries
CHUNK_CALL_TIMEOUT_S = 120  # one chunk's AppendUpload: bytes already here, only upload_svc's write
# A HEAD right after a dropped PATCH sees the offset its last bytes made (the gateway notices
# the drop, then sends them on); a HEAD beside a stalled PATCH answers after this wait.
HEAD_WAITS_FOR_PATCH_S = 1.0
# Keys of Upload-Metadata: printable ASCII without space or comma (its separators).
METADATA_KEY_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {","}

# PATCHes being forwarded by this gateway, per video: one at a time, and HEAD waits for it.
patches_in_flight: dict[str, asyncio.Event] = {}

router = APIRouter()

# The tus request headers, documented as parameters (the routes check them strictly).
TusResumable = Annotated[str | None, Header(
    alias="Tus-Resumable", description="The tus protocol version: 1.0.0 (else 412).",
    json_schema_extra={"enum": [TUS_VERSION]})]
UploadOffset = Annotated[str | None, Header(
    alias="Upload-Offset", description="Where this PATCH's bytes go: the upload's current offset (HEAD says it).",
    json_schema_extra={"pattern": "^[0-9]{1,19}$"})]
UploadLength = Annotated[str | None, Header(
    alias="Upload-Length", description="The whole upload's size in bytes, if known (at most tus Max-Size).",
    json_schema_extra={"pattern": "^[0-9]{1,19}$"})]
UploadMetadata = Annotated[str | None, Header(
    alias="Upload-Metadata",
    description="Comma-separated `key base64(value)` pairs: title, channel_id, description.")]

TUS_RESPONSE_HEADERS = {
    "Tus-Resumable": {"description": "1.0.0", "schema": {"type": "string"}},
}
EXPIRES_HEADER = {"Upload-Expires": {
    "description": "When an unfinished upload expires (tus expiration, RFC 7231 date): its bytes and its video are removed.",
    "schema": {"type": "string"}}}
OFFSET_HEADER = {"Upload-Offset": {"description": "The upload's offset after this request.",
                                   "schema": {"type": "string", "pattern": "^[0-9]+$"}, "required": True}}


def expiry_headers(state: upb.Upload) -> dict[str, str]:
    """tus `Upload-Expires` while the upload is unfinished (upload_svc sets expire_time then)."""
    if not state.HasField("expire_time"):
        return {}
    expires = state.expire_time.ToDatetime(tzinfo=datetime.timezone.utc)
    return {"Upload-Expires": email.utils.format_datetime(expires, usegmt=True)}


def check_tus(version: str | None) -> None:
    if version != TUS_VERSION:
        raise ApiError(412, "PRECONDITION_FAILED", f"Tus-Resumable {TUS_VERSION} required",
                       headers={"Tus-Version": TUS_VERSION})


def parse_upload_metadata(header: str) -> dict[str, str]:
    """tus Upload-Metadata: comma-separated `key base64value` pairs; strict base64 (padded,
    no stray characters), UTF-8 values, each key once."""
    out: dict[str, str] = {}
    for pair in (p.strip() for p in header.split(",")):
        if not pair:
            continue
        key, _, value = pair.partition(" ")
        if not key or not set(key) <= METADATA_KEY_CHARS or " " in value.strip():
            raise ApiError(400, "INVALID_ARGUMENT", f"Upload-Metadata pair {pair[:40]!r} is not `key base64value`")
        if key in out:
            raise ApiError(400, "INVALID_ARGUMENT", f"Upload-Metadata names {key!r} twice")
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode() if value.strip() else ""
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(400, "INVALID_ARGUMENT", f"Upload-Metadata value for {key!r} is not base64 of UTF-8 text") from None
    return out


@router.options("/v1/uploads", status_code=204,
                responses={204: {"description": "The tus capabilities.", "headers": TUS_RESPONSE_HEADERS}})
async def tus_options(cfg: Cfg):
    """tus discovery: the version, extensions and largest upload."""
    return Response(status_code=204, headers={
        "Tus-Resumable": TUS_VERSION, "Tus-Version": TUS_VERSION,
        "Tus-Extension": "creation,creation-defer-length,expiration",
        "Tus-Max-Size": str(cfg.platform.max_upload_bytes),
    })


@router.options("/v1/uploads/{video_id}", status_code=204,
                responses={204: {"description": "The tus capabilities.", "headers": TUS_RESPONSE_HEADERS}})
async def tus_options_upload(video_id: str, cfg: Cfg):
    """tus discovery, asked of an upload's URL."""
    return await tus_options(cfg)


@router.post("/v1/uploads", status_code=201, responses={
    201: {"description": "Video created; PATCH its bytes to `Location`.",
          "headers": {"Location": {"schema": {"type": "string"}, "required": True}, **TUS_RESPONSE_HEADERS},
          "links": CREATED_VIDEO_LINKS},
    **error_responses(400, 401, 403, 409, 412, 413, 422, *SERVICE_ERRORS)})
async def tus_create(request: Request, cfg: Cfg, metadata: MetadataStub, upload: UploadStub,
                     principal: RequiredPrincipal, tus_resumable: TusResumable = None,
                     upload_metadata: UploadMetadata = None, _upload_length: UploadLength = None):
    """tus creation: Upload-Metadata carries title, channel_id (and description);
    Upload-Length the size (or it is deferred to a PATCH)."""
    check_tus(tus_resumable)
    meta = parse_upload_metadata(upload_metadata or "")
    try:
        body = CreateVideoBody(title=meta.get("title", ""), description=meta.get("description", ""),
                               channel_id=meta.get("channel_id", ""))
    except Exception as exc:  # noqa: BLE001 - pydantic says what is wrong
        raise ApiError(400, "INVALID_ARGUMENT", f"Upload-Metadata: {exc}") from None
    response = await create_video_with_upload(body, request, cfg, metadata, upload, principal)
    response.headers.update({"Tus-Resumable": TUS_VERSION})
    return response


@router.head("/v1/uploads/{video_id}", name="tus_upload_head", response_class=Response, responses={
    200: {"description": "The upload's offset (and length, or Upload-Defer-Length: 1).",
          "headers": {**OFFSET_HEADER, **EXPIRES_HEADER, **TUS_RESPONSE_HEADERS}},
    **error_responses(400, 401, 403, 404, 412, *SERVICE_ERRORS)})
async def tus_head(video_id: str, upload: UploadStub, _principal: RequiredPrincipal,
                   tus_resumable: TusResumable = None):
    check_tus(tus_resumable)
    require_video_id(video_id)
    in_flight = patches_in_flight.get(video_id)
    if in_flight is not None:
        try:
            await asyncio.wait_for(in_flight.wait(), HEAD_WAITS_FOR_PATCH_S)
        except TimeoutError:
            pass  # a PATCH still receiving: its bytes so far are not counted yet
    state = await grpc_call(upload.GetUpload(upb.GetUploadRequest(video_id=video_id), timeout=15))
    headers = dict(TUS_HEADERS, **{"Upload-Offset": str(state.offset)})
    if state.HasField("length"):
        headers["Upload-Length"] = str(state.length)
    else:
        headers["Upload-Defer-Length"] = "1"
    headers.update(expiry_headers(state))
    return Response(status_code=200, headers=headers)


def append_header(video_id: str, cfg: Config, content_type: str | None, offset: str | None,
                  length: str | None) -> upb.AppendUploadRequest.Header:
    """The AppendUpload header from the PATCH's headers, each checked strictly."""
    if content_type != PATCH_CONTENT_TYPE:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Type must be {PATCH_CONTENT_TYPE}")
    if offset is None:
        raise ApiError(400, "INVALID_ARGUMENT", "Upload-Offset header is required")
    header = upb.AppendUploadRequest.Header(
        video_id=video_id, offset=parse_count("Upload-Offset", offset, cfg.platform.max_upload_bytes))
    if length is not None:
        header.length = parse_count("Upload-Length", length)
        if header.length > cfg.platform.max_upload_bytes:
            raise ApiError(413, "TOO_LARGE", f"uploads are limited to {cfg.platform.max_upload_bytes} bytes")
    return header


def append_error(video_id: str, exc: grpc.aio.AioRpcError) -> ApiError:
    """What the client is told when sending the bytes on failed."""
    if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "offset mismatch" in (exc.details() or ""):
        return ApiError(409, "CONFLICT", exc.details(), headers=TUS_HEADERS)
    status = GRPC_TO_HTTP.get(exc.code(), 500)
    if status >= 500:
        log.warning("upload append for %s failed: %s %s", video_id, exc.code().name, exc.details())
        return ApiError(status, exc.code().name, "upload interrupted: ask HEAD for the offset and resume",
                        headers=TUS_HEADERS)
    return ApiError(status, exc.code().name, exc.details() or "upload failed", headers=TUS_HEADERS)


async def append_chunk(upload: upb_grpc.UploadServiceStub, header: upb.AppendUploadRequest.Header,
                       offset: int, data: bytes) -> upb.Upload:
    """One short AppendUpload call: `data` at `offset`."""
    first = upb.AppendUploadRequest.Header()
    first.CopyFrom(header)
    first.offset = offset
    messages = [upb.AppendUploadRequest(header=first)]
    messages += [upb.AppendUploadRequest(data=data[i:i + MESSAGE_BYTES]) for i in range(0, len(data), MESSAGE_BYTES)]
    try:
        return await upload.AppendUpload(iter(messages), timeout=CHUNK_CALL_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        raise append_error(header.video_id, exc) from None


async def forward_body(request: Request, upload: upb_grpc.UploadServiceStub,
                       header: upb.AppendUploadRequest.Header, chunk_bytes: int) -> upb.Upload:
    """Sends the PATCH body on, a call per `chunk_bytes` buffered (and one for the rest);
    answers the upload after the last. A stall (408) or a dropped connection still sends
    on what is buffered, then lets the error through."""
    buffer = bytearray()
    offset, appended = header.offset, None
    try:
        async for piece in request.stream():
            buffer += piece
            if len(buffer) >= chunk_bytes:
                appended = await append_chunk(upload, header, offset, bytes(buffer))
                offset = appended.offset
                buffer.clear()
    except (ClientDisconnect, HTTPException):
        if buffer:
            try:
                await append_chunk(upload, header, offset, bytes(buffer))
            except ApiError as err:
                log.warning("keeping the bytes of a broken PATCH of %s failed: %s", header.video_id, err.message)
        raise
    if buffer or appended is None:
        appended = await append_chunk(upload, header, offset, bytes(buffer))
    return appended


@router.patch("/v1/uploads/{video_id}", name="tus_upload", status_code=204,
              openapi_extra={"requestBody": {"required": True, "content": {
                  PATCH_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}}},
              responses={204: {"description": "Bytes appended.", "headers": {**OFFSET_HEADER, **EXPIRES_HEADER, **TUS_RESPONSE_HEADERS}},
                         **error_responses(400, 401, 403, 404, 408, 409, 412, 413, 415, *SERVICE_ERRORS)})
async def tus_patch(video_id: str, request: Request, cfg: Cfg, metadata: MetadataStub, upload: UploadStub,
                    principal: RequiredPrincipal, tus_resumable: TusResumable = None,
                    upload_offset: UploadOffset = None, upload_length: UploadLength = None):
    """Appends the body at Upload-Offset (which must be the upload's offset)."""
    check_tus(tus_resumable)
    require_video_id(video_id)
    header = append_header(video_id, cfg, request.headers.get("content-type"), upload_offset, upload_length)
    if video_id in patches_in_flight:
        raise ApiError(409, "CONFLICT", "another PATCH of this upload is in progress", headers=TUS_HEADERS)
    patches_in_flight[video_id] = done = asyncio.Event()
    try:
        # The offset is checked before the body is read: a mismatch is answered at once (409).
        current = await grpc_call(upload.GetUpload(upb.GetUploadRequest(video_id=video_id), timeout=15))
        if current.complete:
            raise ApiError(409, "CONFLICT", "upload already complete", headers=TUS_HEADERS)
        if current.offset != header.offset:
            raise ApiError(409, "CONFLICT", f"offset mismatch: upload is at {current.offset}, request at {header.offset}",
                           headers=TUS_HEADERS)
        if not current.HasField("length"):  # a deferred size: the quota is checked before any byte is stored
            await reserve_deferred_patch(metadata, cfg.limits, principal.account_id, principal.admin, header,
                                         request.headers.get("content-length"))
        lift_body_cap(request)  # the upload's own length bounds this body (upload_svc refuses more)
        appended = await forward_body(request, upload, header, cfg.http.upload_chunk_bytes)
    finally:
        del patches_in_flight[video_id]
        done.set()
    return Response(status_code=204, headers=dict(TUS_HEADERS, **{"Upload-Offset": str(appended.offset)},
                                                  **expiry_headers(appended)))
