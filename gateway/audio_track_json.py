"""The JSON shape of a video's alternate audio tracks, as the API and the watch payload answer them."""
from __future__ import annotations

from longtail.metadata.v1 import video_pb2
from longtail_common.proto_enums import AUDIO_TRACK_KIND_NAMES, AUDIO_TRACK_STATUS_NAMES


def track_json(track: video_pb2.AudioTrack, full: bool) -> dict:
    """A track as the API answers it; `full` (its owner) adds its status and any reason."""
    body = {"language": track.language, "label": track.label, "kind": AUDIO_TRACK_KIND_NAMES.get(track.kind, "")}
    if full:
        body["status"] = AUDIO_TRACK_STATUS_NAMES.get(track.status, "processing")
        if track.failure_reason:
            body["failure_reason"] = track.failure_reason
    return body


def audio_tracks_json(video: video_pb2.Video) -> list[dict]:
    """The watch payload's `audio_tracks`: the playable ones, by language and kind."""
    ready = [t for t in video.audio_tracks if t.status == video_pb2.AUDIO_TRACK_STATUS_READY]
    return [track_json(t, False) for t in sorted(ready, key=lambda t: (t.language, t.kind))]
