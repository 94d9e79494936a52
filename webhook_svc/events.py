"""From topic messages to webhook events, and from events to deliveries.

Where each event comes from:

| event | topic | when |
|---|---|---|
| `video.uploaded` | `transcode.requests` | a whole-video request without `add_codecs`: the upload's last byte arrived |
| `video.ready` | `video.published` | the video became READY |
| `video.failed` | `video.changed` | an update after which metadata says FAILED |
| `captions.ready` | `captions.ready` | a caption track can be shown (events.v1.CaptionsReady) |
| `video.deleted` | `video.deleted` | its owner or an admin deleted it |

An event's id (the `webhook-id` header) is derived from what it is about (`video.ready` of
video X is one event, however often placement republishes it), and a delivery's id from
(endpoint, event), so a redelivered or republished message adds no second delivery: each
endpoint gets each event once, and its retries carry the same id. An endpoint is told of
events from its creation on: one that happened before it (read late, or an old video's READY
republished when a codec is added) is not sent to it.

The body is Standard Webhooks' shape: `{"type", "timestamp", "data"}`; `data` always has
`video_id` and `channel_id`, plus `title` (uploaded, ready, failed), `publish_time`
(ready), `failure_reason` (failed) and `caption_id`, `language`, `kind`, `label`,
`automatic` (captions.ready).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from typing import Callable

import grpc

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail_common.consumer import PermanentError
from longtail_common.ports import (
    DELIVERY_PENDING,
    TOPIC_CAPTIONS_READY,
    TOPIC_TRANSCODE_REQUESTS,
    TOPIC_VIDEO_CHANGED,
    TOPIC_VIDEO_DELETED,
    TOPIC_VIDEO_PUBLISHED,
    DeliveryRecord,
    Message,
    WebhookStore,
)

log = logging.getLogger("webhook_svc")
EVENT_TYPES = ("video.uploaded", "video.ready", "video.failed", "captions.ready", "video.deleted")
TOPICS = [TOPIC_TRANSCODE_REQUESTS, TOPIC_VIDEO_PUBLISHED, TOPIC_VIDEO_CHANGED, TOPIC_VIDEO_DELETED, TOPIC_CAPTIONS_READY]
S = video_pb2.VideoStatus


@dataclasses.dataclass(frozen=True)
class Event:
    type: str
    subject: str  # what makes it one event: the video id (captions: video id and caption id)
    channel_id: str
    data: dict
    time: dt.datetime

    @property
    def id(self) -> str:
        return "evt_" + hashlib.sha256(f"{self.type}\n{self.subject}".encode()).hexdigest()[:32]

    def body(self) -> str:
        return json.dumps({"type": self.type, "timestamp": self.time.isoformat().replace("+00:00", "Z"),
                           "data": {"video_id": self.data["video_id"], "channel_id": self.channel_id, **self.data}},
                          separators=(",", ":"), sort_keys=True)


def delivery_id(webhook_id: str, event_id: str) -> str:
    return hashlib.sha256(f"{webhook_id}\n{event_id}".encode()).hexdigest()[:32]


def _parse(message: Message, event):
    try:
        event.ParseFromString(message.value)
    except Exception as exc:  # noqa: BLE001 - a malformed message never parses on a retry either
        raise PermanentError(f"undecodable {type(event).__name__}: {exc}") from exc
    if not event.video_id:
        raise PermanentError(f"{type(event).__name__} without video_id")
    return event


def _time(message: Message, stamp=None) -> dt.datetime:
    if stamp is not None and (stamp.seconds or stamp.nanos):
        return stamp.ToDatetime(tzinfo=dt.timezone.utc)
    if message.timestamp_ms:
        return dt.datetime.fromtimestamp(message.timestamp_ms / 1000, dt.timezone.utc)
    return dt.datetime.now(dt.timezone.utc)


class EventSource:
    """Reads what an event needs from metadata (as this service: private videos too)."""

    def __init__(self, metadata):
        self.metadata = metadata

    def video(self, video_id: str) -> video_pb2.Video | None:
        """The video, or None when it is gone (nothing to tell about)."""
        try:
            return self.metadata.GetVideo(mpb.GetVideoRequest(id=video_id), timeout=15)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise  # retried by the consume loop

    def owner(self, channel_id: str) -> str:
        """The channel's owning account ("" for none: nobody to tell)."""
        try:
            return self.metadata.GetChannel(mpb.GetChannelRequest(id=channel_id), timeout=15).owner_account_id
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return ""
            raise

    def event_of(self, message: Message) -> Event | None:
        """The webhook event a message means, or None."""
        handler = _HANDLERS.get(message.topic)
        return handler(self, message) if handler else None


