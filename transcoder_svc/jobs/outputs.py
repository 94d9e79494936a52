"""Where a job's outputs live in the media bucket, and the TranscodeResult that lists them.

A video's variants live under videos/<id>/<codec>/<resolution>/..., its thumbnails under
videos/<id>/thumbs/. Each encode writes a result marker last: its presence means every
variant is in place, and it holds the result to publish again after a lost publish. A write
the store refuses while unavailable is retried a few times (a span event each) before the
job fails and the whole encode is redone.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import time

from google.protobuf import json_format
from opentelemetry import trace

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import video_pb2
from longtail_common.ports import MEDIA_BUCKET, BackendUnavailableError, NotFoundError, ObjectStore, validate_id
from longtail_common.proto_enums import CONTAINER_FORMAT, STREAM_PROTOCOL, THUMBNAIL_KIND
from transcoder_svc import ladder, packaging
from transcoder_svc.jobs.families import H264
from transcoder_svc.metrics import step

log = logging.getLogger("transcoder_svc")

STORE_ATTEMPTS = 3
STORE_RETRY_DELAY_S = 1.0  # doubling after each failed attempt


def video_prefix(video_id: str) -> str:
    return f"videos/{validate_id(video_id, 'video id')}"


def media_prefix(video_id: str, codec: str = H264) -> str:
    """Every variant of a video lives under videos/<id>/<codec>/<resolution>/."""
    return f"{video_prefix(video_id)}/{codec}"


def reencoded_folder(x264_preset: str) -> str:
    """The folder (beside videos/<id>/h264/) of an H.264 re-encode at `x264_preset`: a
    new folder, because players mid-video and edges hold the files of the first encode."""
    return f"{H264}-{x264_preset}"


def move_family(out_dir: pathlib.Path, output: packaging.TranscodeOutput, family: str, folder: str) -> None:
    """Moves `family`'s packaged files from out_dir/<family>/ to out_dir/<folder>/ and
    points `output` there (manifests and playlists name their files relative to themselves)."""
    (out_dir / family).rename(out_dir / folder)
    for fam in output.families:
        if fam.codec != family:
            continue
        fam.hls_path, fam.dash_path = (f"{folder}/{p.split('/', 1)[1]}" for p in (fam.hls_path, fam.dash_path))
        for r in fam.renditions:
            r.playlist_path = f"{folder}/{r.playlist_path.split('/', 1)[1]}"


def download_folder(objects: ObjectStore, video_id: str, folder: str, workdir: pathlib.Path) -> pathlib.Path | None:
    """Downloads a packaged folder of the video (a rendition's or the audio's) under
    workdir/top/; its playlist's local path (None: no such folder)."""
    base = f"{video_prefix(video_id)}/"
    playlist = None
    for key in objects.list_keys(MEDIA_BUCKET, folder + "/"):
        path = workdir / "top" / key[len(base):]
        path.parent.mkdir(parents=True, exist_ok=True)
        objects.download_file(MEDIA_BUCKET, key, str(path))
        playlist = path if path.name == "playlist.m3u8" else playlist
    return playlist


def ladder_key(video_id: str) -> str:
    # The rungs (sizes, H.264 target bitrates, per-title VMAF) the video was encoded at: a
    # codec upgrade encodes the same ladder. Named with a leading "_": not pushed to edges.
    return f"{video_prefix(video_id)}/_ladder.json"


def done_marker_key(video_id: str, codec: str = H264) -> str:
    # Written last: its presence means every variant is in place (and holds the result).
    # A codec upgrade writes its own, under the first family it adds.
    return f"{media_prefix(video_id, codec)}/_result.json"


def stored_result(objects: ObjectStore, video_id: str, codec: str = H264) -> events_pb2.TranscodeResult | None:
    """The result an earlier delivery stored for this encode (None: it has not finished)."""
    try:
        raw = objects.get_bytes(MEDIA_BUCKET, done_marker_key(video_id, codec))
    except NotFoundError:
        return None
    return json_format.Parse(raw, events_pb2.TranscodeResult())


def recorded_ladder(objects: ObjectStore, video_id: str) -> list[ladder.Rung] | None:
    """The rungs the video was first encoded at (None: encoded before ladders were recorded)."""
    try:
        return [ladder.Rung(**r) for r in json.loads(objects.get_bytes(MEDIA_BUCKET, ladder_key(video_id)))]
    except NotFoundError:
        return None


def failed_result(video_id: str, reason: str, worker_id: str, added: list[str] = ()) -> events_pb2.TranscodeResult:
    return events_pb2.TranscodeResult(video_id=video_id, success=False, failure_reason=reason, worker_id=worker_id,
                                      added_codecs=list(added))


