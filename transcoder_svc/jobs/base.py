"""What every transcoder job shares: the worker's context, a scratch folder per job, the
source download, the timed ladder encode and the failed result a MediaError becomes. Each
step of a job is a child span of the job's span (transcoder_svc/metrics.step).

Scratch folders live in DATA_DIR/scratch/transcoder/<worker pid>/: a worker killed in the
middle of a job cannot remove its own, so each worker removes at start those of workers on
this machine that are gone (`remove_dead_workers_scratch`)."""
from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import shutil
import tempfile
import time
from typing import Callable

from longtail.events.v1 import events_pb2
from longtail_common.config import Config
from longtail_common.ports import ObjectStore, TopicProducer
from transcoder_svc import ffmpeg_graphs, ladder, packaging, probe
from transcoder_svc.jobs import outputs
from transcoder_svc.jobs.families import H264
from transcoder_svc.metrics import record_encode_time, step
from transcoder_svc.top_rung import TopRungCheck

log = logging.getLogger("transcoder_svc")

Result = events_pb2.TranscodeResult


@dataclasses.dataclass(frozen=True)
class WorkerContext:
    """What a job runs with: one per worker process."""
    cfg: Config
    objects: ObjectStore
    producer: TopicProducer
    worker_id: str
    # Partitions of transcode.requests: chunk jobs go to consecutive ones, so a video's
    # chunks spread over the group's members instead of where their keys hash to.
    request_partitions: int = 0

    @property
    def scratch(self) -> pathlib.Path:
        """This worker's scratch folder (its jobs' folders are made inside)."""
        return scratch_root(self.cfg) / str(os.getpid())


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


def rate_control(cfg: Config) -> str:
    """transcoder.rate_control, validated (ValueError naming the setting)."""
    if cfg.transcoder.rate_control not in ladder.RATE_CONTROLS:
        raise ValueError(f"transcoder.rate_control: {cfg.transcoder.rate_control!r} is not one of "
                         f"{list(ladder.RATE_CONTROLS)}")
    return cfg.transcoder.rate_control


def popular_x264_preset(cfg: Config) -> str:
    """transcoder.popular_x264_preset, validated: "" (no H.264 re-encode) or an x264 preset."""
    preset = cfg.transcoder.popular_x264_preset
    if preset and preset not in X264_PRESETS:
        raise ValueError(f"transcoder.popular_x264_preset: {preset!r} is not one of {list(X264_PRESETS)}")
    return preset


def popular_svtav1_preset(cfg: Config) -> int:
    """transcoder.popular_svtav1_preset, validated: an SVT-AV1 preset, 0..13."""
    preset = cfg.transcoder.popular_svtav1_preset
    if isinstance(preset, bool) or not isinstance(preset, int) or not 0 <= preset <= 13:
        raise ValueError(f"transcoder.popular_svtav1_preset: {preset!r} is not an SVT-AV1 preset (0..13)")
    return preset


def scratch_root(cfg: Config) -> pathlib.Path:
    """Where every worker on this machine keeps its scratch folder, named by its pid."""
    return cfg.data_path / "scratch" / "transcoder"


