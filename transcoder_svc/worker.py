"""The transcoder worker process: consume transcode requests, run each as the job it asks
for (jobs/: an encode, a codec upgrade, download files, an alternate audio track), publish its result; serve
GetWorkerStatus."""
from __future__ import annotations

import logging
import os
import socket

import grpc
from google.protobuf import field_mask_pb2

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
    validate_id,
)
from longtail_common.runtime import setup_logging
from longtail_common.service import Backends, Consumer, Needs, Running, run_service
from transcoder_svc.jobs import outputs
from transcoder_svc.jobs.audio_tracks import AudioTrackJob
from transcoder_svc.jobs.base import (Job, Result, WorkerContext, popular_svtav1_preset, popular_x264_preset,
                                      rate_control, remove_dead_workers_scratch)
from transcoder_svc.jobs.captions import automatic_caption
from transcoder_svc.jobs.chunked import ChunkJob
from transcoder_svc.jobs.downloads import DownloadsJob, auto_downloads
from transcoder_svc.jobs.families import H264, codec_families, known_families, popular_codecs
from transcoder_svc.jobs.upgrade import CodecUpgradeJob
from transcoder_svc.jobs.whole import WholeVideoJob

log = logging.getLogger("transcoder_svc")
S = video_pb2.VideoStatus
CONSUMER_GROUP = "transcoder"


