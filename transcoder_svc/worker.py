"""The transcoder worker process: consume requests, transcode, store variants, publish."""
from __future__ import annotations

import json
import logging
import os
import dataclasses
import pathlib
import shutil
import socket
import tempfile
import time
import zlib

import grpc
from opentelemetry import trace
from google.protobuf import field_mask_pb2, json_format

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail.transcoder.v1 import transcoder_service_pb2 as pb
from longtail.transcoder.v1 import transcoder_service_pb2_grpc as pb_grpc
from longtail_common import telemetry
from longtail_common.config import Config, load_config
from longtail_common.consumer import PermanentError
from longtail_common.grpc_server import client_channel
from longtail_common.ports import (
    MEDIA_BUCKET,
    RAW_BUCKET,
    TOPIC_TRANSCODE_REQUESTS,
    TOPIC_TRANSCODE_RESULTS,
    Message,
    NotFoundError,
    validate_id,
)
from longtail_common.runtime import setup_logging
from longtail_common.service import Backends, Consumer, Needs, Running, run_service
from transcoder_svc import media

log = logging.getLogger("transcoder_svc")
S = video_pb2.VideoStatus
CONSUMER_GROUP = "transcoder"
CODEC = "h264"


def media_prefix(video_id: str, codec: str = CODEC) -> str:
    """Every variant of a video lives under videos/<id>/<codec>/<resolution>/."""
    return f"videos/{validate_id(video_id, 'video id')}/{codec}"


def known_families(names, what: str) -> list[str]:
    """`names` lower-cased, without repeats, in order; ValueError naming `what` if one is
    not a codec family the transcoder encodes."""
    families = list(dict.fromkeys(c.lower() for c in names))
    unknown = [c for c in families if c not in media.CODEC_FAMILIES]
    if unknown:
        raise ValueError(f"{what}: unknown codec families {unknown}; known: {list(media.CODEC_FAMILIES)}")
    return families


# Where a codec upgrade encodes from: the upload itself while it is kept (else a rendition).
ORIGINAL_UPLOAD = "original upload"


def codec_families(cfg: Config) -> list[str]:
    """H.264 first and always (every client plays it), then the configured extra families."""
    return known_families(["h264", *cfg.transcoder.codecs], "transcoder.codecs")


_encode_histogram: list = []


def record_encode_time(seconds: float, video_seconds: float, rungs, families) -> None:
    """longtail.transcode.seconds_per_video_minute per (codec, rendition). One decode feeds
    every encoder of the ladder in one ffmpeg graph, so a rendition's share of the wall
    time is apportioned by its pixel rate (width x height x fps); rendition="ladder" is
    the whole graph."""
    if video_seconds <= 0 or not rungs:
        return
    if not _encode_histogram:
        _encode_histogram.append(telemetry.meter().create_histogram(
            "longtail.transcode.seconds_per_video_minute",
            description="encode wall seconds per minute of video",
            explicit_bucket_boundaries_advisory=(1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600)))
    hist = _encode_histogram[0]
    per_minute = seconds / (video_seconds / 60.0)
    pixel_rates = [(f, r, r.width * r.height * r.frame_rate) for f in families for r in rungs]
    total = sum(rate for _, _, rate in pixel_rates) or 1.0
    for family, rung, rate in pixel_rates:
        hist.record(per_minute * rate / total, {"codec": family, "rendition": rung.name})
    hist.record(per_minute, {"codec": "+".join(families), "rendition": "ladder"})


def popular_codecs(cfg: Config) -> list[str]:
    """The families a codec upgrade may add (validated like `codecs`)."""
    return known_families(cfg.transcoder.popular_codecs, "transcoder.popular_codecs")


def ladder_key(video_id: str) -> str:
    # The rungs (sizes, H.264 target bitrates, per-title VMAF) the video was encoded at: a
    # codec upgrade encodes the same ladder. Named with a leading "_": not pushed to edges.
    return f"videos/{validate_id(video_id, 'video id')}/_ladder.json"