def _uploaded(source: EventSource, message: Message) -> Event | None:
    request = _parse(message, events_pb2.TranscodeRequest())
    if request.HasField("chunk") or request.add_codecs:
        return None  # a chunk of a transcode, or a codec upgrade: not an upload
    video = source.video(request.video_id)
    if video is None:
        return None
    return Event("video.uploaded", video.id, video.channel.id, {"video_id": video.id, "title": video.title},
                 _time(message, request.request_time))


def _ready(source: EventSource, message: Message) -> Event | None:
    published = _parse(message, events_pb2.VideoPublished())
    data = {"video_id": published.video_id, "title": published.title}
    if published.HasField("publish_time"):
        data["publish_time"] = published.publish_time.ToJsonString()
    return Event("video.ready", published.video_id, published.channel_id, data, _time(message, published.publish_time))


def _failed(source: EventSource, message: Message) -> Event | None:
    changed = _parse(message, events_pb2.VideoChanged())
    if changed.change != events_pb2.VIDEO_CHANGE_UPDATED:
        return None
    video = source.video(changed.video_id)
    if video is None or video.status != S.VIDEO_STATUS_FAILED:
        return None
    return Event("video.failed", video.id, video.channel.id,
                 {"video_id": video.id, "title": video.title, "failure_reason": video.failure_reason},
                 _time(message, changed.change_time))


def _deleted(source: EventSource, message: Message) -> Event | None:
    deleted = _parse(message, events_pb2.VideoDeleted())
    return Event("video.deleted", deleted.video_id, deleted.channel_id, {"video_id": deleted.video_id},
                 _time(message, deleted.delete_time))


def _captions(source: EventSource, message: Message) -> Event | None:
    ready = _parse(message, events_pb2.CaptionsReady())
    if not ready.caption_id:
        raise PermanentError("CaptionsReady without caption_id")
    video = source.video(ready.video_id)
    if video is None:
        return None
    data = {"video_id": video.id, "caption_id": ready.caption_id, "language": ready.language, "kind": ready.kind,
            "label": ready.label, "automatic": ready.automatic}
    return Event("captions.ready", f"{video.id}\n{ready.caption_id}", video.channel.id, data,
                 _time(message, ready.ready_time))


_HANDLERS: dict[str, Callable[[EventSource, Message], Event | None]] = {
    TOPIC_TRANSCODE_REQUESTS: _uploaded, TOPIC_VIDEO_PUBLISHED: _ready, TOPIC_VIDEO_CHANGED: _failed,
    TOPIC_VIDEO_DELETED: _deleted, TOPIC_CAPTIONS_READY: _captions,
}


class EventFanout:
    """The topic consumer's handler: one pending delivery per subscribed endpoint of the
    video's owner, added idempotently (the message is committed only after)."""

    def __init__(self, store: WebhookStore, source: EventSource, clock: Callable[[], float]):
        self.store = store
        self.source = source
        self.clock = clock

    def __call__(self, message: Message) -> None:
        event = self.source.event_of(message)
        if event is None or not event.channel_id:
            return
        owner = self.source.owner(event.channel_id)
        if not owner:
            return
        now_us = int(self.clock() * 1_000_000)
        body = event.body()
        happened_us = int(event.time.timestamp() * 1_000_000)
        for endpoint in self.store.list_endpoints(owner):
            if endpoint.event_types and event.type not in endpoint.event_types:
                continue
            if happened_us < endpoint.create_time_us:
                continue  # before the endpoint existed (e.g. a lagging consumer, or an old video republished)
            added = self.store.add_delivery(DeliveryRecord(
                delivery_id=delivery_id(endpoint.webhook_id, event.id), webhook_id=endpoint.webhook_id,
                account_id=owner, event_id=event.id, event_type=event.type, payload=body, create_time_us=now_us,
                state=DELIVERY_PENDING, next_attempt_us=now_us, first_attempt_us=0, attempt_count=0,
                attempts_json="[]", version=1))
            if added:
                log.info("%s of video %s queued for webhook %s", event.type, event.data["video_id"],
                         endpoint.webhook_id)