class TranscodeJob:
    """The transcode.requests handler: checks a request against the video, hands it to its
    job (whole video, chunk or codec upgrade), publishes the result and fails the video on
    bad input. Idempotent, so redelivery is safe."""

    def __init__(self, cfg: Config, objects, producer, metadata: mpb_grpc.MetadataServiceStub, status: dict,
                 request_partitions: int = 0):
        self.ctx = WorkerContext(cfg=cfg, objects=objects, producer=producer, worker_id=status["worker_id"],
                                 request_partitions=request_partitions)
        self.metadata = metadata
        self.status = status

    def __call__(self, message: Message) -> None:
        request = events_pb2.TranscodeRequest()
        try:
            request.ParseFromString(message.value)
            validate_id(request.video_id, "video id")
        except Exception as exc:  # noqa: BLE001
            raise PermanentError(f"malformed TranscodeRequest: {exc}") from exc
        try:
            video = self.metadata.GetVideo(mpb.GetVideoRequest(id=request.video_id), timeout=30)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                if request.make_audio_track.source_object_key.startswith(f"{request.video_id}/audio-tracks/"):
                    # its upload has no video to join
                    self.ctx.objects.delete(RAW_BUCKET, request.make_audio_track.source_object_key)
                raise PermanentError(f"video {request.video_id} does not exist") from exc
            raise
        if request.HasField("make_audio_track"):
            self._audio_track(request.make_audio_track, video)
        elif request.make_downloads:
            self._downloads(request, video)
        elif request.automatic_captions:
            automatic_caption(self.ctx, self.metadata, request, video)
        elif request.add_codecs:
            self._upgrade(request, video)
        else:
            self._transcode(request, video)

    def _downloads(self, request: events_pb2.TranscodeRequest, video: video_pb2.Video) -> None:
        if video.status not in (S.VIDEO_STATUS_PROCESSING, S.VIDEO_STATUS_READY):
            log.info("downloads of %s skipped: it is %s", video.id, S.Name(video.status))
            return
        self.status["current_video_id"] = video.id
        try:
            with telemetry.tracer().start_as_current_span("downloads", attributes={
                    telemetry.VIDEO_ID: video.id, "longtail.worker_id": self.ctx.worker_id}) as span:
                made = DownloadsJob(self.ctx, self.metadata, video, list(request.make_downloads)).run()
                span.set_attribute("longtail.downloads", [d.object_key.rsplit("/", 1)[-1] for d in made])
        finally:
            self.status["current_video_id"] = ""

    def _audio_track(self, track: video_pb2.AudioTrack, video: video_pb2.Video) -> None:
        if not track.source_object_key.startswith(f"{video.id}/audio-tracks/") or not track.version.isalnum():
            raise PermanentError(f"audio track of {video.id}: malformed request")
        if video.status != S.VIDEO_STATUS_READY:
            log.info("audio track of %s skipped: it is %s", video.id, S.Name(video.status))
            return
        self.status["current_video_id"] = video.id
        try:
            with telemetry.tracer().start_as_current_span("audio track", attributes={
                    telemetry.VIDEO_ID: video.id, "longtail.worker_id": self.ctx.worker_id,
                    "longtail.language": track.language}) as span:
                recorded = AudioTrackJob(self.ctx, self.metadata, video, track).run()
                if recorded is not None and recorded.failure_reason:
                    telemetry.record_error(span, recorded.failure_reason)
        finally:
            self.status["current_video_id"] = ""

    def _ask_auto_downloads(self, video_id: str) -> None:
        """After a first encode, the download files downloads.auto_* make for every video."""
        asked = auto_downloads(self.ctx.cfg)
        if asked:
            follow_up = events_pb2.TranscodeRequest(video_id=video_id, make_downloads=asked)
            follow_up.request_time.GetCurrentTime()
            self.ctx.producer.publish(TOPIC_TRANSCODE_REQUESTS, follow_up.SerializeToString(), key=video_id.encode())

    def _transcode(self, request: events_pb2.TranscodeRequest, video: video_pb2.Video) -> None:
        if video.status != S.VIDEO_STATUS_PROCESSING:
            log.info("video %s is %s: nothing to do (duplicate delivery)", video.id, S.Name(video.status))
            return
        if self._republished(video.id, H264):
            self._ask_auto_downloads(video.id)  # in case the first delivery died before asking (idempotent)
            return
        job = ChunkJob(self.ctx, request) if request.HasField("chunk") else WholeVideoJob(self.ctx, request)
        result = self._run("transcode", video.id, {}, job)
        if result is None:  # split into chunk jobs, or a chunk done while others are pending
            return
        if not result.success:
            self._mark_failed(video, result.failure_reason)
        self._publish(result)
        if result.success:
            self._ask_auto_downloads(video.id)

    def _upgrade(self, request: events_pb2.TranscodeRequest, video: video_pb2.Video) -> None:
        try:
            asked = known_families(request.add_codecs, f"codec upgrade of {video.id}")
        except ValueError as exc:
            raise PermanentError(str(exc)) from exc
        if video.status != S.VIDEO_STATUS_READY:
            log.info("codec upgrade of %s skipped: it is %s, not READY", video.id, S.Name(video.status))
            return
        have = {m.codec for m in video.manifests}
        families = [c for c in asked if c not in have]
        if not families:
            log.info("codec upgrade of %s: it already has %s", video.id, asked)
            return
        if self._republished(video.id, families[0]):
            return
        upgrade = CodecUpgradeJob(self.ctx, request, video, families)
        job = ChunkJob(self.ctx, request, fetch_source=lambda workdir: upgrade.source_file(workdir)[0]) \
            if request.HasField("chunk") else upgrade
        result = self._run("codec upgrade", video.id, {"longtail.add_codecs": families}, job)
        if result is not None:  # (a failed upgrade leaves the video as it is: placement only logs it)
            self._publish(result)

    def _republished(self, video_id: str, codec: str) -> bool:
        """Publishes again the result an earlier delivery stored (all its files were written;
        only the publish was lost): True if there was one."""
        existing = outputs.stored_result(self.ctx.objects, video_id, codec)
        if existing is not None:
            self._publish(existing)
        return existing is not None

    def _run(self, span_name: str, video_id: str, attributes: dict, job: Job) -> Result | None:
        """`job.run()` as this worker's current job, in a span: its TranscodeResult, or None
        when there is nothing to publish yet. Counts the outcome for GetWorkerStatus."""
        self.status["current_video_id"] = video_id
        try:
            with telemetry.tracer().start_as_current_span(
                span_name, attributes={telemetry.VIDEO_ID: video_id, "longtail.worker_id": self.ctx.worker_id,
                                       **attributes}
            ) as span:
                result = job.run()
                if result is None:
                    return None
                span.set_attribute("longtail.renditions", [f"{r.codec}/{r.height}p" for r in result.renditions])
                if not result.success:
                    telemetry.record_error(span, result.failure_reason)
        finally:
            self.status["current_video_id"] = ""
        self.status["jobs_done" if result.success else "jobs_failed"] += 1
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

    def _publish(self, result: Result) -> None:
        self.ctx.producer.publish(TOPIC_TRANSCODE_RESULTS, result.SerializeToString(), key=result.video_id.encode())


class TranscoderServicer(pb_grpc.TranscoderServiceServicer):
    def __init__(self, status: dict):
        self.status = status

    def GetWorkerStatus(self, request, context):
        return pb.WorkerStatus(**self.status)


def serve(cfg: Config) -> None:
    codec_families(cfg)  # a bad codec list stops the worker at start, not at the first video
    popular_codecs(cfg)
    rate_control(cfg)
    popular_x264_preset(cfg)
    popular_svtav1_preset(cfg)
    remove_dead_workers_scratch(cfg)
    status = {"worker_id": f"{socket.gethostname()}-{os.getpid()}", "current_video_id": "", "jobs_done": 0, "jobs_failed": 0}

    def start(backends: Backends) -> Running:
        """The status servicer, and the `transcode.requests` consumer that does the work."""
        metadata = mpb_grpc.MetadataServiceStub(client_channel(cfg, "metadata"))
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
