"""Alternate audio tracks (dubs, audio description): encodes an uploaded file's sound for
every codec family of a READY video, with the ladder's audio settings (AAC-LC for H.264,
Opus for VP9/AV1), as CMAF segments cut where the video's are, stored beside the family's
renditions under `<family folder>/audio-<language>-<kind>-<version>/`, and recorded in the
video's `audio_tracks`; metadata_svc then announces the change on `video.changed`, so the
gateways' cached manifests and watch payloads show it at once.

A file that has no usable sound fails the track (status FAILED, with the reason), never
the video. Idempotent: a track version already recorded READY or FAILED is left alone.
"""
from __future__ import annotations

import logging
import pathlib
import posixpath
import shutil
import tempfile

import grpc
from google.protobuf import field_mask_pb2

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail_common.ports import MEDIA_BUCKET, RAW_BUCKET, NotFoundError
from transcoder_svc import ffmpeg_graphs, packaging, probe
from transcoder_svc.jobs import outputs
from transcoder_svc.jobs.base import WorkerContext
from transcoder_svc.ladder import FAMILY_AUDIO_CODEC
from transcoder_svc.metrics import step

log = logging.getLogger("transcoder_svc")

A = video_pb2.AudioTrackStatus
UPDATE_ROUNDS = 5  # compare-and-set attempts against concurrent writers of the video


def track_folder(track: video_pb2.AudioTrack) -> str:
    """The folder name of a track version's files inside a family folder."""
    kind = video_pb2.AudioTrackKind.Name(track.kind).rsplit("_", 1)[-1].lower()
    return f"audio-{track.language}-{kind}-{track.version}"


def family_folders(video: video_pb2.Video) -> dict[str, str]:
    """codec family -> the folder of its manifests (videos/<id>/<folder>)."""
    return {m.codec: posixpath.dirname(m.object_key) for m in video.manifests if m.object_key}


def same_track(a: video_pb2.AudioTrack, b: video_pb2.AudioTrack) -> bool:
    return (a.language, a.kind) == (b.language, b.kind)


class AudioTrackJob:
    """Encodes one uploaded track for every family of the video and records it."""

    def __init__(self, ctx: WorkerContext, metadata: mpb_grpc.MetadataServiceStub, video: video_pb2.Video,
                 track: video_pb2.AudioTrack):
        self.ctx, self.metadata, self.video = ctx, metadata, video
        self.track = video_pb2.AudioTrack()
        self.track.CopyFrom(track)

    def run(self) -> video_pb2.AudioTrack | None:
        """The track as recorded (READY or FAILED); None when there was nothing to do."""
        done = next((t for t in self.video.audio_tracks if same_track(t, self.track)
                     and t.version == self.track.version and t.status != A.AUDIO_TRACK_STATUS_PROCESSING), None)
        if done is not None:
            log.info("audio track %s of %s already recorded (duplicate delivery)", track_folder(done), self.video.id)
            return None
        self.track.status = A.AUDIO_TRACK_STATUS_PROCESSING
        if self.record(self.track) is None:
            return None
        self.ctx.scratch.mkdir(parents=True, exist_ok=True)
        workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"{self.video.id}-audio-", dir=self.ctx.scratch))
        try:
            self.track.encodings.extend(self.encode(workdir))
            self.track.status = A.AUDIO_TRACK_STATUS_READY
        except probe.MediaError as exc:  # the file's fault: the track fails, the video plays on
            log.warning("audio track %s of %s failed: %s", track_folder(self.track), self.video.id, exc.reason)
            self.track.status, self.track.failure_reason = A.AUDIO_TRACK_STATUS_FAILED, exc.reason
            del self.track.encodings[:]
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        recorded = self.record(self.track, still_wanted=True)
        if recorded is not None:
            self.ctx.objects.delete(RAW_BUCKET, self.track.source_object_key)
        return recorded

    def encode(self, workdir: pathlib.Path) -> list[video_pb2.AudioTrackEncoding]:
        source = workdir / "source"
        try:
            self.ctx.objects.download_file(RAW_BUCKET, self.track.source_object_key, str(source))
        except NotFoundError:
            raise probe.MediaError("the uploaded file is gone") from None
        stream = probe.probe_audio(str(source))
        duration = self.video.duration_seconds
        if duration <= 0:
            raise probe.MediaError(f"video {self.video.id} has no duration to align the track to")
        encodings = []
        for family, folder in sorted(family_folders(self.video).items()):
            codec = FAMILY_AUDIO_CODEC.get(family)
            if codec is None:
                continue
            out = workdir / family
            with step("encode audio track", **{"longtail.codec": family}):
                ffmpeg_graphs.encode_audio_track(str(source), stream, str(out), codec, duration,
                                                 timeout_s=self.ctx.cfg.platform.transcode_timeout_s)
            playlist = packaging.read_media_playlist(out / "playlist.m3u8")
            if not playlist.segments or not playlist.init:
                raise probe.MediaError("encoding the audio track produced no segments")
            peak, _avg = packaging._bitrates(out, playlist)
            base = f"{folder}/{track_folder(self.track)}"
            for path in sorted(p for p in out.iterdir() if p.is_file()):
                outputs.put_file(self.ctx.objects, f"{base}/{path.name}", str(path))
            encodings.append(video_pb2.AudioTrackEncoding(
                codec=family, playlist_object_key=f"{base}/playlist.m3u8",
                codecs=packaging.AUDIO_CODECS_STRING[codec], bitrate_bps=peak))
        if not encodings:
            raise probe.MediaError(f"video {self.video.id} has no codec family to add the track to")
        return encodings

    def record(self, track: video_pb2.AudioTrack, still_wanted: bool = False) -> video_pb2.AudioTrack | None:
        """Puts `track` in the video's audio_tracks (replacing the one of its language and
        kind, whose files are then removed), compare-and-set; None if the video is gone, or
        (`still_wanted`) if its owner deleted the track while it was encoded."""
        for _round in range(UPDATE_ROUNDS):
            try:
                video = self.metadata.GetVideo(mpb.GetVideoRequest(id=self.video.id), timeout=30)
                if still_wanted and not any(same_track(t, track) and t.version == track.version
                                            for t in video.audio_tracks):
                    self.remove_files(track)
                    log.info("audio track %s of %s was deleted while encoded; removed its files",
                             track_folder(track), self.video.id)
                    return None
                replaced = [t for t in video.audio_tracks if same_track(t, track) and t.version != track.version]
                tracks = [t for t in video.audio_tracks if not same_track(t, track)] + [track]
                patch = video_pb2.Video(id=video.id, etag=video.etag, audio_tracks=tracks)
                self.metadata.UpdateVideo(mpb.UpdateVideoRequest(
                    video=patch, update_mask=field_mask_pb2.FieldMask(paths=["audio_tracks"])), timeout=30)
                for old in replaced:
                    self.remove_files(old)
                return track
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.ABORTED:
                    continue
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    self.remove_files(track)
                    log.info("video %s was deleted while its audio track was made; removed it", self.video.id)
                    return None
                raise
        raise RuntimeError(f"video {self.video.id}: too many concurrent updates while recording an audio track")

    def remove_files(self, track: video_pb2.AudioTrack) -> None:
        for encoding in track.encodings:
            folder = posixpath.dirname(encoding.playlist_object_key)
            for key in self.ctx.objects.list_keys(MEDIA_BUCKET, folder + "/"):
                self.ctx.objects.delete(MEDIA_BUCKET, key)
        if track.source_object_key:
            self.ctx.objects.delete(RAW_BUCKET, track.source_object_key)