def chunks_prefix(video_id: str) -> str:
    return f"videos/{validate_id(video_id, 'video id')}/chunks"


def done_marker_key(video_id: str, codec: str = CODEC) -> str:
    # Written last: its presence means every variant is in place (and holds the result).
    # A codec upgrade writes its own, under the first family it adds.
    return f"{media_prefix(video_id, codec)}/_result.json"


class TranscodeJob:
    """Handles one TranscodeRequest; idempotent, so redelivery is safe."""

    def __init__(self, cfg: Config, objects, producer, metadata: mpb_grpc.MetadataServiceStub, status: dict,
                 request_partitions: int = 0):
        self.cfg = cfg
        # Partitions of transcode.requests: chunk jobs go to consecutive ones, so a video's
        # chunks spread over the group's members instead of where their keys hash to.
        self.request_partitions = request_partitions
        self.objects = objects
        self.producer = producer
        self.metadata = metadata
        self.status = status
        self.worker_id = status["worker_id"]
        self.scratch = cfg.data_path / "scratch"

    def __call__(self, message: Message) -> None:
        request = events_pb2.TranscodeRequest()
        try:
            request.ParseFromString(message.value)
            validate_id(request.video_id, "video id")
        except Exception as exc:  # noqa: BLE001
            raise PermanentError(f"malformed TranscodeRequest: {exc}") from exc
        video_id = request.video_id
        try:
            video = self.metadata.GetVideo(mpb.GetVideoRequest(id=video_id), timeout=30)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise PermanentError(f"video {video_id} does not exist") from exc
            raise
        if request.add_codecs:
            self._upgrade_job(request, video)
            return
        if video.status != S.VIDEO_STATUS_PROCESSING:
            log.info("video %s is %s: nothing to do (duplicate delivery)", video_id, S.Name(video.status))
            return
        existing = self._existing_result(video_id)
        if existing is not None:
            # Variants were all written by an earlier delivery; only the publish was lost.
            self._publish(existing)
            return
        result = self._run("transcode", video_id, {}, lambda: self._transcode(request))
        if result is None:  # split into chunk jobs, or a chunk done while others are pending
            return
        if not result.success:
            self._mark_failed(video, result.failure_reason)
        self._publish(result)

    def _run(self, span_name: str, video_id: str, attributes: dict, work):
        """`work()` as this worker's current job, in a span: its TranscodeResult, or None when
        there is nothing to publish yet. Counts the outcome for GetWorkerStatus."""
        self.status["current_video_id"] = video_id
        try:
            with telemetry.tracer().start_as_current_span(
                span_name, attributes={telemetry.VIDEO_ID: video_id, "longtail.worker_id": self.worker_id, **attributes}
            ) as span:
                result = work()
                if result is None:
                    return None
                span.set_attribute("longtail.renditions", [f"{r.codec}/{r.height}p" for r in result.renditions])
                if not result.success:
                    telemetry.record_error(span, result.failure_reason)
        finally:
            self.status["current_video_id"] = ""
        self.status["jobs_done" if result.success else "jobs_failed"] += 1
        return result

    def _existing_result(self, video_id: str, codec: str = CODEC) -> events_pb2.TranscodeResult | None:
        try:
            raw = self.objects.get_bytes(MEDIA_BUCKET, done_marker_key(video_id, codec))
        except NotFoundError:
            return None
        return json_format.Parse(raw, events_pb2.TranscodeResult())

    def _transcode(self, request: events_pb2.TranscodeRequest) -> events_pb2.TranscodeResult | None:
        video_id = request.video_id
        if request.HasField("chunk"):
            return self._transcode_chunk(request)
        tc = self.cfg.transcoder
        limits = media.Limits(max_duration_s=tc.max_duration_s, max_long_side=tc.max_long_side,
                              max_short_side=tc.max_short_side, max_source_bytes=tc.max_source_bytes)
        self.scratch.mkdir(parents=True, exist_ok=True)
        workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"{video_id}-", dir=self.scratch))
        try:
            source = workdir / "source"
            try:
                raw = self.objects.stat(request.raw_bucket, request.raw_object_key)
                if raw is not None and raw.size > limits.max_source_bytes:
                    # too big to be worth even downloading
                    raise media.MediaError(f"the file is {raw.size / 1e9:.2f} GB; the limit is "
                                           f"{limits.max_source_bytes / 1e9:.2f} GB")
                self.objects.download_file(request.raw_bucket, request.raw_object_key, str(source))
                info = media.probe(str(source))
                source_bytes = source.stat().st_size
                trace.get_current_span().set_attributes({
                    "longtail.source_bytes": source_bytes, "longtail.duration_seconds": info.duration_s,
                    "longtail.source_resolution": f"{info.width}x{info.height}"})
                media.check_limits(info, source_bytes, limits)
                rungs = media.ladder_for(info)
                families = codec_families(self.cfg)
                if tc.per_title and rungs:
                    from transcoder_svc import pertitle  # VMAF analysis; only loaded when enabled

                    rungs = pertitle.per_title_ladder(str(source), info, rungs, families=families,
                                                      workdir=str(workdir / "pertitle"),
                                                      timeout_s=self.cfg.platform.transcode_timeout_s).rungs
                if tc.chunk_min_duration_s > 0 and info.duration_s > tc.chunk_min_duration_s and rungs:
                    self._split(request, info, rungs)
                    return None
                out_dir = workdir / "out"
                out_dir.mkdir()
                started = time.perf_counter()
                output = media.transcode(
                    str(source), str(out_dir), info, rungs, families=families,
                    timeout_s=self.cfg.platform.transcode_timeout_s, storyboard=tc.storyboard,
                )
                record_encode_time(time.perf_counter() - started, info.duration_s, rungs, families)
            except media.MediaError as exc:
                log.warning("video %s failed: %s", video_id, exc.reason)
                return events_pb2.TranscodeResult(
                    video_id=video_id, success=False, failure_reason=exc.reason, worker_id=self.worker_id
                )
            return self._store_outputs(video_id, out_dir, output, rungs)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    # -- chunked transcoding ---------------------------------------------------------------
    # plan.json holds what every chunk must agree on (probe, rungs, families); each chunk
    # writes its files then a _done marker; whoever sees every marker joins and packages.

    def _split(self, request: events_pb2.TranscodeRequest, info: media.MediaInfo, rungs: list[media.Rung],
               added: list[str] = ()) -> None:
        """Chunk jobs for the video; `added`: the families of a codec upgrade (only those are
        encoded, and the join publishes them as an upgrade)."""
        video_id = request.video_id
        plan = media.chunk_plan(info.duration_s, self.cfg.transcoder.chunk_seconds)
        record = {"info": dataclasses.asdict(info), "rungs": [dataclasses.asdict(r) for r in rungs],
                  "families": list(added) or codec_families(self.cfg), "added": list(added), "chunks": plan}
        self.objects.put_bytes(MEDIA_BUCKET, f"{chunks_prefix(video_id)}/plan.json", json.dumps(record).encode())
        first = zlib.crc32(video_id.encode()) % self.request_partitions if self.request_partitions else 0
        for i, (start, length) in enumerate(plan):
            job = events_pb2.TranscodeRequest()
            job.CopyFrom(request)
            job.chunk.CopyFrom(events_pb2.TranscodeChunk(index=i, count=len(plan), start_seconds=start,
                                                         duration_seconds=length))
            partition = (first + i) % self.request_partitions if self.request_partitions else None
            self.producer.publish(TOPIC_TRANSCODE_REQUESTS, job.SerializeToString(), key=f"{video_id}:{i}".encode(),
                                  partition=partition)
        log.info("video %s: %.0f s split into %d chunk jobs", video_id, info.duration_s, len(plan))

    def _transcode_chunk(self, request: events_pb2.TranscodeRequest, fetch_source=None
                         ) -> events_pb2.TranscodeResult | None:
        """One chunk job; `fetch_source(workdir) -> local path` gets the source (default: the
        raw upload; a codec upgrade passes its own, which may read the top rendition back)."""
        video_id, chunk = request.video_id, request.chunk
        prefix = chunks_prefix(video_id)
        try:
            plan = json.loads(self.objects.get_bytes(MEDIA_BUCKET, f"{prefix}/plan.json"))
        except NotFoundError as exc:
            raise PermanentError(f"chunk job for {video_id} without a plan") from exc
        info = media.MediaInfo(**plan["info"])
        rungs = [media.Rung(**r) for r in plan["rungs"]]
        families, added = plan["families"], plan.get("added", [])
        span = trace.get_current_span()
        span.update_name(f"{'codec upgrade' if added else 'transcode'} chunk {chunk.index + 1}/{chunk.count}")
        span.set_attributes({"longtail.chunk.index": chunk.index, "longtail.chunk.count": chunk.count,
                             "longtail.chunk.start_seconds": chunk.start_seconds})
        timeout = self.cfg.platform.transcode_timeout_s
        self.scratch.mkdir(parents=True, exist_ok=True)
        workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"{video_id}-c{chunk.index}-", dir=self.scratch))
        if fetch_source is None:
            def fetch_source(into: pathlib.Path) -> pathlib.Path:
                self.objects.download_file(request.raw_bucket, request.raw_object_key, str(into / "source"))
                return into / "source"
        try:
            source = None
            try:
                if self.objects.stat(MEDIA_BUCKET, f"{prefix}/{chunk.index:05d}/_done") is None:
                    source = fetch_source(workdir)
                    started = time.perf_counter()
                    outputs = media.encode_chunk(str(source), str(workdir / "chunk"), info, rungs, families,
                                                 chunk.start_seconds, chunk.duration_seconds, timeout_s=timeout)
                    chunk_s = chunk.duration_seconds or max(0.0, info.duration_s - chunk.start_seconds)
                    record_encode_time(time.perf_counter() - started, chunk_s, rungs, families)
                    for family, by_rung in outputs.items():
                        for name, path in by_rung.items():
                            self.objects.put_file(MEDIA_BUCKET, f"{prefix}/{chunk.index:05d}/{family}/{name}.mp4", path)
                    self.objects.put_bytes(MEDIA_BUCKET, f"{prefix}/{chunk.index:05d}/_done", b"")
                done = sum(1 for k in self.objects.list_keys(MEDIA_BUCKET, prefix + "/") if k.endswith("/_done"))
                if done < chunk.count:
                    return None  # a later chunk's worker joins
                span.add_event("joining chunks", {"longtail.chunk.count": chunk.count})
                # every chunk is in: join (a racing finisher may join too; both write the same files)
                chunks = []
                for i in range(chunk.count):
                    local = {}
                    for family in families:
                        for r in rungs:
                            path = workdir / "chunks" / f"{i:05d}" / family / f"{r.name}.mp4"
                            path.parent.mkdir(parents=True, exist_ok=True)
                            self.objects.download_file(MEDIA_BUCKET, f"{prefix}/{i:05d}/{family}/{r.name}.mp4", str(path))
                            local.setdefault(family, {})[r.name] = str(path)
                    chunks.append(local)
                if source is None:
                    source = fetch_source(workdir)
                out_dir = workdir / "out"
                # an upgrade keeps the video's poster and storyboard
                output = media.join_chunks(chunks, str(source), str(out_dir), info, rungs, families, timeout_s=timeout,
                                           storyboard=self.cfg.transcoder.storyboard and not added,
                                           poster=not added)
            except media.MediaError as exc:
                log.warning("video %s chunk %d failed: %s", video_id, chunk.index, exc.reason)
                return events_pb2.TranscodeResult(
                    video_id=video_id, success=False, failure_reason=exc.reason, worker_id=self.worker_id,
                    added_codecs=added,
                )
            result = self._store_outputs(video_id, out_dir, output, rungs, added=added)
            for key in list(self.objects.list_keys(MEDIA_BUCKET, prefix + "/")):
                self.objects.delete(MEDIA_BUCKET, key)  # chunk files are scratch once packaged
            return result
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    # -- codec upgrade ---------------------------------------------------------------------
    # A READY video gains families (e.g. AV1 once placement expects it to be popular): the
    # same ladder, encoded from the original upload while it is kept, else from the top
    # H.264 rendition. Its result is applied by placement, which pushes the new files to the
    # video's edges before the metadata lists them. A failed upgrade never touches the video.

    def _upgrade_job(self, request: events_pb2.TranscodeRequest, video: video_pb2.Video) -> None:
        video_id = video.id
        try:
            asked = known_families(request.add_codecs, f"codec upgrade of {video_id}")
        except ValueError as exc:
            raise PermanentError(str(exc)) from exc
        if video.status != S.VIDEO_STATUS_READY:
            log.info("codec upgrade of %s skipped: it is %s, not READY", video_id, S.Name(video.status))
            return
        have = {m.codec for m in video.manifests}
        families = [c for c in asked if c not in have]
        if not families:
            log.info("codec upgrade of %s: it already has %s", video_id, asked)
            return
        existing = self._existing_result(video_id, families[0])
        if existing is not None:  # encoded and stored by an earlier delivery; only the publish was lost
            self._publish(existing)
            return
        if request.HasField("chunk"):
            def work():
                return self._transcode_chunk(request, fetch_source=lambda into: self._upgrade_source(request, video, into)[0])
        else:
            def work():
                return self._upgrade(request, video, families)
        result = self._run("codec upgrade", video_id, {"longtail.add_codecs": families}, work)
        if result is not None:  # (a failed upgrade leaves the video as it is: placement only logs it)
            self._publish(result)

    def _upgrade(self, request: events_pb2.TranscodeRequest, video: video_pb2.Video,
                 families: list[str]) -> events_pb2.TranscodeResult | None:
        """The whole upgrade, or (a long video) its split into chunk jobs: None."""
        video_id = video.id
        tc = self.cfg.transcoder
        self.scratch.mkdir(parents=True, exist_ok=True)
        workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"{video_id}-up-", dir=self.scratch))
        try:
            try:
                source, origin = self._upgrade_source(request, video, workdir)
                info = media.probe(str(source))
                try:
                    rungs = [media.Rung(**r) for r in json.loads(self.objects.get_bytes(MEDIA_BUCKET, ladder_key(video_id)))]
                except NotFoundError:  # encoded before ladders were recorded: the source's default ladder
                    rungs = media.ladder_for(info)
                trace.get_current_span().set_attribute("longtail.upgrade_source", origin)
                if tc.per_title and rungs and origin == ORIGINAL_UPLOAD:
                    # The new families' rates and VMAF, as the first encode chose the others'. (Not
                    # from a rendition read back: that scores against a copy, not the source.)
                    from transcoder_svc import pertitle

                    rungs = pertitle.per_title_families(str(source), info, rungs, families,
                                                        workdir=str(workdir / "vmaf"),
                                                        timeout_s=self.cfg.platform.transcode_timeout_s)
                log.info("codec upgrade of %s to %s, from the %s", video_id, "+".join(families), origin)
                if tc.chunk_min_duration_s > 0 and info.duration_s > tc.chunk_min_duration_s and rungs:
                    self._split(request, info, rungs, added=families)
                    return None
                out_dir = workdir / "out"
                started = time.perf_counter()
                output = media.transcode(str(source), str(out_dir), info, rungs, families=families,
                                         timeout_s=self.cfg.platform.transcode_timeout_s, storyboard=False,
                                         poster=False)
                record_encode_time(time.perf_counter() - started, info.duration_s, rungs, families)
            except media.MediaError as exc:
                log.warning("codec upgrade of %s to %s failed: %s", video_id, families, exc.reason)
                return events_pb2.TranscodeResult(video_id=video_id, success=False, failure_reason=exc.reason,
                                                  worker_id=self.worker_id, added_codecs=families)
            return self._store_outputs(video_id, out_dir, output, rungs, added=families)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _upgrade_source(self, request, video: video_pb2.Video, workdir: pathlib.Path) -> tuple[pathlib.Path, str]:
        """(local source file, which one): the original upload if it is still kept, else the
        largest H.264 rendition read back into one MP4 (one generation of loss, at that
        rendition's quality: the best the platform still holds)."""
        source = workdir / "source"
        raw_bucket, raw_key = request.raw_bucket or RAW_BUCKET, request.raw_object_key or video.raw_object_key
        if raw_key and self.objects.stat(raw_bucket, raw_key) is not None:
            self.objects.download_file(raw_bucket, raw_key, str(source))
            return source, ORIGINAL_UPLOAD
        h264 = [r for r in video.renditions if r.codec == CODEC]
        if not h264:
            raise media.MediaError("neither the original upload nor an H.264 rendition is left to encode from")
        top = max(h264, key=lambda r: (r.width * r.height, r.bitrate_bps))
        base = f"videos/{video.id}/"

        def fetch(folder: str) -> pathlib.Path | None:
            """Downloads a packaged folder; its playlist's local path (None: no such folder)."""
            playlist = None
            for key in self.objects.list_keys(MEDIA_BUCKET, folder + "/"):
                path = workdir / "top" / key[len(base):]
                path.parent.mkdir(parents=True, exist_ok=True)
                self.objects.download_file(MEDIA_BUCKET, key, str(path))
                playlist = path if path.name == "playlist.m3u8" else playlist
            return playlist

        video_pl = fetch(top.object_key.rsplit("/", 1)[0])
        if video_pl is None:
            raise media.MediaError(f"the top H.264 rendition ({top.object_key}) is missing")
        audio_pl = fetch(f"{media_prefix(video.id)}/audio")
        source = source.with_suffix(".mp4")
        media.remux_rendition(str(video_pl), str(audio_pl) if audio_pl else None, str(source),
                              timeout_s=self.cfg.platform.transcode_timeout_s)
        return source, f"{top.height}p H.264 rendition"

    def _store_outputs(self, video_id: str, out_dir: pathlib.Path, output: media.TranscodeOutput,
                       rungs: list[media.Rung], added: list[str] = ()) -> events_pb2.TranscodeResult:
        """Uploads the packaged output and returns its result; `added`: the families of a
        codec upgrade (its result lists only those, and its marker is its own)."""
        base = f"videos/{validate_id(video_id, 'video id')}"
        # Segments and media playlists first, then the masters/MPDs, the result marker last:
        # a reader never finds a manifest that points at something missing. Paths under
        # out/ are already <codec>/<rung>/... and thumbs/..., the layout of the bucket.
        manifests = {p for f in output.families for p in (f.hls_path, f.dash_path)}
        files = sorted(p for p in out_dir.rglob("*") if p.is_file())
        for path in files:
            rel = path.relative_to(out_dir).as_posix()
            if rel not in manifests:
                self.objects.put_file(MEDIA_BUCKET, f"{base}/{rel}", str(path))
        for rel in sorted(manifests):
            self.objects.put_file(MEDIA_BUCKET, f"{base}/{rel}", str(out_dir / rel))
        if not added:
            self.objects.put_bytes(MEDIA_BUCKET, ladder_key(video_id),
                                   json.dumps([dataclasses.asdict(r) for r in rungs]).encode())
        result = events_pb2.TranscodeResult(
            video_id=video_id, success=True, duration_seconds=output.duration_s, worker_id=self.worker_id,
            added_codecs=list(added),
        )
        for r in output.renditions:
            result.renditions.append(
                video_pb2.Rendition(
                    codec=r.codec, width=r.width, height=r.height, bitrate_bps=r.bitrate_bps,
                    container=r.container, object_key=f"{base}/{r.playlist_path}",
                    frame_rate=r.frame_rate, codecs=r.codecs, vmaf=r.vmaf,
                )
            )
        for f in output.families:
            result.manifests.append(video_pb2.StreamManifest(codec=f.codec, protocol="hls", object_key=f"{base}/{f.hls_path}"))
            result.manifests.append(video_pb2.StreamManifest(codec=f.codec, protocol="dash", object_key=f"{base}/{f.dash_path}"))
        thumbs = [("poster", output.poster_path, output.poster_width, output.poster_height),
                  ("storyboard", output.storyboard_path, output.storyboard_width, output.storyboard_height),
                  ("storyboard_vtt", output.storyboard_vtt_path, 0, 0)]
        for kind, rel, width, height in thumbs:
            if rel:
                result.thumbnails.append(video_pb2.Thumbnail(kind=kind, object_key=f"{base}/{rel}", width=width, height=height))
        marker = done_marker_key(video_id, added[0] if added else CODEC)
        self.objects.put_bytes(MEDIA_BUCKET, marker, json_format.MessageToJson(result).encode())
        return result

    def _mark_failed(self, video: video_pb2.Video, reason: str) -> None:
        patch = video_pb2.Video(id=video.id, etag=video.etag, status=S.VIDEO_STATUS_FAILED, failure_reason=reason)
        try:
            self.metadata.UpdateVideo(
                mpb.UpdateVideoRequest(video=patch, update_mask=field_mask_pb2.FieldMask(paths=["status", "failure_reason"])),
                timeout=30,
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ABORTED:
                raise
            log.info("video %s changed while failing it; leaving it as is", video.id)

    def _publish(self, result: events_pb2.TranscodeResult) -> None:
        self.producer.publish(TOPIC_TRANSCODE_RESULTS, result.SerializeToString(), key=result.video_id.encode())


class TranscoderServicer(pb_grpc.TranscoderServiceServicer):
    def __init__(self, status: dict):
        self.status = status

    def GetWorkerStatus(self, request, context):
        return pb.WorkerStatus(**self.status)


def serve(cfg: Config) -> None:
    codec_families(cfg)  # a bad codec list stops the worker at start, not at the first video
    popular_codecs(cfg)
    status = {"worker_id": f"{socket.gethostname()}-{os.getpid()}", "current_video_id": "", "jobs_done": 0, "jobs_failed": 0}

    def start(backends: Backends) -> Running:
        """The status servicer, and the `transcode.requests` consumer that does the work."""
        metadata = mpb_grpc.MetadataServiceStub(client_channel(cfg.services.metadata))
        producer = backends.bus.producer()
        job = TranscodeJob(cfg, backends.objects, producer, metadata, status,
                           request_partitions=backends.bus.topic_partitions(TOPIC_TRANSCODE_REQUESTS))
        requests = Consumer("transcode-consumer", backends.bus, [TOPIC_TRANSCODE_REQUESTS], CONSUMER_GROUP, job,
                            max_attempts=cfg.platform.transcode_max_attempts, join_timeout_s=60)
        return Running(TranscoderServicer(status), consumers=[requests], close=[producer.close, backends.bus.close])

    run_service(cfg, name="longtail.transcoder.v1.TranscoderService", address=cfg.services.transcoder,
                add_servicer=pb_grpc.add_TranscoderServiceServicer_to_server,
                needs=Needs(bucket=MEDIA_BUCKET, topics=True), start=start)


def main() -> None:
    setup_logging("transcoder_svc")
    serve(load_config())