def remove_dead_workers_scratch(cfg: Config) -> list[pathlib.Path]:
    """Removes the scratch folders of workers that are gone (a killed job's files stay
    otherwise), keeping those of live workers; one with our own pid is a dead predecessor's.
    Called once at worker start; returns the folders removed."""
    root = scratch_root(cfg)
    if not root.is_dir():
        return []
    removed = []
    for folder in root.iterdir():
        if not folder.name.isdigit():
            continue  # not a worker's folder
        owner = int(folder.name)
        if owner != os.getpid() and _process_exists(owner):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        log.info("removed the scratch folders of %d worker(s) that are gone: %s", len(removed),
                 ", ".join(f.name for f in removed))
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class Job:
    """One TranscodeRequest's work. `run()` returns its TranscodeResult, or None when there
    is nothing to publish yet (split into chunk jobs, or a chunk done while others are
    pending). Idempotent: a redelivered request redoes or skips what is already stored."""

    def __init__(self, ctx: WorkerContext, request: events_pb2.TranscodeRequest):
        self.ctx = ctx
        self.request = request
        self.video_id = request.video_id
        self.added: list[str] = []  # the families a codec upgrade adds; empty for a first encode

    def run(self) -> Result | None:
        raise NotImplementedError

    def in_scratch(self, folder_prefix: str, what: str, work: Callable[[pathlib.Path], Result | None]) -> Result | None:
        """`work(workdir)` in a fresh scratch folder, removed after; a MediaError (bad input)
        becomes a failed result with its reason, logged as `what` failed."""
        self.ctx.scratch.mkdir(parents=True, exist_ok=True)
        workdir = pathlib.Path(tempfile.mkdtemp(prefix=folder_prefix, dir=self.ctx.scratch))
        try:
            return work(workdir)
        except probe.MediaError as exc:
            log.warning("%s failed: %s", what, exc.reason)
            return outputs.failed_result(self.video_id, exc.reason, self.ctx.worker_id, self.added)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def download_source(self, bucket: str, key: str, workdir: pathlib.Path) -> pathlib.Path:
        source = workdir / "source"
        with step("download source", **{"longtail.object_key": key}) as span:
            self.ctx.objects.download_file(bucket, key, str(source))
            span.set_attributes({"longtail.objects": 1, "longtail.bytes": source.stat().st_size})
        return source

    def thumbnails(self) -> dict:
        """An upgrade keeps the video's poster and storyboard: only a first encode makes them."""
        return {"storyboard": self.ctx.cfg.transcoder.storyboard and not self.added, "poster": not self.added}

    def effort(self) -> ffmpeg_graphs.Effort:
        """How hard the encoders work: a codec upgrade (placement expects the video to be
        popular, so many views share each byte saved) re-encodes H.264 and encodes the added
        families at the slower presets."""
        if self.added:
            return ffmpeg_graphs.Effort.popular(popular_x264_preset(self.ctx.cfg) or ffmpeg_graphs.X264_PRESET,
                                                popular_svtav1_preset(self.ctx.cfg))
        return ffmpeg_graphs.Effort()

    def top_check(self) -> TopRungCheck | None:
        """A first encode's top rung check (transcoder.top_rung_min_vmaf). Not an upgrade's:
        it encodes the recorded ladder, whose top CRF the first encode's check already set."""
        return None if self.added else TopRungCheck.from_config(self.ctx.cfg.transcoder)

    def encode_ladder(self, source: pathlib.Path, out_dir: pathlib.Path, info: probe.MediaInfo,
                      rungs: list[ladder.Rung], families: list[str]) -> packaging.TranscodeOutput:
        """Every rung of every family from one ffmpeg run, timed into the encode metric."""
        started = time.perf_counter()
        output = ffmpeg_graphs.transcode(str(source), str(out_dir), info, rungs, families=families,
                                         timeout_s=self.ctx.cfg.platform.transcode_timeout_s, effort=self.effort(),
                                         top_check=self.top_check(), **self.thumbnails())
        record_encode_time(time.perf_counter() - started, info.duration_s, rungs, families)
        return output

    def store(self, out_dir: pathlib.Path, output: packaging.TranscodeOutput, rungs: list[ladder.Rung]) -> Result:
        if self.added and H264 in self.added:
            # A re-encode of the family the video has: new files beside the ones players
            # and edges hold now, which the result replaces in the video's listing.
            outputs.move_family(out_dir, output, H264, outputs.reencoded_folder(popular_x264_preset(self.ctx.cfg)))
        return outputs.store_outputs(self.ctx.objects, self.video_id, out_dir, output, rungs, self.ctx.worker_id,
                                     added=self.added)
