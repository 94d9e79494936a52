"""tus 1.0.0 resumable uploads (creation, creation-defer-length): the bytes are streamed
on to upload_svc, which keeps the offset. Every call needs a signed-in account, and
upload_svc lets only the video's owner reach its upload.
"""
from __future__ import annotations

import base64
import logging

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import Response

from longtail.upload.v1 import upload_service_pb2 as upb
from gateway.dependencies import Cfg, MetadataStub, RequiredPrincipal, UploadStub
from gateway.errors import GRPC_TO_HTTP, ApiError, grpc_call
from gateway.routes.videos import TUS_VERSION, CreateVideoBody, create_video_with_upload

log = logging.getLogger("gateway")

TUS_HEADERS = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
MESSAGE_BYTES = 1 << 20  # the most body bytes one AppendUpload message carries

router = APIRouter()


def check_tus(request: Request) -> None:
    version = request.headers.get("tus-resumable")
    if version != TUS_VERSION:
        raise ApiError(412, "PRECONDITION_FAILED", f"Tus-Resumable {TUS_VERSION} required",
                       headers={"Tus-Version": TUS_VERSION})


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


@router.options("/v1/uploads/{video_id}")
@router.options("/v1/uploads")
async def tus_options(cfg: Cfg):
    return Response(status_code=204, headers={
        "Tus-Resumable": TUS_VERSION, "Tus-Version": TUS_VERSION,
        "Tus-Extension": "creation,creation-defer-length",
        "Tus-Max-Size": str(cfg.platform.max_upload_bytes),
    })


@router.post("/v1/uploads")
async def tus_create(request: Request, cfg: Cfg, metadata: MetadataStub, upload: UploadStub,
                     principal: RequiredPrincipal):
    """tus creation: Upload-Metadata carries title, channel_id (and description)."""
    check_tus(request)
    meta = parse_upload_metadata(request.headers.get("upload-metadata", ""))
    try:
        body = CreateVideoBody(title=meta.get("title", ""), description=meta.get("description", ""),
                               channel_id=meta.get("channel_id", ""))
    except Exception as exc:  # noqa: BLE001 - pydantic says what is wrong
        raise ApiError(400, "INVALID_ARGUMENT", f"Upload-Metadata: {exc}") from None
    response = await create_video_with_upload(body, request, cfg, metadata, upload, principal)
    response.headers.update({"Tus-Resumable": TUS_VERSION})
    return response


@router.head("/v1/uploads/{video_id}", name="tus_upload_head")
async def tus_head(video_id: str, request: Request, upload: UploadStub, _principal: RequiredPrincipal):
    check_tus(request)
    state = await grpc_call(upload.GetUpload(upb.GetUploadRequest(video_id=video_id), timeout=15))
    headers = dict(TUS_HEADERS, **{"Upload-Offset": str(state.offset)})
    if state.HasField("length"):
        headers["Upload-Length"] = str(state.length)
    else:
        headers["Upload-Defer-Length"] = "1"
    return Response(status_code=200, headers=headers)


def append_header(video_id: str, request: Request) -> upb.AppendUploadRequest.Header:
    """The first AppendUpload message, from the PATCH's headers (checked here)."""
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
    return header


async def append_messages(header: upb.AppendUploadRequest.Header, request: Request):
    yield upb.AppendUploadRequest(header=header)
    try:
        async for chunk in request.stream():
            # Re-slice into bounded messages whatever the client's chunking.
            for i in range(0, len(chunk), MESSAGE_BYTES):
                yield upb.AppendUploadRequest(data=chunk[i:i + MESSAGE_BYTES])
    except Exception:  # noqa: BLE001 - client went away: what arrived is kept
        return


def append_error(video_id: str, exc: grpc.aio.AioRpcError) -> ApiError:
    """What the client is told when streaming the bytes on failed."""
    if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "offset mismatch" in (exc.details() or ""):
        return ApiError(409, "CONFLICT", exc.details(), headers=TUS_HEADERS)
    status = GRPC_TO_HTTP.get(exc.code(), 500)
    if status >= 500:
        log.warning("upload append for %s failed: %s %s", video_id, exc.code().name, exc.details())
        return ApiError(status, exc.code().name, "upload interrupted: ask HEAD for the offset and resume",
                        headers=TUS_HEADERS)
    return ApiError(status, exc.code().name, exc.details() or "upload failed", headers=TUS_HEADERS)


@router.patch("/v1/uploads/{video_id}", name="tus_upload")
async def tus_patch(video_id: str, request: Request, upload: UploadStub, _principal: RequiredPrincipal):
    check_tus(request)
    header = append_header(video_id, request)
    # Check the offset before streaming the body: a mismatch is answered at once (409)
    # instead of racing the upload service's abort against our writes.
    current = await grpc_call(upload.GetUpload(upb.GetUploadRequest(video_id=video_id), timeout=15))
    if current.complete:
        raise ApiError(409, "CONFLICT", "upload already complete", headers=TUS_HEADERS)
    if current.offset != header.offset:
        asked = request.headers["upload-offset"]
        raise ApiError(409, "CONFLICT", f"offset mismatch: upload is at {current.offset}, request at {asked}",
                       headers=TUS_HEADERS)
    try:
        appended = await upload.AppendUpload(append_messages(header, request), timeout=3600)
    except grpc.aio.AioRpcError as exc:
        raise append_error(video_id, exc) from None
    return Response(status_code=204, headers=dict(TUS_HEADERS, **{"Upload-Offset": str(appended.offset)}))
