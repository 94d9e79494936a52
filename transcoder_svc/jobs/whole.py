"""A first encode of a whole video: the raw upload, probed and checked against the limits,
encoded at its ladder in every configured family (or split into chunk jobs when long)."""
from __future__ import annotations

import pathlib

from opentelemetry import trace

from longtail.events.v1 import events_pb2
from transcoder_svc import ffmpeg_graphs, ladder, probe
from transcoder_svc.jobs import chunked
from transcoder_svc.jobs.base import Job, Result, WorkerContext, rate_control
from transcoder_svc.jobs.families import codec_families
from transcoder_svc.metrics import step


class WholeVideoJob(Job):
    """Encodes the ladder of `families` from one source in one ffmpeg run and stores it,
    or publishes chunk jobs for a long video. Subclasses choose the source and ladder."""

    def __init__(self, ctx: WorkerContext, request: events_pb2.TranscodeRequest):
        super().__init__(ctx, request)
        self.families = codec_families(ctx.cfg)

    def run(self) -> Result | None:
        return self.in_scratch(f"{self.video_id}-", f"video {self.video_id}", self.encode_or_split)

    def encode_or_split(self, workdir: pathlib.Path) -> Result | None:
        source, info, rungs = self.prepare(workdir)
        if chunked.worth_splitting(self.ctx.cfg, info, rungs):
            chunked.publish_chunk_jobs(self.ctx, self.request, info, rungs, self.families, self.added)
            return None
        out_dir = workdir / "out"
        output = self.encode_ladder(source, out_dir, info, rungs, self.families)
        return self.store(out_dir, output, output.rungs or rungs)  # as encoded: the top rung check may lower its CRF

    def prepare(self, workdir: pathlib.Path) -> tuple[pathlib.Path, probe.MediaInfo, list[ladder.Rung]]:
        """(local source, its probe, the rungs to encode): the raw upload within the limits,
        at its default ladder (transcoder.rate_control) or, with per-title on, the ladder its
        VMAF analysis chose."""
        tc = self.ctx.cfg.transcoder
        limits = probe.Limits(max_duration_s=tc.max_duration_s, max_long_side=tc.max_long_side,
                              max_short_side=tc.max_short_side, max_source_bytes=tc.max_source_bytes)
        raw = self.ctx.objects.stat(self.request.raw_bucket, self.request.raw_object_key)
        if raw is not None and raw.size > limits.max_source_bytes:
            # too big to be worth even downloading
            raise probe.MediaError(f"the file is {raw.size / 1e9:.2f} GB; the limit is "
                                   f"{limits.max_source_bytes / 1e9:.2f} GB")
        source = self.download_source(self.request.raw_bucket, self.request.raw_object_key, workdir)
        info = probe_step(source)
        source_bytes = source.stat().st_size
        trace.get_current_span().set_attributes({
            "longtail.source_bytes": source_bytes, "longtail.duration_seconds": info.duration_s,
            "longtail.source_resolution": f"{info.width}x{info.height}"})
        probe.check_limits(info, source_bytes, limits)
        if tc.crop_black_bars and not tc.per_title:  # (per-title's analysis scores the whole frame)
            info = crop_step(source, info, workdir)
        # Per-title analysis chooses average bitrates under the fixed ladder's (its ceilings).
        rungs = ladder.ladder_for(info, "average" if tc.per_title else rate_control(self.ctx.cfg))
        if tc.per_title and rungs:
            from transcoder_svc import pertitle  # VMAF analysis; only loaded when enabled

            with step("per-title analysis", **{"longtail.codec_families": self.families}):
                rungs = pertitle.per_title_ladder(str(source), info, rungs, families=self.families,
                                                  workdir=str(workdir / "pertitle"),
                                                  timeout_s=self.ctx.cfg.platform.transcode_timeout_s).rungs
        return source, info, rungs


def crop_step(source: pathlib.Path, info: probe.MediaInfo, workdir: pathlib.Path) -> probe.MediaInfo:
    """`info` with the picture inside the source's black bars, if any (the ladder then encodes
    only that: ffmpeg_graphs.detect_crop), as the job's "crop detection" step."""
    with step("crop detection") as span:
        info = ffmpeg_graphs.detect_crop(str(source), info, str(workdir))
        span.set_attribute("longtail.crop", "x".join(map(str, info.crop)) if info.crop else "none")
    return info


def probe_step(source: pathlib.Path) -> probe.MediaInfo:
    """`probe.probe(source)` as the job's "probe" step, with what it found."""
    with step("probe") as span:
        info = probe.probe(str(source))
        span.set_attributes({"longtail.duration_seconds": info.duration_s,
                             "longtail.source_resolution": f"{info.width}x{info.height}",
                             "longtail.frame_rate": info.frame_rate, "longtail.has_audio": info.has_audio})
    return info
