"""Chunked transcoding of a long video: split it into chunk jobs, encode one chunk per job,
and join them all once the last chunk is in.

The chunks live under videos/<id>/chunks/: plan.json holds what every chunk must agree on
(probe, rungs, families); each chunk writes its files then a _done marker; whoever sees
every marker joins and packages (a racing finisher may join too: both write the same files).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time
import zlib
from typing import Callable

from opentelemetry import trace

from longtail.events.v1 import events_pb2
from longtail_common.config import Config
from longtail_common.consumer import PermanentError
from longtail_common.ports import MEDIA_BUCKET, TOPIC_TRANSCODE_REQUESTS, NotFoundError, validate_id
from transcoder_svc import ffmpeg_graphs, ladder, probe
from transcoder_svc.jobs import outputs
from transcoder_svc.jobs.base import Job, Result, WorkerContext
from transcoder_svc.metrics import files_and_bytes, record_encode_time, step

log = logging.getLogger("transcoder_svc")


def chunks_prefix(video_id: str) -> str:
    return f"videos/{validate_id(video_id, 'video id')}/chunks"


def worth_splitting(cfg: Config, info: probe.MediaInfo, rungs: list[ladder.Rung]) -> bool:
    """Long enough (and chunking on) that chunk jobs on several workers beat one encode."""
    min_s = cfg.transcoder.chunk_min_duration_s
    return min_s > 0 and info.duration_s > min_s and bool(rungs)


@dataclasses.dataclass
class ChunkPlan:
    """What every chunk of a video must agree on: stored as plan.json by the split."""
    info: probe.MediaInfo
    rungs: list[ladder.Rung]
    families: list[str]  # the families encoded: all of a first encode, or the upgrade's new ones
    added: list[str]  # a codec upgrade's families (the join publishes them as an upgrade), else empty
    chunks: list[tuple[float, float]]  # (start, duration) seconds of each chunk

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ChunkPlan:
        plan = json.loads(raw)
        crop = plan["info"].get("crop")
        info = probe.MediaInfo(**{**plan["info"], "crop": tuple(crop) if crop else None})
        return cls(info=info, rungs=[ladder.Rung(**r) for r in plan["rungs"]],
                   families=plan["families"], added=plan.get("added", []), chunks=plan["chunks"])


def publish_chunk_jobs(ctx: WorkerContext, request: events_pb2.TranscodeRequest, info: probe.MediaInfo,
                       rungs: list[ladder.Rung], families: list[str], added: list[str]) -> None:
    """Stores the video's chunk plan and publishes one chunk job per chunk."""
    video_id = request.video_id
    chunks = ladder.chunk_plan(info.duration_s, ctx.cfg.transcoder.chunk_seconds)
    plan = ChunkPlan(info=info, rungs=list(rungs), families=list(families), added=list(added), chunks=chunks)
    ctx.objects.put_bytes(MEDIA_BUCKET, f"{chunks_prefix(video_id)}/plan.json", plan.to_json())
    partitions = ctx.request_partitions
    first = zlib.crc32(video_id.encode()) % partitions if partitions else 0
    for i, (start, length) in enumerate(chunks):
        job = events_pb2.TranscodeRequest()
        job.CopyFrom(request)
        job.chunk.CopyFrom(events_pb2.TranscodeChunk(index=i, count=len(chunks), start_seconds=start,
                                                     duration_seconds=length))
        ctx.producer.publish(TOPIC_TRANSCODE_REQUESTS, job.SerializeToString(), key=f"{video_id}:{i}".encode(),
                             partition=(first + i) % partitions if partitions else None)
    log.info("video %s: %.0f s split into %d chunk jobs", video_id, info.duration_s, len(chunks))


