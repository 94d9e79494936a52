"""Which stream a client is handed: the codec family it plays best among those a video was
encoded in, the manifest for the asked-for protocol, and the audio codec that comes with it.

Pure functions over the video record; the watch route (routes/videos.py) builds the
payload from their answer.
"""
from __future__ import annotations

from dataclasses import dataclass

from longtail.metadata.v1 import video_pb2
from longtail_common.proto_enums import STREAM_PROTOCOL
from gateway.errors import ApiError

# Client platform -> codec families it can play, best first. H.264 plays everywhere.
CLIENT_CODECS = {
    "web": ["av1", "vp9", "h264"],
    "chrome": ["av1", "vp9", "h264"],
    "firefox": ["av1", "vp9", "h264"],
    "android": ["av1", "vp9", "h264"],
    "safari": ["h264"],
    "ios": ["h264"],
    "tv": ["h264"],
    "legacy": ["h264"],
}
PROTOCOLS = ("hls", "dash")

# Sample entry of an RFC 6381 audio codecs entry -> the audio codec's plain name.
AUDIO_CODEC_NAMES = {"mp4a": "aac", "opus": "opus", "ac-3": "ac3", "ec-3": "eac3", "flac": "flac"}


def audio_codec_of(codecs: str) -> str | None:
    """The audio codec a rendition's codecs string names ("avc1.64001f,mp4a.40.2" -> "aac"),
    None when it names none (a video without sound)."""
    for entry in codecs.split(","):
        name = AUDIO_CODEC_NAMES.get(entry.strip().lower().split(".")[0])
        if name:
            return name
    return None


def client_from_user_agent(user_agent: str) -> str:
    ua = user_agent.lower()
    if "iphone" in ua or "ipad" in ua:
        return "ios"
    if "smart-tv" in ua or "smarttv" in ua or "tizen" in ua or "webos" in ua:
        return "tv"
    if "android" in ua:
        return "android"
    if "firefox" in ua:
        return "firefox"
    if "chrome" in ua or "chromium" in ua:
        return "chrome"
    if "safari" in ua:
        return "safari"
    return "legacy"


def client_platform(given: str, user_agent: str) -> str:
    """The client as given (?client=), else guessed from its User-Agent; 400 if unknown."""
    client = (given or client_from_user_agent(user_agent)).lower()
    if client not in CLIENT_CODECS:
        raise ApiError(400, "INVALID_ARGUMENT", f"unknown client {client!r}; one of {sorted(CLIENT_CODECS)}")
    return client


def streaming_protocol(given: str) -> str:
    protocol = given.lower() or "hls"
    if protocol not in PROTOCOLS:
        raise ApiError(400, "INVALID_ARGUMENT", "protocol must be hls or dash")
    return protocol


@dataclass
class StreamChoice:
    encoded: list[str]  # every codec family the video exists in, sorted
    codec: str  # the one handed out
    manifests: dict[str, video_pb2.StreamManifest]  # protocol -> that codec's manifest
    manifest: video_pb2.StreamManifest  # the one the stream URL points at


def choose_stream(video: video_pb2.Video, client: str, protocol: str) -> StreamChoice:
    # The best family this client plays among those the video was encoded in.
    encoded = sorted({m.codec for m in video.manifests})
    codec = next(c for c in CLIENT_CODECS[client] if c in encoded or c == "h264")
    by_protocol = {STREAM_PROTOCOL.text(m): m for m in video.manifests if m.codec == codec}
    # Asked-for protocol when present (videos made before DASH have HLS only).
    manifest = by_protocol.get(protocol) or by_protocol.get("hls") or next(iter(by_protocol.values()), None)
    if manifest is None:
        raise ApiError(500, "INTERNAL", "video has no H.264 manifest")
    return StreamChoice(encoded, codec, by_protocol, manifest)
