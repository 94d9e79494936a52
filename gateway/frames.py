"""Still frames of a READY video at any moment, cut from its stored H.264 renditions: the
thumbnail-at-time endpoint and the poster its owner picks by time.

One job: one JPEG from one segment. The smallest rendition at least as wide as asked is
read (its init segment and the one CMAF segment covering the moment: each starts on a
keyframe, so at most one segment is decoded), ffmpeg (a graph built with ffmpeg-python)
seeks to the moment inside it and scales the frame. ffmpeg runs as an asyncio subprocess
(longtail_common.ffmpeg_run: dies with the gateway), never on the event loop, at most
`thumbnails.max_concurrent_frames` at once per process, and is killed past
`thumbnails.frame_timeout_s`.
"""
from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass

import ffmpeg

from longtail.metadata.v1 import video_pb2
from longtail_common import ffmpeg_run
from longtail_common.ports import MEDIA_BUCKET, NotFoundError, ObjectStore
from gateway.errors import ApiError


@dataclass(frozen=True)
class Segment:
    init_key: str
    key: str
    start_s: float  # where the segment starts in the video
    duration_s: float


def even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def pick_rendition(video: video_pb2.Video, width: int) -> video_pb2.Rendition:
    """The smallest H.264 rendition at least `width` wide (the largest if none is)."""
    h264 = sorted((r for r in video.renditions if r.codec == "h264"), key=lambda r: (r.width * r.height, r.bitrate_bps))
    if not h264:
        raise ApiError(409, "NOT_READY", f"video {video.id} has no H.264 rendition")
    return next((r for r in h264 if r.width >= width), h264[-1])


def segment_at(playlist: str, playlist_key: str, at_s: float) -> Segment:
    """The CMAF segment of an HLS media playlist that covers `at_s` (the last one past the end)."""
    base = playlist_key.rsplit("/", 1)[0]
    init, start, duration, found = "", 0.0, 0.0, None
    for line in playlist.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MAP:") and 'URI="' in line:
            init = line.split('URI="', 1)[1].split('"', 1)[0]
        elif line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:"):].split(",", 1)[0])
        elif line and not line.startswith("#"):
            found = Segment(f"{base}/{init}", f"{base}/{line}", start, duration)
            if at_s < start + duration:
                return found
            start += duration
    if found is None or not init:
        raise ApiError(409, "NOT_READY", "the rendition has no CMAF segments")
    return found


def frame_command(source: str, out: str, offset_s: float, width: int, height: int) -> list[str]:
    picture = ffmpeg.input(source, ss=f"{offset_s:.3f}")["v:0"].filter("scale", width, height, flags="bicubic")
    return ffmpeg_run.command(picture.output(out, **{"frames:v": 1, "q:v": 3, "format": "image2", "c:v": "mjpeg",
                                                     "pix_fmt": "yuvj420p"}))


class FrameMaker:
    """Cuts JPEG frames out of stored renditions, a bounded number of ffmpeg runs at a time."""

    def __init__(self, objects: ObjectStore, max_concurrent: int, timeout_s: float):
        self.objects = objects
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max(1, max_concurrent))

    async def frame(self, video: video_pb2.Video, at_s: float, width: int) -> tuple[bytes, int, int]:
        """A JPEG of the video at `at_s`, `width` wide (its height keeps the picture's shape)."""
        rendition = pick_rendition(video, width)
        height = even(width * rendition.height / max(1, rendition.width))
        segment, data = await asyncio.to_thread(self._read_segment, rendition.object_key, at_s)
        offset = min(max(0.0, at_s - segment.start_s), max(0.0, segment.duration_s - 0.05))
        async with self._slots:
            jpeg = await self._run(data, offset, width, height)
        return jpeg, width, height

    def _read_segment(self, playlist_key: str, at_s: float) -> tuple[Segment, bytes]:
        try:
            playlist = self.objects.get_bytes(MEDIA_BUCKET, playlist_key).decode("utf-8")
            segment = segment_at(playlist, playlist_key, at_s)
            # init + one fragment is a playable fragmented MP4 on its own.
            return segment, (self.objects.get_bytes(MEDIA_BUCKET, segment.init_key)
                             + self.objects.get_bytes(MEDIA_BUCKET, segment.key))
        except (NotFoundError, UnicodeDecodeError, ValueError):
            raise ApiError(409, "NOT_READY", "the video's rendition is not readable") from None

    async def _run(self, data: bytes, offset_s: float, width: int, height: int) -> bytes:
        with tempfile.TemporaryDirectory(prefix="longtail-frame-") as tmp:
            source, out = os.path.join(tmp, "segment.mp4"), os.path.join(tmp, "frame.jpg")
            with open(source, "wb") as fh:
                fh.write(data)
            try:
                await ffmpeg_run.run_async(frame_command(source, out, offset_s, width, height), self.timeout_s,
                                           "making the frame")
            except ffmpeg_run.FfmpegTimedOut:
                raise ApiError(503, "UNAVAILABLE", "making the frame took too long; retry later") from None
            except ffmpeg_run.FfmpegFailed as exc:
                detail = exc.detail.rsplit("; ", 1)[-1] or "ffmpeg failed"
                raise ApiError(503, "UNAVAILABLE", f"could not make the frame: {detail[:200]}") from None
            if not os.path.exists(out):
                raise ApiError(503, "UNAVAILABLE", "could not make the frame: no frame")
            with open(out, "rb") as fh:
                return fh.read()
