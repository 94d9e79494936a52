"""Pieces of the OpenAPI document that several routes share (error bodies are in
gateway/errors.py): the media types of stream bytes, the HTML pages, the Range header,
and `route_per_method` (one operation per method). Documentation only: nothing here changes
what a route answers.
"""
from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter

from gateway.errors import ERROR_DESCRIPTIONS

# What origin and edge objects are served as (the object stores' content types).
MEDIA_TYPES = ("application/vnd.apple.mpegurl", "application/dash+xml", "video/mp4", "video/iso.segment",
               "video/mp2t", "audio/mp4", "image/jpeg", "image/png", "image/webp", "text/vtt",
               "application/octet-stream")
BINARY = {"schema": {"type": "string", "format": "binary"}}


def route_per_method(router: APIRouter, path: str, methods: list[str], **kwargs: Any) -> Callable:
    """`router.api_route(path, methods=methods, ...)` as one route per method: FastAPI names a
    route's OpenAPI operation after its first method only, so GET and HEAD (or PUT and POST)
    on one route would share an operationId, which an OpenAPI document must not."""
    def register(endpoint: Callable) -> Callable:
        for method in methods:
            router.api_route(path, methods=[method], **kwargs)(endpoint)
        return endpoint
    return register


def media_responses(*types: str) -> dict[int, dict]:
    """200 (whole object) and 206 (a Range of it) in `types`."""
    content = {media_type: BINARY for media_type in types}
    return {200: {"description": "The object's bytes.", "content": content},
            206: {"description": "The requested Range of the object's bytes.", "content": content,
                  "headers": {"Content-Range": {"schema": {"type": "string"}, "required": True}}}}


def html_responses(*statuses: int) -> dict[int, dict]:
    """An HTML page for each of `statuses` (pages answer their errors as pages too)."""
    return {status: {"description": ERROR_DESCRIPTIONS.get(status, "The page."),
                     "content": {"text/html": {"schema": {"type": "string"}}}} for status in statuses}


RANGE_HEADER = {"parameters": [{
    "name": "Range", "in": "header", "required": False,
    "description": "`bytes=first-last`, `bytes=first-` or `bytes=-suffix` (one range).",
    "schema": {"type": "string", "pattern": "^bytes=[0-9]{0,19}-[0-9]{0,19}$"}}]}

UPLOAD_LENGTH_HEADER = {"parameters": [{
    "name": "Upload-Length", "in": "header", "required": False,
    "description": "The size of the file to come, in bytes (instead of `size_bytes`).",
    "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"}}]}

# From a created video (its 201 body's `id`) to what a client does next: lets a stateful
# fuzzer upload to, read, watch and count views of videos that exist.
CREATED_VIDEO_LINKS = {name: {"operationId": operation, "parameters": {"video_id": "$response.body#/id"}}
                       for name, operation in (
                           ("GetVideo", "get_video_v1_videos__video_id__get"),
                           ("Watch", "watch_v1_videos__video_id__watch_get"),
                           ("PostView", "post_view_v1_videos__video_id__views_post"),
                           ("VideoStats", "video_stats_v1_videos__video_id__stats_get"),
                           ("UploadOffset", "tus_upload_head_v1_uploads__video_id__head"),
                           ("UploadBytes", "tus_upload_v1_uploads__video_id__patch"),
                           ("EditVideo", "edit_video_v1_videos__video_id__patch"),
                           ("DeleteVideo", "delete_video_v1_videos__video_id__delete"))}
