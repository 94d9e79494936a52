"""The closed sets that v1 messages carry twice: a deprecated string field and its enum.

One job: keep both fields of each pair in step. During v1 writers set both (old readers
still read the string) and readers take one value, from the enum when it is set and from
the string otherwise (rows and events stored before the enum existed). Each pair's table
is the one place its string spellings live.

    video_pb2.Thumbnail(**THUMBNAIL_KIND.fields("poster"), object_key=key)   # writer
    THUMBNAIL_KIND.text(thumbnail) == "poster"                              # reader
"""
from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import video_pb2


class DualField:
    """One closed set in `message_type`: `string_field` (deprecated) beside `enum_field`."""

    def __init__(self, message_type: type[Message], string_field: str, enum_field: str, numbers: Mapping[str, int]):
        self.message_type = message_type
        self.string_field = string_field
        self.enum_field = enum_field
        self.numbers = dict(numbers)
        self.texts = {number: text for text, number in self.numbers.items()}

    def fields(self, text: str) -> dict:
        """Constructor keywords setting both fields; a string outside the set leaves the
        enum UNSPECIFIED (0), so readers still get the string."""
        return {self.string_field: text, self.enum_field: self.numbers.get(text, 0)}

    def text(self, message: Message) -> str:
        """The value as its string: from the enum when it is set and known, else the string field."""
        return self.texts.get(getattr(message, self.enum_field)) or getattr(message, self.string_field)


VIEW_KIND = DualField(events_pb2.ViewEvent, "kind", "view_kind", {
    "start": events_pb2.VIEW_KIND_START,
    "progress": events_pb2.VIEW_KIND_PROGRESS,
    "complete": events_pb2.VIEW_KIND_COMPLETE,
})
STREAM_PROTOCOL = DualField(video_pb2.StreamManifest, "protocol", "stream_protocol", {
    "hls": video_pb2.STREAM_PROTOCOL_HLS,
    "dash": video_pb2.STREAM_PROTOCOL_DASH,
})
THUMBNAIL_KIND = DualField(video_pb2.Thumbnail, "kind", "thumbnail_kind", {
    "poster": video_pb2.THUMBNAIL_KIND_POSTER,
    "storyboard": video_pb2.THUMBNAIL_KIND_STORYBOARD,
    "storyboard_vtt": video_pb2.THUMBNAIL_KIND_STORYBOARD_VTT,
    "preview": video_pb2.THUMBNAIL_KIND_PREVIEW,
})
# Download kinds (an enum only: no string field beside it) and their API spellings.
DOWNLOAD_KINDS = {"mp4": video_pb2.DOWNLOAD_KIND_MP4, "m4a": video_pb2.DOWNLOAD_KIND_M4A}
DOWNLOAD_KIND_NAMES = {number: text for text, number in DOWNLOAD_KINDS.items()}
CONTAINER_FORMAT = DualField(video_pb2.Rendition, "container", "container_format", {
    "mpegts": video_pb2.CONTAINER_FORMAT_MPEGTS,
    "fmp4": video_pb2.CONTAINER_FORMAT_FMP4,
    "webm": video_pb2.CONTAINER_FORMAT_WEBM,
})
PLACEMENT_POLICY = DualField(video_pb2.PlacementDecision, "policy", "placement_policy", {
    "new-video-origin": video_pb2.PLACEMENT_POLICY_NEW_VIDEO_ORIGIN,
    "cold-start-mlp": video_pb2.PLACEMENT_POLICY_COLD_START_MLP,
    "cold-start-gbm": video_pb2.PLACEMENT_POLICY_COLD_START_GBM,
    "model-mlp": video_pb2.PLACEMENT_POLICY_MODEL_MLP,
    "model-gbm": video_pb2.PLACEMENT_POLICY_MODEL_GBM,
    "rule-yesterday": video_pb2.PLACEMENT_POLICY_RULE_YESTERDAY,
    "first-request-fill": video_pb2.PLACEMENT_POLICY_FIRST_REQUEST_FILL,
})
AUDIO_TRACK_KINDS = {"main": video_pb2.AUDIO_TRACK_KIND_MAIN, "dub": video_pb2.AUDIO_TRACK_KIND_DUB,
                     "description": video_pb2.AUDIO_TRACK_KIND_DESCRIPTION}
AUDIO_TRACK_KIND_NAMES = {number: text for text, number in AUDIO_TRACK_KINDS.items()}
AUDIO_TRACK_STATUS_NAMES = {video_pb2.AUDIO_TRACK_STATUS_PROCESSING: "processing",
                            video_pb2.AUDIO_TRACK_STATUS_READY: "ready", video_pb2.AUDIO_TRACK_STATUS_FAILED: "failed"}