def put_file(objects: ObjectStore, key: str, path: str) -> int:
    """Stores a local file in the media bucket; its size."""
    with_retries(f"storing {key}", lambda: objects.put_file(MEDIA_BUCKET, key, path))
    return os.path.getsize(path)


def with_retries(what: str, write) -> None:
    """`write()`, retried while the store is unavailable (a restart, a network blip), each
    failed attempt a span event on the current step: one object must not cost a re-encode."""
    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            write()
            return
        except BackendUnavailableError as exc:
            if attempt == STORE_ATTEMPTS:
                raise
            delay = STORE_RETRY_DELAY_S * 2 ** (attempt - 1)
            trace.get_current_span().add_event("retry", {"longtail.retry.what": what, "longtail.retry.attempt": attempt,
                                                         "longtail.retry.delay_s": delay, "error": str(exc)[:300]})
            log.warning("%s failed (attempt %d/%d), retrying in %.0f s: %s", what, attempt, STORE_ATTEMPTS, delay, exc)
            time.sleep(delay)


def store_outputs(objects: ObjectStore, video_id: str, out_dir: pathlib.Path, output: packaging.TranscodeOutput,
                  rungs: list[ladder.Rung], worker_id: str, added: list[str] = ()) -> events_pb2.TranscodeResult:
    """Uploads the packaged output and returns its result; `added`: the families of a
    codec upgrade (its result lists only those, and its marker is its own). One "store"
    step span, with the objects and bytes written."""
    base = video_prefix(video_id)
    # Segments and media playlists first, then the masters/MPDs, the result marker last:
    # a reader never finds a manifest that points at something missing. Paths under
    # out/ are already <codec>/<rung>/... and thumbs/..., the layout of the bucket.
    manifests = {p for f in output.families for p in (f.hls_path, f.dash_path)}
    files = [p.relative_to(out_dir).as_posix() for p in sorted(out_dir.rglob("*")) if p.is_file()]
    with step("store") as span:
        written = [put_file(objects, f"{base}/{rel}", str(out_dir / rel))
                   for rel in [r for r in files if r not in manifests] + sorted(manifests)]
        records = [] if added else [(ladder_key(video_id), json.dumps([dataclasses.asdict(r) for r in rungs]).encode())]
        result = success_result(video_id, output, worker_id, added)
        marker = done_marker_key(video_id, added[0] if added else H264)
        for key, data in records + [(marker, json_format.MessageToJson(result).encode())]:
            with_retries(f"storing {key}", lambda key=key, data=data: objects.put_bytes(MEDIA_BUCKET, key, data))
            written.append(len(data))
        span.set_attributes({"longtail.objects": len(written), "longtail.bytes": sum(written)})
    return result


def success_result(video_id: str, output: packaging.TranscodeOutput, worker_id: str,
                   added: list[str] = ()) -> events_pb2.TranscodeResult:
    """The result listing every rendition, manifest and thumbnail of `output`, by bucket key."""
    base = video_prefix(video_id)
    result = events_pb2.TranscodeResult(
        video_id=video_id, success=True, duration_seconds=output.duration_s, worker_id=worker_id,
        added_codecs=list(added),
    )
    for r in output.renditions:
        result.renditions.append(
            video_pb2.Rendition(
                codec=r.codec, width=r.width, height=r.height, bitrate_bps=r.bitrate_bps,
                **CONTAINER_FORMAT.fields(r.container), object_key=f"{base}/{r.playlist_path}",
                frame_rate=r.frame_rate, codecs=r.codecs, vmaf=r.vmaf,
            )
        )
    for f in output.families:
        result.manifests.append(video_pb2.StreamManifest(codec=f.codec, **STREAM_PROTOCOL.fields("hls"), object_key=f"{base}/{f.hls_path}"))
        result.manifests.append(video_pb2.StreamManifest(codec=f.codec, **STREAM_PROTOCOL.fields("dash"), object_key=f"{base}/{f.dash_path}"))
    thumbs = [("poster", output.poster_path, output.poster_width, output.poster_height),
              ("storyboard", output.storyboard_path, output.storyboard_width, output.storyboard_height),
              ("storyboard_vtt", output.storyboard_vtt_path, 0, 0),
              ("preview", output.preview_path, output.preview_width, output.preview_height)]
    for kind, rel, width, height in thumbs:
        if rel:
            result.thumbnails.append(video_pb2.Thumbnail(**THUMBNAIL_KIND.fields(kind), object_key=f"{base}/{rel}", width=width, height=height))
    return result
