"""Download files of a video, as Mux's static renditions: a progressive MP4 (moov first) of an
H.264 rendition with its AAC audio, and the audio alone as an M4A, remuxed from the stored
CMAF renditions (streams copied, never re-encoded), stored under videos/<id>/downloads/ and
recorded in the video's `downloads`; metadata_svc then announces the change on
`video.changed`, so every gateway's cached watch payload lists them at once.

A request names (kind, height); height 0 is the top H.264 rung, and a height the video lacks
takes the largest rung below it (the gateway accepts only heights the video has). It works
from the video's renditions once READY, and from the first encode's stored result before
(the requests for every video are published right after that encode). Idempotent: a file
already stored is recorded again, not made again.
"""
from __future__ import annotations

import logging
import pathlib
import shutil
import tempfile
from dataclasses import dataclass

import grpc
from google.protobuf import field_mask_pb2

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail_common.ports import MEDIA_BUCKET
from longtail_common.proto_enums import DOWNLOAD_KIND_NAMES
from transcoder_svc import ffmpeg_graphs, probe
from transcoder_svc.jobs import outputs
from transcoder_svc.jobs.base import WorkerContext
from transcoder_svc.jobs.families import H264
from transcoder_svc.metrics import step

log = logging.getLogger("transcoder_svc")

MP4, M4A = video_pb2.DOWNLOAD_KIND_MP4, video_pb2.DOWNLOAD_KIND_M4A
CONTENT_TYPES = {MP4: "video/mp4", M4A: "audio/mp4"}
UPDATE_ROUNDS = 5  # compare-and-set attempts against concurrent writers of the video


def download_key(video_id: str, kind: int, height: int) -> str:
    name = f"{height}p.mp4" if kind == MP4 else "audio.m4a"
    return f"{outputs.video_prefix(video_id)}/downloads/{name}"


def has_audio(rendition: video_pb2.Rendition) -> bool:
    return any(c.strip().startswith("mp4a") for c in rendition.codecs.split(","))


def pick_rendition(renditions: list[video_pb2.Rendition], height: int) -> video_pb2.Rendition | None:
    """The H.264 rendition an MP4 of `height` is made from: the top one for 0, else the
    largest at most `height` (the smallest if every one is taller)."""
    h264 = sorted((r for r in renditions if r.codec == H264), key=lambda r: (r.width * r.height, r.bitrate_bps))
    if not h264:
        return None
    if height <= 0:
        return h264[-1]
    fitting = [r for r in h264 if r.height <= height]
    return fitting[-1] if fitting else h264[0]


@dataclass(frozen=True)
class Wanted:
    kind: int
    height: int  # 0 for an M4A
    rendition: video_pb2.Rendition  # what it is remuxed from (an M4A: any rendition of the family)

    @property
    def what(self) -> str:
        return f"{self.height}p MP4" if self.kind == MP4 else "M4A"


