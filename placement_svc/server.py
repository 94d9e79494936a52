"""placement_svc process: the transcode-results consumer plus the PlacementService API,
beside the views counter, the first-request filler (the on-day moment) and the deleter of
deleted videos."""
from __future__ import annotations

import datetime
import logging

import grpc
from opentelemetry import trace
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail.placement.v1 import placement_service_pb2 as pb
from longtail.placement.v1 import placement_service_pb2_grpc as pb_grpc
from longtail_common import telemetry
from longtail_common.adapters import make_object_store, make_view_count_store
from longtail_common.config import Config, load_config
from longtail_common.consumer import PermanentError
from longtail_common.grpc_server import client_channel
from longtail_common.ports import (
    TOPIC_TRANSCODE_REQUESTS,
    TOPIC_EDGE_FILLS,
    TOPIC_TRANSCODE_RESULTS,
    TOPIC_VIDEO_DELETED,
    TOPIC_VIDEO_PUBLISHED,
    TOPIC_VIEWS,
    CatalogEntry,
    Message,
    is_valid_id,
)
from longtail_common.runtime import setup_logging
from longtail_common.service import Backends, Consumer, Needs, Running, run_service
from placement_svc import deleter, edge, fills, modelstore, views
from placement_svc import metrics as placement_metrics

log = logging.getLogger("placement_svc")
S = video_pb2.VideoStatus
CONSUMER_GROUP = "placement"
# Seconds from the video's creation (the upload's start) to READY: a short clip's minute to
# a long film's hours.
UPLOAD_TO_READY_BUCKETS_S = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800)


AUDIO_SAMPLE_ENTRIES = ("mp4a", "opus", "ac-3", "ec-3", "flac")


def has_sound(codecs: str) -> bool:
    """Whether a rendition's RFC 6381 codecs string names an audio codec."""
    return any(entry.strip().lower().split(".")[0] in AUDIO_SAMPLE_ENTRIES for entry in codecs.split(","))


def decide_for_new_video(video: video_pb2.Video, regions: list[str], model=None) -> list[video_pb2.PlacementDecision]:
    """Cold start: a video that has just finished transcoding has no views yet. With a
    trained model (the daily job's latest), decide per region from the channel, language
    and category; without one, serve it from origin everywhere. The daily job
    (`longtail placement run`) revisits every decision each morning."""
    now = Timestamp()
    now.GetCurrentTime()
    admit: dict[str, bool] = {}
    if model is None:
        choice, policy = {r: "origin" for r in regions}, "new-video-origin"
    else:
        from placement_svc.model.learned import admit_new_video, decide_new_video

        features = {"channel_id": video.channel.id, "language": video.language, "category": video.category,
                    "upload_date": now.ToDatetime().date()}
        choice, policy = decide_new_video(features, model=model, regions=regions), f"cold-start-{model.family}"
        admit = admit_new_video(features, model=model, regions=regions)  # the on-day moment's bit
    return [
        video_pb2.PlacementDecision(
            region=region,
            served_from=video_pb2.SERVED_FROM_CDN if choice.get(region) == "cdn" else video_pb2.SERVED_FROM_ORIGIN,
            policy=policy, decide_time=now,
            fill_on_first_request=choice.get(region) != "cdn" and admit.get(region, False),
        )
        for region in regions
    ]


