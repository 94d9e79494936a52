"""Alternate audio tracks of a video (dubs, audio description, another main mix): its
owner uploads one per language and kind, lists and deletes them.

An upload is stored in the raw bucket and asked of the transcoder on `transcode.requests`
(it encodes the sound for every codec family and records the track in the video, whose
`video.changed` event refreshes every gateway's cached manifests and watch payload); the
request never waits for the encode. A file without usable sound fails the track (status
"failed" with the reason), never the video.
"""
from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf import field_mask_pb2

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail_common.language_tags import language_name
from longtail_common.ports import MEDIA_BUCKET, RAW_BUCKET
from longtail_common.proto_enums import AUDIO_TRACK_KINDS
from gateway.audio_track_json import audio_tracks_json, track_json
from gateway.dependencies import Cfg, CurrentPrincipal, Links, MetadataStub, Objects, RequiredPrincipal
from gateway.errors import SERVICE_ERRORS, ApiError, error_responses, grpc_call
from gateway.limits import BODY_CAP_SCOPE_KEY
from gateway.routes.downloads import publish_request, require_ready
from gateway.routes.videos import cached_video, load_video
from gateway.validation import language_param
from gateway.video_access import owns_channel, require_owner, require_visible

router = APIRouter()
Kind = Literal["main", "dub", "description"]
MAX_LABEL_CHARS = 80
ACCEPTED_TYPES = ("audio/", "video/", "application/octet-stream")
KIND_WORDS = {"main": "", "dub": " (dub)", "description": " (audio description)"}


def track_label(language: str, kind: str, label: str) -> str:
    if label:
        if len(label) > MAX_LABEL_CHARS or not label.isprintable():
            raise ApiError(400, "INVALID_ARGUMENT", f"label: at most {MAX_LABEL_CHARS} printable characters")
        return label.strip()
    return language_name(language) + KIND_WORDS[kind]


async def store_body(request: Request, objects, key: str, cap: int) -> int:
    """The request body into the raw bucket under `key` (spooled to disk, not memory); its size."""
    request.scope[BODY_CAP_SCOPE_KEY] = cap  # 413 past the tracks' own limit, not the API's
    size = 0
    with tempfile.NamedTemporaryFile(prefix="audio-track-") as spool:
        async for chunk in request.stream():
            spool.write(chunk)
            size += len(chunk)
        spool.flush()
        if size == 0:
            raise ApiError(400, "INVALID_ARGUMENT", "the body is empty: send the audio (or video) file")
        await asyncio.to_thread(objects.put_file, RAW_BUCKET, key, spool.name)
    return size


@router.post("/v1/videos/{video_id}/audio-tracks", status_code=202, responses={
    202: {"description": "Stored; the transcoder encodes it. It shows in GET .../audio-tracks (status "
                         "processing, then ready or failed) and, once ready, in the manifests and watch payload.",
          "headers": {"Location": {"schema": {"type": "string"}, "required": True}}},
    **error_responses(400, 401, 403, 404, 409, 413, 415, 422, *SERVICE_ERRORS)})
async def create_audio_track(video_id: str, request: Request, cfg: Cfg, metadata: MetadataStub, objects: Objects,
                             links: Links, principal: RequiredPrincipal, language: str, kind: Kind = "dub",
                             label: str = ""):
    """Uploads an alternate audio track (the body: an audio file, or a video whose sound is
    taken) in `language` (BCP-47) as `kind` main, dub or description; its owner or an
    admin. Replaces the track of the same language and kind."""
    video = await load_video(metadata, video_id)
    require_owner(video, principal)
    require_ready(video)
    language = language_param(language)
    label = track_label(language, kind, label)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not content_type.startswith(ACCEPTED_TYPES):
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "send an audio/* or video/* file")
    kinds = {(t.language, t.kind) for t in video.audio_tracks} | {(language, AUDIO_TRACK_KINDS[kind])}
    most = cfg.audio_tracks.max_tracks_per_video
    if len(kinds) > most:
        raise ApiError(409, "TOO_MANY_TRACKS", f"a video has at most {most} audio tracks")
    version = uuid.uuid4().hex[:12]
    key = f"{video.id}/audio-tracks/{language}-{kind}-{version}"  # (a deleted video's raw prefix goes with it)
    await store_body(request, objects, key, cfg.audio_tracks.max_upload_bytes)
    track = video_pb2.AudioTrack(language=language, kind=AUDIO_TRACK_KINDS[kind], label=label, version=version,
                                 source_object_key=key, status=video_pb2.AUDIO_TRACK_STATUS_PROCESSING)
    track.create_time.GetCurrentTime()
    transcode = events_pb2.TranscodeRequest(video_id=video.id, make_audio_track=track)
    transcode.request_time.GetCurrentTime()
    try:
        await publish_request(links, transcode)
    except ApiError:
        objects.delete(RAW_BUCKET, key)
        raise
    location = str(request.url_for("list_audio_tracks", video_id=video.id))
    return JSONResponse(track_json(track, True), status_code=202, headers={"Location": location})


@router.get("/v1/videos/{video_id}/audio-tracks", responses=error_responses(404, 422, *SERVICE_ERRORS))
async def list_audio_tracks(video_id: str, request: Request, principal: CurrentPrincipal):
    """The video's audio tracks: the playable ones, or for its owner every one with its
    status (processing, ready, failed and why)."""
    video = require_visible((await cached_video(request, video_id)).video(), principal)
    if principal is not None and owns_channel(principal, video.channel):
        return {"audio_tracks": [track_json(t, True) for t in video.audio_tracks]}
    return {"audio_tracks": audio_tracks_json(video)}


@router.delete("/v1/videos/{video_id}/audio-tracks/{language}/{kind}", status_code=204, response_class=Response,
               responses=error_responses(400, 401, 403, 404, 422, *SERVICE_ERRORS))
async def delete_audio_track(video_id: str, language: str, kind: Kind, request: Request, metadata: MetadataStub,
                             objects: Objects, principal: RequiredPrincipal):
    """Deletes one audio track and its files (its owner or an admin)."""
    video = await load_video(metadata, video_id)
    require_owner(video, principal)
    language = language_param(language)
    wanted = (language, AUDIO_TRACK_KINDS[kind])
    gone = [t for t in video.audio_tracks if (t.language, t.kind) == wanted]
    if not gone:
        raise ApiError(404, "NOT_FOUND", f"video {video.id} has no {kind} track in {language}")
    kept = [t for t in video.audio_tracks if (t.language, t.kind) != wanted]
    patch = video_pb2.Video(id=video.id, etag=video.etag, audio_tracks=kept)
    await grpc_call(metadata.UpdateVideo(mpb.UpdateVideoRequest(
        video=patch, update_mask=field_mask_pb2.FieldMask(paths=["audio_tracks"])), timeout=15))
    request.app.state.videos.invalidate(video.id)  # the others hear video.changed
    for track in gone:
        for encoding in track.encodings:
            folder = os.path.dirname(encoding.playlist_object_key) + "/"
            for key in objects.list_keys(MEDIA_BUCKET, folder):
                objects.delete(MEDIA_BUCKET, key)
        objects.delete(RAW_BUCKET, track.source_object_key)
    return Response(status_code=204)
