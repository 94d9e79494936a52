"""The on-day moment of placement in the running platform: first-request fills.

One job: for each EdgeFillRequest (topic `edge.fills`, published by the gateway at a watch
request for a pair whose decision is origin with `fill_on_first_request`), push the video
to the region's edge and then turn that region's decision to SERVED_FROM_CDN with the
policy "first-request-fill", so the next watch requests stream from the edge. This is what
a pull-through CDN does at a miss, except that the learned admission rule chose the pairs
(a one-hit video is not filled). The request that triggered the fill was served from
origin, as a pull-through edge serves its first miss through from origin.

Idempotent: a duplicate, or a request for a decision that has changed since (already on
the edge, no longer admitted, the video gone), does nothing. The next morning's plan keeps
or evicts the filled pair like any pushed one.
"""
from __future__ import annotations

import logging

import grpc
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail_common import telemetry
from longtail_common.consumer import PermanentError
from longtail_common.ports import Message, ObjectStore, is_valid_id
from longtail_common.proto_enums import PLACEMENT_POLICY
from placement_svc import edge

log = logging.getLogger("placement_svc.fills")
CONSUMER_GROUP = "placement-fills"
MAX_ATTEMPTS = 5


class EdgeFiller:
    """run_consumer handler for `edge.fills`."""

    def __init__(self, metadata, objects: ObjectStore, regions: list[str]):
        self.metadata = metadata  # a MetadataServiceStub
        self.objects = objects
        self.regions = set(regions)
        self._fills = telemetry.meter().create_counter(
            "longtail.placement.first_request_fills", description="first-request fills, by region and outcome")

    def __call__(self, message: Message) -> None:
        request = events_pb2.EdgeFillRequest()
        try:
            request.ParseFromString(message.value)
        except Exception as exc:  # noqa: BLE001
            raise PermanentError(f"undecodable EdgeFillRequest: {exc}") from exc
        if not is_valid_id(request.video_id) or request.region not in self.regions:
            raise PermanentError(f"EdgeFillRequest for {request.video_id!r} in {request.region!r}")
        outcome = self.fill(request.video_id, request.region)
        self._fills.add(1, {"region": request.region, "outcome": outcome})

    def fill(self, video_id: str, region: str) -> str:
        """Pushes then records; answers what happened ("filled", "already", "not_admitted", "gone")."""
        pushed = False
        for _ in range(5):
            try:
                video = self.metadata.GetVideo(mpb.GetVideoRequest(id=video_id), timeout=30)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return "gone"
                raise
            decision = next((p for p in video.placements if p.region == region), None)
            if decision is None or decision.served_from == video_pb2.SERVED_FROM_CDN:
                return "already" if decision is not None else "not_admitted"
            if not decision.fill_on_first_request:
                return "not_admitted"
            if not pushed:
                edge.push(self.objects, video_id, region)  # bytes first: a cdn decision never points at nothing
                pushed = True
            if self._record(video, region):
                log.info("filled %s into the %s edge at its first request", video_id, region)
                return "filled"
        raise RuntimeError(f"video {video_id}: too many concurrent updates")

    def _record(self, video: video_pb2.Video, region: str) -> bool:
        """The decision of `region` turned to cdn (etag-checked); False if someone wrote first."""
        now = Timestamp()
        now.GetCurrentTime()
        placements = []
        for p in video.placements:
            q = video_pb2.PlacementDecision()
            q.CopyFrom(p)
            if p.region == region:
                q = video_pb2.PlacementDecision(region=region, served_from=video_pb2.SERVED_FROM_CDN,
                                                predicted_views=p.predicted_views, decide_time=now,
                                                **PLACEMENT_POLICY.fields("first-request-fill"))
            placements.append(q)
        patch = video_pb2.Video(id=video.id, etag=video.etag, placements=placements)
        try:
            self.metadata.UpdateVideo(mpb.UpdateVideoRequest(
                video=patch, update_mask=field_mask_pb2.FieldMask(paths=["placements"])), timeout=30)
            return True
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ABORTED:
                raise
            return False