class ResultHandler:
    """Turns a TranscodeResult into READY (or FAILED) exactly once, then publishes."""

    def __init__(self, cfg: Config, metadata: mpb_grpc.MetadataServiceStub, producer, objects=None,
                 view_counts=None, models=None):
        self.cfg = cfg
        self.metadata = metadata
        self.producer = producer
        self.objects = objects  # ObjectStore: cold-start pushes to the edges
        self.view_counts = view_counts  # ViewCountStore: the catalogue the daily job scores
        self.models = models  # modelstore.LatestModel
        self._upload_to_ready = telemetry.meter().create_histogram(
            "longtail.upload_to_ready_seconds", description="seconds from a video's creation to READY",
            explicit_bucket_boundaries_advisory=UPLOAD_TO_READY_BUCKETS_S)

    def _push_first(self, video_id: str, placements: list) -> list:
        """Pushes the bytes of every cdn decision; a region whose push fails stays on origin
        (every region does without an object store to push from)."""
        for p in placements:
            if p.served_from != video_pb2.SERVED_FROM_CDN:
                continue
            if self.objects is None:
                p.served_from = video_pb2.SERVED_FROM_ORIGIN
                continue
            try:
                edge.push(self.objects, video_id, p.region)
            except Exception as exc:  # noqa: BLE001 - publishing must not wait on the CDN
                log.warning("cold-start push of %s to %s failed (%s); origin instead", video_id, p.region, exc)
                p.served_from = video_pb2.SERVED_FROM_ORIGIN
        return placements

    def _record(self, video: video_pb2.Video) -> None:
        if self.view_counts is None:
            return
        publish = video.publish_time.ToDatetime().date() if video.HasField("publish_time") else None
        size = edge.video_size_bytes(self.objects, video.id) if self.objects is not None else 0
        self.view_counts.put_video(CatalogEntry(
            video_id=video.id, channel_id=video.channel.id, language=video.language, category=video.category,
            publish_day=(publish or datetime.date.today()).isoformat(), size_bytes=size))

    def __call__(self, message: Message) -> None:
        result = events_pb2.TranscodeResult()
        try:
            result.ParseFromString(message.value)
        except Exception as exc:  # noqa: BLE001
            raise PermanentError(f"undecodable TranscodeResult: {exc}") from exc
        if not result.video_id:
            raise PermanentError("TranscodeResult without video_id")
        for _attempt in range(5):
            try:
                self._apply(result)
                return
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.ABORTED:
                    continue  # someone wrote in between: re-read and decide again
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    self._drop_late_result(result.video_id)
                    return
                raise
        raise RuntimeError(f"video {result.video_id}: too many concurrent updates")

    def _drop_late_result(self, video_id: str) -> None:
        """The video was deleted (before the result was read, or while it was being applied:
        the READY write is a compare-and-set, which fails on a record that is gone). Delete
        wins: nothing is published, and what the transcode wrote after the deleter ran, and
        any copy pushed to an edge meanwhile, is removed."""
        if self.objects is not None:
            removed = deleter.purge_media(self.objects, video_id, self.cfg.platform.regions)
            log.info("video %s was deleted; its late transcode result is dropped (%d objects removed)",
                     video_id, removed)

    def _apply(self, result: events_pb2.TranscodeResult) -> None:
        video = self.metadata.GetVideo(mpb.GetVideoRequest(id=result.video_id), timeout=30)
        if result.added_codecs:
            self._apply_upgrade(result, video)
            return
        if video.status == S.VIDEO_STATUS_READY:
            # Already done (a redelivery): publishing again is harmless for consumers and
            # covers a crash between marking READY and publishing.
            self._record(video)
            self._publish(video)
            self._ask_captions(video)
            return
        if video.status != S.VIDEO_STATUS_PROCESSING:
            log.info("video %s is %s; ignoring result", video.id, S.Name(video.status))
            return
        span = trace.get_current_span()
        if not result.success:
            span.set_attribute("longtail.failure_reason", result.failure_reason[:500])
            self._update(video, {"status": S.VIDEO_STATUS_FAILED, "failure_reason": result.failure_reason})
            return
        now = Timestamp()
        now.GetCurrentTime()
        model = self.models.get() if self.models is not None else None
        placements = decide_for_new_video(video, self.cfg.platform.regions, model)
        placements = self._push_first(video.id, placements)  # bytes before the READY that points at them
        patch = video_pb2.Video(
            id=video.id,
            etag=video.etag,
            status=S.VIDEO_STATUS_READY,
            duration_seconds=result.duration_seconds,
            renditions=result.renditions,
            thumbnails=result.thumbnails,
            manifests=result.manifests,
            placements=placements,
            publish_time=now,
        )
        paths = ["status", "duration_seconds", "renditions", "thumbnails", "manifests", "placements", "publish_time"]
        # The etag makes PROCESSING -> READY happen once, whatever the redeliveries.
        updated = self.metadata.UpdateVideo(
            mpb.UpdateVideoRequest(video=patch, update_mask=field_mask_pb2.FieldMask(paths=paths)), timeout=30
        )
        log.info("video %s READY (%d renditions)", video.id, len(updated.renditions))
        if video.HasField("create_time"):  # once: only this PROCESSING -> READY write got here
            self._upload_to_ready.record(
                max(0.0, (now.ToNanoseconds() - video.create_time.ToNanoseconds()) / 1e9))
        placement_metrics.record_decisions(placements, "new_video")
        span.set_attributes({"longtail.placement.decisions": [
            f"{p.region}:{'cdn' if p.served_from == video_pb2.SERVED_FROM_CDN else 'origin'}" for p in placements],
            "longtail.placement.model": "learned" if model is not None else "rule"})
        self._record(updated)
        self._publish(updated)
        self._ask_captions(updated)

    def _apply_upgrade(self, result: events_pb2.TranscodeResult, video: video_pb2.Video) -> None:
        """A codec upgrade's result: its renditions and manifests join the READY video's. The
        new files go to every edge the video is served from first (a push copies only what an
        edge lacks), so a cdn URL never names a manifest the edge does not have; a region whose
        push fails goes back to origin, as at cold start. A family the video has is replaced
        (a better re-encode, in new files); its other families are untouched."""
        added = list(result.added_codecs)
        span = trace.get_current_span()
        span.set_attribute("longtail.added_codecs", added)
        if not result.success:
            span.set_attribute("longtail.failure_reason", result.failure_reason[:500])
            log.warning("codec upgrade of %s to %s failed; it stays as it is: %s", video.id, added,
                        result.failure_reason)
            return
        if video.status != S.VIDEO_STATUS_READY:
            log.info("video %s is %s; ignoring its codec upgrade", video.id, S.Name(video.status))
            return
        listed = {m.object_key for m in video.manifests}
        new = [f for f in added if any(m.codec == f and m.object_key not in listed for m in result.manifests)]
        if not new:
            return  # a redelivery: already applied
        placements = [video_pb2.PlacementDecision() for _ in video.placements]
        for copy, p in zip(placements, video.placements):
            copy.CopyFrom(p)
        placements = self._push_first(video.id, placements)
        patch = video_pb2.Video(
            id=video.id, etag=video.etag,
            renditions=[r for r in video.renditions if r.codec not in new] + [r for r in result.renditions if r.codec in new],
            manifests=[m for m in video.manifests if m.codec not in new] + [m for m in result.manifests if m.codec in new],
            placements=placements,
        )
        self.metadata.UpdateVideo(mpb.UpdateVideoRequest(
            video=patch, update_mask=field_mask_pb2.FieldMask(paths=["renditions", "manifests", "placements"])),
            timeout=30)
        log.info("video %s: %s added", video.id, "+".join(new))

    def _update(self, video, fields: dict) -> None:
        patch = video_pb2.Video(id=video.id, etag=video.etag, **fields)
        self.metadata.UpdateVideo(
            mpb.UpdateVideoRequest(video=patch, update_mask=field_mask_pb2.FieldMask(paths=list(fields))), timeout=30
        )

    def _ask_captions(self, video: video_pb2.Video) -> None:
        """The automatic captions job of a READY video with sound (transcoder.automatic_captions);
        idempotent there, so a redelivered result asking again is harmless."""
        if not self.cfg.transcoder.automatic_captions or not any(has_sound(r.codecs) for r in video.renditions):
            return
        request = events_pb2.TranscodeRequest(video_id=video.id, raw_object_key=video.raw_object_key,
                                              automatic_captions=True)
        request.request_time.GetCurrentTime()
        self.producer.publish(TOPIC_TRANSCODE_REQUESTS, request.SerializeToString(), key=video.id.encode())

    def _publish(self, video: video_pb2.Video) -> None:
        event = events_pb2.VideoPublished(
            video_id=video.id, channel_id=video.channel.id, title=video.title, publish_time=video.publish_time
        )
        self.producer.publish(TOPIC_VIDEO_PUBLISHED, event.SerializeToString(), key=video.id.encode())