class ChunkJob(Job):
    """One chunk job: encode the chunk (unless an earlier delivery stored it), and if it is
    the last one in, join every chunk into the packaged video and store it."""

    def __init__(self, ctx: WorkerContext, request: events_pb2.TranscodeRequest,
                 fetch_source: Callable[[pathlib.Path], pathlib.Path] | None = None):
        """`fetch_source(workdir) -> local path` gets the source (default: the raw upload;
        a codec upgrade passes its own, which may read the top rendition back)."""
        super().__init__(ctx, request)
        self.chunk = request.chunk
        self.prefix = chunks_prefix(self.video_id)
        self.fetch_source = fetch_source or (
            lambda workdir: self.download_source(request.raw_bucket, request.raw_object_key, workdir))

    def run(self) -> Result | None:
        try:
            plan = ChunkPlan.from_json(self.ctx.objects.get_bytes(MEDIA_BUCKET, f"{self.prefix}/plan.json"))
        except NotFoundError as exc:
            raise PermanentError(f"chunk job for {self.video_id} without a plan") from exc
        self.added = plan.added
        chunk = self.chunk
        span = trace.get_current_span()
        span.update_name(f"{'codec upgrade' if plan.added else 'transcode'} chunk {chunk.index + 1}/{chunk.count}")
        span.set_attributes({"longtail.chunk.index": chunk.index, "longtail.chunk.count": chunk.count,
                             "longtail.chunk.start_seconds": chunk.start_seconds})
        return self.in_scratch(f"{self.video_id}-c{chunk.index}-", f"video {self.video_id} chunk {chunk.index}",
                               lambda workdir: self._encode_then_join(workdir, plan))

    def _encode_then_join(self, workdir: pathlib.Path, plan: ChunkPlan) -> Result | None:
        source = None
        if self.ctx.objects.stat(MEDIA_BUCKET, f"{self._chunk_folder(self.chunk.index)}/_done") is None:
            source = self.fetch_source(workdir)
            self._encode_chunk(source, workdir, plan)
        else:  # a redelivery after the chunk was stored: only the join may be left to do
            trace.get_current_span().add_event("retry", {"longtail.retry.what": "chunk job redelivered",
                                                         "longtail.retry.skipped": "encode (already stored)"})
        done = sum(1 for k in self.ctx.objects.list_keys(MEDIA_BUCKET, self.prefix + "/") if k.endswith("/_done"))
        if done < self.chunk.count:
            return None  # a later chunk's worker joins
        trace.get_current_span().add_event("joining chunks", {"longtail.chunk.count": self.chunk.count})
        chunks = self._download_chunks(workdir, plan)
        if source is None:
            source = self.fetch_source(workdir)
        out_dir = workdir / "out"
        output = ffmpeg_graphs.join_chunks(chunks, str(source), str(out_dir), plan.info, plan.rungs, plan.families,
                                   timeout_s=self.ctx.cfg.platform.transcode_timeout_s, **self.thumbnails())
        result = self.store(out_dir, output, plan.rungs)
        with step("delete chunk files") as span:  # scratch once packaged
            keys = list(self.ctx.objects.list_keys(MEDIA_BUCKET, self.prefix + "/"))
            for key in keys:
                self.ctx.objects.delete(MEDIA_BUCKET, key)
            span.set_attribute("longtail.objects", len(keys))
        return result

    def _chunk_folder(self, index: int) -> str:
        return f"{self.prefix}/{index:05d}"

    def _encode_chunk(self, source: pathlib.Path, workdir: pathlib.Path, plan: ChunkPlan) -> None:
        """Encodes this chunk at every rung of every family, stores the files, then its _done marker."""
        chunk, info = self.chunk, plan.info
        started = time.perf_counter()
        encoded = ffmpeg_graphs.encode_chunk(str(source), str(workdir / "chunk"), info, plan.rungs, plan.families,
                                     chunk.start_seconds, chunk.duration_seconds,
                                     timeout_s=self.ctx.cfg.platform.transcode_timeout_s, effort=self.effort(),
                                     top_check=self.top_check())
        chunk_s = chunk.duration_seconds or max(0.0, info.duration_s - chunk.start_seconds)
        record_encode_time(time.perf_counter() - started, chunk_s, plan.rungs, plan.families)
        folder = self._chunk_folder(chunk.index)
        with step("store chunk") as span:
            written = [outputs.put_file(self.ctx.objects, f"{folder}/{family}/{name}.mp4", path)
                       for family, by_rung in encoded.items() for name, path in by_rung.items()]
            outputs.with_retries(f"storing {folder}/_done",
                                lambda: self.ctx.objects.put_bytes(MEDIA_BUCKET, f"{folder}/_done", b""))
            span.set_attributes({"longtail.objects": len(written) + 1, "longtail.bytes": sum(written)})

    def _download_chunks(self, workdir: pathlib.Path, plan: ChunkPlan) -> list[dict[str, dict[str, str]]]:
        """Every chunk's files, local: per chunk, family -> rung name -> path."""
        chunks = []
        with step("download chunks") as span:
            for i in range(self.chunk.count):
                local: dict[str, dict[str, str]] = {}
                for family in plan.families:
                    for r in plan.rungs:
                        path = workdir / "chunks" / f"{i:05d}" / family / f"{r.name}.mp4"
                        path.parent.mkdir(parents=True, exist_ok=True)
                        key = f"{self._chunk_folder(i)}/{family}/{r.name}.mp4"
                        self.ctx.objects.download_file(MEDIA_BUCKET, key, str(path))
                        local.setdefault(family, {})[r.name] = str(path)
                chunks.append(local)
            objects, size = files_and_bytes(workdir / "chunks")
            span.set_attributes({"longtail.objects": objects, "longtail.bytes": size})
        return chunks
