"""What every transcoder job shares: the worker's context, a scratch folder per job, the
source download, the timed ladder encode and the failed result a MediaError becomes."""
from __future__ import annotations

import dataclasses
import logging
import pathlib
import shutil
import tempfile
import time
from typing import Callable

from longtail.events.v1 import events_pb2
from longtail_common.config import Config
from longtail_common.ports import ObjectStore, TopicProducer
from transcoder_svc import media
from transcoder_svc.jobs import outputs
from transcoder_svc.metrics import record_encode_time

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
        return self.cfg.data_path / "scratch"


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
        except media.MediaError as exc:
            log.warning("%s failed: %s", what, exc.reason)
            return outputs.failed_result(self.video_id, exc.reason, self.ctx.worker_id, self.added)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def download_source(self, bucket: str, key: str, workdir: pathlib.Path) -> pathlib.Path:
        source = workdir / "source"
        self.ctx.objects.download_file(bucket, key, str(source))
        return source

    def thumbnails(self) -> dict:
        """An upgrade keeps the video's poster and storyboard: only a first encode makes them."""
        return {"storyboard": self.ctx.cfg.transcoder.storyboard and not self.added, "poster": not self.added}

    def encode_ladder(self, source: pathlib.Path, out_dir: pathlib.Path, info: media.MediaInfo,
                      rungs: list[media.Rung], families: list[str]) -> media.TranscodeOutput:
        """Every rung of every family from one ffmpeg run, timed into the encode metric."""
        started = time.perf_counter()
        output = media.transcode(str(source), str(out_dir), info, rungs, families=families,
                                 timeout_s=self.ctx.cfg.platform.transcode_timeout_s, **self.thumbnails())
        record_encode_time(time.perf_counter() - started, info.duration_s, rungs, families)
        return output

    def store(self, out_dir: pathlib.Path, output: media.TranscodeOutput, rungs: list[media.Rung]) -> Result:
        return outputs.store_outputs(self.ctx.objects, self.video_id, out_dir, output, rungs, self.ctx.worker_id,
                                     added=self.added)
