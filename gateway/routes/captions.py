"""Caption resources of a video (`/v1/videos/{id}/captions`): upload one per language
(WebVTT, or SRT converted to WebVTT; its owner or an admin), list them, delete one.

An upload is checked line by line first (longtail_common/captions.py: a bad file is a 400
naming the line at fault), then stored as objects under
`videos/<id>/captions/<language>/<version>/` (the whole file, and the segmented WebVTT
playlist HLS players read), then recorded in metadata_svc, which announces the change
(`video.changed`): every gateway's watch payload and manifests list it from then on,
without re-transcoding (gateway/manifests_extra.py). Each upload is a new version folder,
so a replaced caption never reaches a player from a cache under its old name.
"""
from __future__ import annotations

import logging
import uuid
from typing import Literal

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from longtail.metadata.v1 import caption_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail_common.captions import (
    CONTENT_TYPES,
    MAX_LABEL_CHARS,
    CaptionFileError,
    caption_objects,
    parse_caption_file,
    store_caption_files,
)
from longtail_common.ports import MEDIA_BUCKET, ObjectStore
from gateway.dependencies import CurrentPrincipal, MetadataStub, Objects, RequiredPrincipal
from gateway.errors import SERVICE_ERRORS, ApiError, error_responses, grpc_call
from gateway.validation import language_param
from gateway.video_access import media_account, require_owner, require_visible
from gateway.video_json import caption_json
from gateway.routes.videos import load_video

log = logging.getLogger("gateway.captions")
router = APIRouter()

K = caption_pb2.CaptionKind
KINDS = {"subtitles": K.CAPTION_KIND_SUBTITLES, "captions": K.CAPTION_KIND_CAPTIONS}
CAPTION_BODY = {"requestBody": {"required": True, "content": {
    "text/vtt": {"schema": {"type": "string"}}, "application/x-subrip": {"schema": {"type": "string"}}}}}


def caption_format(request: Request) -> str:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt = CONTENT_TYPES.get(media_type)
    if fmt is None:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "send the file as text/vtt (WebVTT) or application/x-subrip (SRT)")
    return fmt


def remove_files(objects: ObjectStore, object_key: str) -> None:
    """Deletes the version folder of a caption (best effort: the video's delete sweeps the rest)."""
    prefix = object_key.rsplit("/", 1)[0] + "/"
    try:
        for key in list(objects.list_keys(MEDIA_BUCKET, prefix)):
            objects.delete(MEDIA_BUCKET, key)
    except Exception:  # noqa: BLE001 - leftovers are unreachable (no record names them)
        log.warning("could not remove the caption files under %s", prefix, exc_info=True)


@router.post("/v1/videos/{video_id}/captions", status_code=201, openapi_extra=CAPTION_BODY,
             responses=error_responses(400, 401, 403, 404, 409, 413, 415, 422, *SERVICE_ERRORS))
async def create_caption(video_id: str, request: Request, metadata: MetadataStub, objects: Objects,
                         principal: RequiredPrincipal, language: str, label: str = "",
                         kind: Literal["subtitles", "captions"] = "subtitles"):
    """Adds the video's caption in `language` (BCP-47), replacing the one there was: the
    body is the file, `text/vtt` or `application/x-subrip`. 400 names the line at fault."""
    video = await load_video(metadata, video_id)
    require_owner(video, principal)
    language = language_param(language)
    if len(label) > MAX_LABEL_CHARS or any(c in label for c in '"\n\r'):
        raise ApiError(400, "INVALID_ARGUMENT", f"label: at most {MAX_LABEL_CHARS} characters, no quotes")
    fmt = caption_format(request)
    body = await request.body()
    try:
        parsed = parse_caption_file(body, fmt)
    except CaptionFileError as err:
        raise ApiError(400, "INVALID_CAPTION_FILE", str(err), extra={"line": err.line}) from None
    previous = next((c for c in video.captions if c.language == language), None)
    prefix = f"videos/{video.id}/captions/{language}/{uuid.uuid4().hex[:10]}/"
    files = caption_objects(parsed.vtt, video.duration_seconds)
    await run_in_threadpool(store_caption_files, objects, MEDIA_BUCKET, prefix, files)
    asked = caption_pb2.Caption(language=language, label=label.strip(), kind=KINDS[kind], automatic=False,
                                object_key=prefix + "captions.vtt", playlist_object_key=prefix + "playlist.m3u8",
                                cue_count=len(parsed.cues), size_bytes=len(files["captions.vtt"]))
    try:
        caption = await grpc_call(metadata.CreateCaption(mpb.CreateCaptionRequest(video_id=video.id, caption=asked),
                                                         timeout=15))
    except ApiError:
        await run_in_threadpool(remove_files, objects, asked.object_key)
        raise
    if previous is not None and previous.object_key != caption.object_key:
        await run_in_threadpool(remove_files, objects, previous.object_key)
    request.app.state.videos.invalidate(video.id)  # the others hear video.changed
    return caption_json(request, objects, caption, media_account(video, principal))


@router.get("/v1/videos/{video_id}/captions", responses=error_responses(404, 422, *SERVICE_ERRORS))
async def list_captions(video_id: str, request: Request, metadata: MetadataStub, objects: Objects,
                        principal: CurrentPrincipal):
    """The video's captions, by language, with signed URLs of their WebVTT files."""
    video = require_visible(await load_video(metadata, video_id), principal)
    account = media_account(video, principal)
    return {"captions": [caption_json(request, objects, c, account) for c in video.captions]}


@router.delete("/v1/videos/{video_id}/captions/{language}", status_code=204, response_class=Response,
               responses=error_responses(400, 401, 403, 404, 422, *SERVICE_ERRORS))
async def delete_caption(video_id: str, language: str, request: Request, metadata: MetadataStub, objects: Objects,
                         principal: RequiredPrincipal):
    """Removes the video's caption in `language` (its owner or an admin)."""
    video: video_pb2.Video = await load_video(metadata, video_id)
    require_owner(video, principal)
    language = language_param(language)
    caption = await grpc_call(metadata.DeleteCaption(mpb.DeleteCaptionRequest(video_id=video.id, language=language),
                                                     timeout=15))
    await run_in_threadpool(remove_files, objects, caption.object_key)
    request.app.state.videos.invalidate(video.id)
    return Response(status_code=204)