class DownloadsJob:
    """Makes the asked-for download files of one video and records them in its metadata."""

    def __init__(self, ctx: WorkerContext, metadata: mpb_grpc.MetadataServiceStub, video: video_pb2.Video,
                 asked: list[video_pb2.Download]):
        self.ctx, self.metadata, self.video, self.asked = ctx, metadata, video, asked

    def renditions(self) -> list[video_pb2.Rendition]:
        """The video's renditions: its own once READY, the first encode's stored result before."""
        if self.video.renditions:
            return list(self.video.renditions)
        stored = outputs.stored_result(self.ctx.objects, self.video.id, H264)
        return list(stored.renditions) if stored is not None and stored.success else []

    def wanted(self) -> list[Wanted]:
        renditions = self.renditions()
        out: dict[tuple[int, int], Wanted] = {}
        for asked in self.asked:
            source = pick_rendition(renditions, asked.height if asked.kind == MP4 else 0)
            if source is None:
                log.info("downloads of %s: no H.264 rendition stored; nothing to make", self.video.id)
            elif asked.kind == M4A and not has_audio(source):
                log.info("downloads of %s: it has no audio; no M4A", self.video.id)
            elif asked.kind in (MP4, M4A):
                height = source.height if asked.kind == MP4 else 0
                out[asked.kind, height] = Wanted(asked.kind, height, source)
        return list(out.values())

    def run(self) -> list[video_pb2.Download]:
        """Makes what is missing, records everything asked for; the downloads recorded."""
        wanted = self.wanted()
        if not wanted:
            return []
        self.ctx.scratch.mkdir(parents=True, exist_ok=True)
        workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"{self.video.id}-dl-", dir=self.ctx.scratch))
        try:
            made = [self.make(w, workdir) for w in wanted]
        except probe.MediaError as exc:  # a rendition that does not read back: nothing to retry
            log.warning("downloads of %s failed: %s", self.video.id, exc.reason)
            return []
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return self.record(made)

    def make(self, wanted: Wanted, workdir: pathlib.Path) -> video_pb2.Download:
        key = download_key(self.video.id, wanted.kind, wanted.height)
        stored = self.ctx.objects.stat(MEDIA_BUCKET, key)
        if stored is None:
            with step("make download", **{"longtail.download": wanted.what}):
                path = self.remux(wanted, workdir)
                outputs.with_retries(f"storing {key}", lambda: self.ctx.objects.put_file(
                    MEDIA_BUCKET, key, str(path), content_type=CONTENT_TYPES[wanted.kind]))
            stored = self.ctx.objects.stat(MEDIA_BUCKET, key)
        log.info("download %s of %s: %d bytes", wanted.what, self.video.id, stored.size)
        return video_pb2.Download(kind=wanted.kind, height=wanted.height, size_bytes=stored.size, object_key=key)

    def remux(self, wanted: Wanted, workdir: pathlib.Path) -> pathlib.Path:
        """The file, remuxed from the rendition's (and its family's audio) stored segments."""
        timeout = self.ctx.cfg.platform.transcode_timeout_s
        family_folder = wanted.rendition.object_key.rsplit("/", 2)[0]  # videos/<id>/<family folder>
        folder = workdir / DOWNLOAD_KIND_NAMES[wanted.kind] / str(wanted.height)
        audio = outputs.download_folder(self.ctx.objects, self.video.id, f"{family_folder}/audio", folder) \
            if has_audio(wanted.rendition) else None
        if wanted.kind == M4A:
            if audio is None:
                raise probe.MediaError(f"the audio of {family_folder} is missing")
            path = folder / "audio.m4a"
            ffmpeg_graphs.remux_audio(str(audio), str(path), timeout_s=timeout)
            return path
        picture = outputs.download_folder(self.ctx.objects, self.video.id,
                                          wanted.rendition.object_key.rsplit("/", 1)[0], folder)
        if picture is None:
            raise probe.MediaError(f"the rendition {wanted.rendition.object_key} is missing")
        path = folder / f"{wanted.height}p.mp4"
        ffmpeg_graphs.remux_rendition(str(picture), str(audio) if audio else None, str(path), timeout_s=timeout)
        return path

    def record(self, made: list[video_pb2.Download]) -> list[video_pb2.Download]:
        """Adds `made` to the video's downloads (replacing ones of the same kind and height),
        a compare-and-set retried against concurrent writers. A video deleted meanwhile loses
        the files too (delete wins)."""
        new = {(d.kind, d.height) for d in made}
        for _round in range(UPDATE_ROUNDS):
            try:
                video = self.metadata.GetVideo(mpb.GetVideoRequest(id=self.video.id), timeout=30)
                downloads = [d for d in video.downloads if (d.kind, d.height) not in new] + made
                patch = video_pb2.Video(id=video.id, etag=video.etag, downloads=downloads)
                self.metadata.UpdateVideo(mpb.UpdateVideoRequest(
                    video=patch, update_mask=field_mask_pb2.FieldMask(paths=["downloads"])), timeout=30)
                return downloads
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.ABORTED:
                    continue
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    for d in made:
                        self.ctx.objects.delete(MEDIA_BUCKET, d.object_key)
                    log.info("video %s was deleted while its downloads were made; removed them", self.video.id)
                    return []
                raise
        raise RuntimeError(f"video {self.video.id}: too many concurrent updates while recording its downloads")


def auto_downloads(cfg) -> list[video_pb2.Download]:
    """What downloads.auto_* ask for every video (empty: none)."""
    asked = [video_pb2.Download(kind=MP4, height=int(h)) for h in cfg.downloads.auto_mp4_heights]
    if cfg.downloads.auto_m4a:
        asked.append(video_pb2.Download(kind=M4A))
    return asked
