"""A video's captions in its manifests as they are served: which served keys are master
playlists or MPDs, and the subtitle tracks (gateway/manifests_extra.py) that its captions
add to them. The stored manifests stay as the transcoder wrote them, so a caption added
or removed after READY shows in the next manifest fetched, with no re-transcode.
"""
from __future__ import annotations

import re

from longtail.metadata.v1 import caption_pb2, video_pb2
from gateway.manifests_extra import ExtraTrack, hls_master_with, manifest_video, mpd_with

SUBTITLES_GROUP = "subs"
# Apple's characteristic for captions that carry sounds besides the dialogue (SDH).
SDH = "public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound"


CAPTION_KEY = re.compile(r"videos/[A-Za-z0-9][A-Za-z0-9_-]{0,63}/captions/[A-Za-z0-9-]+/[0-9a-f]+/[a-z0-9_]+\.(vtt|m3u8)")


def is_caption_key(key: str) -> bool:
    """Whether `key` is one of a caption's files (videos/<id>/captions/<lang>/<version>/...)."""
    return CAPTION_KEY.fullmatch(key) is not None



def caption_tracks(video: video_pb2.Video) -> list[ExtraTrack]:
    tracks = []
    for c in video.captions:
        sdh = c.kind == caption_pb2.CAPTION_KIND_CAPTIONS
        tracks.append(ExtraTrack(media_type="SUBTITLES", group_id=SUBTITLES_GROUP, language=c.language,
                                 name=c.label or c.language, hls_key=c.playlist_object_key, dash_key=c.object_key,
                                 characteristics=SDH if sdh else "", dash_role="caption" if sdh else "subtitle"))
    return tracks


def with_captions(key: str, body: bytes, video: video_pb2.Video) -> bytes:
    """The served manifest `key` (its stored bytes) with the video's captions added."""
    tracks = caption_tracks(video)
    if not tracks:
        return body
    if key.endswith(".mpd"):
        return mpd_with(body, key, tracks)
    return hls_master_with(body.decode("utf-8"), key, tracks).encode()
