"""What a source file is, and whether we take it: the checks before any encode.

* `probe` opens the file with PyAV (the imageio-ffmpeg wheel ships ffmpeg but no ffprobe)
  and decodes the first video frame, so a file that merely looks like a video is caught
  here with a clear reason instead of deep inside ffmpeg.
* `check_limits` rejects sources beyond the configured duration/resolution before any work.

Every failure a user's file can cause, here or in any later step, raises MediaError with a
reason meant for the uploader.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction


class MediaError(Exception):
    """The input cannot be turned into a stream; `reason` is shown to the uploader."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class MediaInfo:
    width: int  # display size, after rotation
    height: int
    rotation: int  # degrees clockwise the player must rotate the coded picture
    duration_s: float
    frame_rate: float
    video_codec: str
    video_stream_index: int
    has_audio: bool
    audio_stream_index: int | None = None
    audio_codec: str = ""
    audio_channels: int = 0
    # The picture inside black bars (width, height, x, y), display orientation; None: the
    # whole frame. Set by ffmpeg_graphs.detect_crop; the ladder encodes only this.
    crop: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Limits:
    """What a worker accepts; anything beyond is rejected before work with a clear reason."""

    max_duration_s: float = 4 * 3600
    max_long_side: int = 4096
    max_short_side: int = 2160
    max_source_bytes: int = 8 * 1024**3


def check_limits(info: MediaInfo, size_bytes: int, limits: Limits) -> None:
    if size_bytes > limits.max_source_bytes:
        raise MediaError(f"the file is {size_bytes / 1e9:.2f} GB; the limit is {limits.max_source_bytes / 1e9:.2f} GB")
    if info.duration_s > limits.max_duration_s:
        raise MediaError(f"the video is {info.duration_s:.0f} s long; the limit is {limits.max_duration_s:.0f} s")
    long_, short = max(info.width, info.height), min(info.width, info.height)
    if long_ > limits.max_long_side or short > limits.max_short_side:
        raise MediaError(f"the video is {info.width}x{info.height}; the limit is "
                         f"{limits.max_long_side}x{limits.max_short_side} (either orientation)")


def probe(path: str) -> MediaInfo:
    import av

    if os.path.getsize(path) == 0:
        raise MediaError("the uploaded file is empty")
    try:
        container = av.open(path)
    except av.error.FFmpegError as exc:
        raise MediaError(f"not a video file we can read ({_short(exc)})") from exc
    with container:
        video = _best_stream(container.streams.video)
        if video is None:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise MediaError(f"the file has no video stream (streams found: {', '.join(kinds)})")
        audio = _best_stream(container.streams.audio)
        try:
            frame = next(container.decode(video), None)
        except av.error.FFmpegError as exc:
            raise MediaError(f"the video stream cannot be decoded ({_short(exc)})") from exc
        if frame is None:
            raise MediaError("the video stream has no decodable frames")
        rotation = _rotation(frame, video)
        width, height = frame.width, frame.height
        if rotation % 180:
            width, height = height, width
        duration_s = _duration(container, video)
        if duration_s <= 0:
            raise MediaError("the video has no duration")
        rate = video.average_rate or video.guessed_rate or Fraction(30)
        return MediaInfo(
            width=width,
            height=height,
            rotation=rotation,
            duration_s=duration_s,
            frame_rate=round(float(rate), 3),
            video_codec=video.codec_context.name,
            video_stream_index=video.index,
            has_audio=audio is not None,
            audio_stream_index=audio.index if audio is not None else None,
            audio_codec=audio.codec_context.name if audio is not None else "",
            audio_channels=(audio.codec_context.channels if audio is not None else 0),
        )


def probe_audio(path: str) -> int:
    """The index of the file's main audio stream (an alternate audio track's upload: any
    file with sound, with or without pictures); MediaError if there is none that decodes."""
    import av

    if os.path.getsize(path) == 0:
        raise MediaError("the uploaded file is empty")
    try:
        container = av.open(path)
    except av.error.FFmpegError as exc:
        raise MediaError(f"not an audio or video file we can read ({_short(exc)})") from exc
    with container:
        audio = _best_stream(container.streams.audio)
        if audio is None:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise MediaError(f"the file has no audio stream (streams found: {', '.join(kinds)})")
        try:
            frame = next(container.decode(audio), None)
        except av.error.FFmpegError as exc:
            raise MediaError(f"the audio stream cannot be decoded ({_short(exc)})") from exc
        if frame is None:
            raise MediaError("the audio stream has no decodable frames")
        return audio.index
# A bar narrower than this share of its side is not worth a crop (a few dark edge pixels
# are common in camera footage); the picture left must keep at least MIN_ACTIVE of each side.
MIN_BAR = 0.02
MIN_ACTIVE = 0.5
CENTRED_TOLERANCE_PX = 4  # letterbox and pillarbox bars are centred, give or take rounding


def letterbox(width: int, height: int, box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """The crop (w, h, x, y, all even) that removes the black bars around `box` (the
    non-black area cropdetect found in a width x height picture), or None when the bars
    are thin, off-centre (not a letterbox: a dark scene edge) or leave too little."""
    w, h, x, y = box
    left, right, top, bottom = x, width - x - w, y, height - y - h
    if w <= 0 or h <= 0 or min(left, right, top, bottom) < 0:
        return None
    if w < width * MIN_ACTIVE or h < height * MIN_ACTIVE:
        return None
    cut_x = min(left, right) >= width * MIN_BAR and abs(left - right) <= CENTRED_TOLERANCE_PX
    cut_y = min(top, bottom) >= height * MIN_BAR and abs(top - bottom) <= CENTRED_TOLERANCE_PX
    if not (cut_x or cut_y):
        return None
    w, x = (w - w % 2, x + x % 2) if cut_x else (width - width % 2, 0)
    h, y = (h - h % 2, y + y % 2) if cut_y else (height - height % 2, 0)
    return (w, h, x, y)


def _best_stream(streams):
    # Skip attached pictures (cover art is a "video" stream of one frame).
    candidates = [s for s in streams if not (s.disposition & 0x400)] if streams else []
    if not candidates:
        return None
    return max(candidates, key=lambda s: (s.codec_context.width or 0) * (s.codec_context.height or 0)
               if s.type == "video" else (s.codec_context.channels or 0))


def _rotation(frame, stream) -> int:
    rotation = getattr(frame, "rotation", None)
    if rotation is None:
        rotation = int(stream.metadata.get("rotate", 0) or 0)
    # PyAV reports counter-clockwise degrees from the display matrix; normalise to 0..359.
    return int(round(rotation)) % 360


def _duration(container, video) -> float:
    if video.duration and video.time_base:
        return float(video.duration * video.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return 0.0


def _short(exc: Exception) -> str:
    return str(exc).split(": '")[0][:200]