MAX_VIEW_COUNT_IDS = 1000


class PlacementServicer(pb_grpc.PlacementServiceServicer):
    def __init__(self, cfg: Config, metadata: mpb_grpc.MetadataServiceStub, view_counts=None):
        self.cfg = cfg
        self.metadata = metadata
        self.view_counts = view_counts  # ViewCountStore, filled by the views consumer

    def GetPlacement(self, request, context):
        try:
            video = self.metadata.GetVideo(mpb.GetVideoRequest(id=request.video_id), timeout=10)
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details())
        for decision in video.placements:
            if decision.region == request.region:
                return decision
        context.abort(grpc.StatusCode.NOT_FOUND, f"no placement for {request.video_id} in {request.region}")

    def ListRegions(self, request, context):
        return pb.ListRegionsResponse(regions=self.cfg.platform.regions)

    def BatchGetViewCounts(self, request, context):
        ids = list(request.video_ids)
        if len(ids) > MAX_VIEW_COUNT_IDS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_VIEW_COUNT_IDS} video ids")
        if not all(is_valid_id(i) for i in ids):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid video id")
        if self.view_counts is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "no view counts here")
        return pb.BatchGetViewCountsResponse(views=self.view_counts.total_views(ids))


def serve(cfg: Config) -> None:
    def start(backends: Backends) -> Running:
        """The servicer, and the consumers of transcode results and of views."""
        metadata = mpb_grpc.MetadataServiceStub(client_channel(cfg, "metadata"))
        producer = backends.bus.producer()
        objects = make_object_store(cfg)
        placement_metrics.register_cdn_share_gauge(objects)
        view_counts = make_view_count_store(cfg)
        handler = ResultHandler(cfg, metadata, producer, objects=objects, view_counts=view_counts,
                                models=modelstore.LatestModel(objects))
        consumers = [
            Consumer("results-consumer", backends.bus, [TOPIC_TRANSCODE_RESULTS], CONSUMER_GROUP, handler,
                     max_attempts=5, join_timeout_s=30),
            Consumer("views-consumer", backends.bus, [TOPIC_VIEWS], views.CONSUMER_GROUP,
                     views.ViewCounter(view_counts), max_attempts=5, join_timeout_s=30),
            Consumer("fills-consumer", backends.bus, [TOPIC_EDGE_FILLS], fills.CONSUMER_GROUP,
                     fills.EdgeFiller(metadata, objects, cfg.platform.regions), max_attempts=fills.MAX_ATTEMPTS,
                     join_timeout_s=30),
            Consumer("deleter-consumer", backends.bus, [TOPIC_VIDEO_DELETED], deleter.CONSUMER_GROUP,
                     deleter.VideoDeleter(metadata, objects, view_counts, cfg.platform.regions),
                     max_attempts=deleter.MAX_ATTEMPTS, join_timeout_s=30),
        ]
        return Running(PlacementServicer(cfg, metadata, view_counts), consumers=consumers,
                       close=[producer.close, backends.bus.close])

    run_service(cfg, name="longtail.placement.v1.PlacementService", address=cfg.services.placement,
                add_servicer=pb_grpc.add_PlacementServiceServicer_to_server, needs=Needs(topics=True), start=start)


def main() -> None:
    setup_logging("placement_svc")
    serve(load_config())
