"""The JSON shape of a video as the API answers it, with its ad breaks and captions."""
from __future__ import annotations

from fastapi import Request

from longtail.metadata.v1 import caption_pb2, video_pb2
from longtail_common.ports import ObjectStore
from longtail_common.proto_enums import THUMBNAIL_KIND
from gateway.downloads import downloads_enabled
from gateway.media_links import media_url
from gateway.video_access import privacy_name

S = video_pb2.VideoStatus
CAPTION_KIND_NAMES = {caption_pb2.CAPTION_KIND_SUBTITLES: "subtitles", caption_pb2.CAPTION_KIND_CAPTIONS: "captions"}


def status_name(value: int) -> str:
    return S.Name(value).removeprefix("VIDEO_STATUS_")


def video_json(request: Request, objects: ObjectStore, video: video_pb2.Video, account: str | None = None) -> dict:
    """The video as the API shows it; a private video's image URLs are for `account` only."""
    body = {
        "id": video.id,
        "title": video.title,
        "description": video.description,
        "channel": {"id": video.channel.id, "name": video.channel.name},
        "status": status_name(video.status),
        "privacy": privacy_name(video),
        "duration_seconds": round(video.duration_seconds, 3),
        "language": video.language,
        "category": video.category,
        "create_time": video.create_time.ToJsonString() if video.HasField("create_time") else None,
        "etag": video.etag,
        "downloads_enabled": downloads_enabled(video, request.app.state.config),
    }
    if video.status == S.VIDEO_STATUS_FAILED:
        body["failure_reason"] = video.failure_reason
    if video.status == S.VIDEO_STATUS_READY:
        body["publish_time"] = video.publish_time.ToJsonString()
        body["thumbnails"] = [
            {"kind": THUMBNAIL_KIND.text(t), "url": media_url(request, objects, t.object_key, account),
             "width": t.width, "height": t.height}
            for t in video.thumbnails
        ]
    return body


def ad_breaks_json(video: video_pb2.Video) -> list[dict]:
    breaks = list(video.ad_breaks)
    if not breaks:
        # House pre-roll until an ad server is wired in: players always get the shape.
        breaks = [video_pb2.AdBreak(position=video_pb2.AD_POSITION_PRE_ROLL, offset_seconds=0, duration_seconds=5,
                                    creative_url="", ad_id="house-preroll")]
    return [
        {
            "position": video_pb2.AdPosition.Name(b.position).removeprefix("AD_POSITION_").lower(),
            "offset_seconds": b.offset_seconds,
            "duration_seconds": b.duration_seconds,
            "creative_url": b.creative_url,
            "ad_id": b.ad_id,
        }
        for b in breaks
    ]


def caption_json(request: Request, objects: ObjectStore, caption: caption_pb2.Caption, account: str | None) -> dict:
    """A caption as the API shows it (the watch payload lists the same); `url`, its WebVTT
    file, is signed like the video's other media."""
    return {"language": caption.language, "label": caption.label,
            "kind": CAPTION_KIND_NAMES.get(caption.kind, "subtitles"), "automatic": caption.automatic,
            "url": media_url(request, objects, caption.object_key, account), "cue_count": caption.cue_count,
            "size_bytes": caption.size_bytes,
            "create_time": caption.create_time.ToJsonString() if caption.HasField("create_time") else None}
