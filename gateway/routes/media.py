"""Stream bytes in the embedded setup: origin objects (with HLS playlists signed when the
store presigns) and each region's edge copy, with HTTP Range support.
"""
from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

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
from gateway.api_docs import MEDIA_TYPES, RANGE_HEADER, media_responses
from gateway.dependencies import Objects
from gateway.errors import ApiError, error_responses
from gateway.media_links import signed_playlist

router = APIRouter()


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


def serve_object(objects: ObjectStore, bucket: str, key: str, request: Request) -> Response:
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


@router.api_route("/origin/{key:path}", methods=["GET", "HEAD"], name="origin_object", openapi_extra=RANGE_HEADER,
                  responses={**media_responses(*MEDIA_TYPES), **error_responses(403, 404, 416, 422)})
async def origin_object(key: str, request: Request, objects: Objects):
    if key.endswith(".m3u8") and request.method == "GET":
        signed = signed_playlist(objects, key)
        if signed is not None:
            return Response(signed, media_type="application/vnd.apple.mpegurl",
                            headers={"Cache-Control": "private, max-age=300", "Access-Control-Allow-Origin": "*"})
    return serve_object(objects, MEDIA_BUCKET, key, request)


@router.api_route("/edge/{region}/{key:path}", methods=["GET", "HEAD"], name="edge_object", openapi_extra=RANGE_HEADER,
                  responses={**media_responses(*MEDIA_TYPES), **error_responses(403, 404, 416, 422)})
async def edge_object(region: str, key: str, request: Request, objects: Objects):
    if not is_valid_region(region):
        raise ApiError(404, "NOT_FOUND", "no such edge")
    return serve_object(objects, f"{EDGE_BUCKET_PREFIX}{region.lower()}", key, request)
