"""A codec upgrade: a READY video gains families (e.g. AV1 once placement expects it to be
popular), encoded at the ladder it was first encoded at, and a better H.264 (the slower
transcoder.popular_x264_preset) under videos/<id>/h264-<preset>/, which replaces the first
H.264 in the video's listing (the first encode's files stay: players mid-video use them).

It encodes from the original upload while it is kept, else from the top H.264 rendition.
Its result is applied by placement, which pushes the new files to the video's edges before
the metadata lists them. A failed upgrade never touches the video.
"""
from __future__ import annotations

import logging
import pathlib

from opentelemetry import trace

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import video_pb2
from longtail_common.ports import RAW_BUCKET
from transcoder_svc import ffmpeg_graphs, ladder, probe
from transcoder_svc.jobs import outputs
from transcoder_svc.jobs.base import Result, WorkerContext, popular_x264_preset, rate_control
from transcoder_svc.jobs.families import H264
from transcoder_svc.jobs.whole import WholeVideoJob, crop_step, probe_step
from transcoder_svc.metrics import files_and_bytes, step

log = logging.getLogger("transcoder_svc")

ORIGINAL_UPLOAD = "original upload"  # the upgrade's source while the upload is kept (else a rendition)


class CodecUpgradeJob(WholeVideoJob):
    """The whole-video encode of only the `families` a video lacks, on its recorded ladder,
    without poster or storyboard (the video keeps its own)."""

    def __init__(self, ctx: WorkerContext, request: events_pb2.TranscodeRequest, video: video_pb2.Video,
                 families: list[str]):
        super().__init__(ctx, request)
        self.video = video
        # A video expected to be popular also gets a better H.264 (a slower preset), unless
        # it has it already: every player that does not take the added families plays H.264.
        # (Only from the original upload: `prepare`.)
        preset = popular_x264_preset(ctx.cfg)
        folder = f"/{outputs.reencoded_folder(preset)}/"
        if preset and not any(m.codec == H264 and folder in m.object_key for m in video.manifests):
            families = [*families, H264]
        self.families = self.added = families

    def run(self) -> Result | None:
        return self.in_scratch(f"{self.video_id}-up-", f"codec upgrade of {self.video_id} to {self.families}",
                               self.encode_or_split)

    def prepare(self, workdir: pathlib.Path) -> tuple[pathlib.Path, probe.MediaInfo, list[ladder.Rung]]:
        source, origin = self.source_file(workdir)
        if origin != ORIGINAL_UPLOAD and H264 in self.families and len(self.families) > 1:
            # H.264 from its own rendition would only lose quality: the added families only.
            self.families = self.added = [f for f in self.families if f != H264]
        info = probe_step(source)
        rungs = outputs.recorded_ladder(self.ctx.objects, self.video_id)
        if origin == ORIGINAL_UPLOAD and self.ctx.cfg.transcoder.crop_black_bars and not self.ctx.cfg.transcoder.per_title:
            # the first encode's crop (the same detection on the same file; a rendition read
            # back has no bars left), unless its recorded rungs show the whole frame
            cropped = crop_step(source, info, workdir)
            info = cropped if rungs is None or _shows(rungs[-1], cropped) else info
        if rungs is None:  # encoded before ladders were recorded: the source's default ladder
            rungs = ladder.ladder_for(info, rate_control(self.ctx.cfg))
        trace.get_current_span().set_attribute("longtail.upgrade_source", origin)
        if self.ctx.cfg.transcoder.per_title and rungs and origin == ORIGINAL_UPLOAD and not any(r.crf for r in rungs):
            # The new families' rates and VMAF, as the first encode chose the others'. (Not
            # from a rendition read back: that scores against a copy, not the source. Not for
            # constant-quality rungs: each family has its CRF, ladder.FAMILY_CRF.)
            from transcoder_svc import pertitle  # VMAF analysis; only loaded when enabled

            with step("per-title analysis", **{"longtail.codec_families": self.families}):
                rungs = pertitle.per_title_families(str(source), info, rungs, self.families,
                                                    workdir=str(workdir / "vmaf"),
                                                    timeout_s=self.ctx.cfg.platform.transcode_timeout_s)
        log.info("codec upgrade of %s to %s, from the %s", self.video_id, "+".join(self.families), origin)
        return source, info, rungs

    def source_file(self, workdir: pathlib.Path) -> tuple[pathlib.Path, str]:
        """(local source file, which one): the original upload if it is still kept, else the
        largest H.264 rendition read back into one MP4 (one generation of loss, at that
        rendition's quality: the best the platform still holds)."""
        video = self.video
        raw_bucket, raw_key = self.request.raw_bucket or RAW_BUCKET, self.request.raw_object_key or video.raw_object_key
        if raw_key and self.ctx.objects.stat(raw_bucket, raw_key) is not None:
            return self.download_source(raw_bucket, raw_key, workdir), ORIGINAL_UPLOAD
        h264 = [r for r in video.renditions if r.codec == H264]
        if not h264:
            raise probe.MediaError("neither the original upload nor an H.264 rendition is left to encode from")
        top = max(h264, key=lambda r: (r.width * r.height, r.bitrate_bps))
        with step("read back rendition", **{"longtail.rendition": f"{top.height}p"}) as span:
            video_playlist = outputs.download_folder(self.ctx.objects, video.id, top.object_key.rsplit("/", 1)[0],
                                                     workdir)
            if video_playlist is None:
                raise probe.MediaError(f"the top H.264 rendition ({top.object_key}) is missing")
            audio_playlist = outputs.download_folder(self.ctx.objects, video.id,
                                                     f"{outputs.media_prefix(video.id)}/audio", workdir)
            objects, size = files_and_bytes(workdir / "top")
            span.set_attributes({"longtail.objects": objects, "longtail.bytes": size})
            source = workdir / "source.mp4"
            ffmpeg_graphs.remux_rendition(str(video_playlist), str(audio_playlist) if audio_playlist else None,
                                          str(source), timeout_s=self.ctx.cfg.platform.transcode_timeout_s)
        return source, f"{top.height}p H.264 rendition"



def _shows(rung: ladder.Rung, info: probe.MediaInfo) -> bool:
    """Whether `rung`'s picture has the shape of `info`'s (its crop when set)."""
    w, h = (info.crop[0], info.crop[1]) if info.crop else (info.width, info.height)
    return abs(rung.width / rung.height - w / h) < 0.02
