"""Probing and transcoding: the only module that knows about ffmpeg.

* `probe` opens the file with PyAV (the imageio-ffmpeg wheel ships ffmpeg but no ffprobe)
  and decodes the first video frame, so a file that merely looks like a video is caught
  here with a clear reason instead of deep inside ffmpeg.
* `ladder_for` picks the rungs for a source: never above the source resolution.
* `transcode_hls` runs ONE ffmpeg process (built with ffmpeg-python, run on the
  imageio-ffmpeg binary) that decodes once, splits, scales and encodes every rung, and
  writes an HLS stream per rung plus the master playlist. Keyframes are forced on segment
  boundaries so every rung switches cleanly.

Every failure a user's file can cause raises MediaError with a reason meant for the
uploader; the process is killed on timeout and when the worker dies (PDEATHSIG).
"""
from __future__ import annotations

import ctypes
import math
import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import ffmpeg  # ffmpeg-python: builds the command line
import imageio_ffmpeg

SEGMENT_SECONDS = 4
# H.264 preset: "veryfast" keeps a 2-core worker near real time at 720p; configurable.
X264_PRESET = os.environ.get("LONGTAIL_X264_PRESET", "veryfast")
AUDIO_BITRATE_BPS = 128_000
MAX_FRAME_RATE = 60
# A transcode that yields less than this share of the probed duration came from a
# truncated or damaged file; publishing it would show viewers a video that stops early.
MIN_DECODED_SHARE = 0.9


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


@dataclass(frozen=True)
class Rung:
    name: str  # e.g. "720p": the short side of the picture
    width: int
    height: int
    video_bitrate_bps: int
    h264_level: str  # "3.1"

    @property
    def codecs(self) -> str:
        level = int(float(self.h264_level) * 10)
        return f"avc1.6400{level:02x}"  # High profile


@dataclass
class RenditionOutput:
    codec: str
    width: int
    height: int
    bitrate_bps: int  # measured average over the whole stream (video + audio)
    container: str
    playlist_path: str  # relative to the output directory
    frame_rate: float
    codecs: str


@dataclass
class TranscodeOutput:
    renditions: list[RenditionOutput] = field(default_factory=list)
    master_path: str = "master.m3u8"
    poster_path: str = ""
    poster_width: int = 0
    poster_height: int = 0
    duration_s: float = 0.0


# Short side -> target average video bitrate and H.264 level. Close to Apple's HLS
# authoring ladder for 30 fps content; per-title tuning refines it later.
LADDER = [
    (240, 300_000, "3.0"),
    (360, 700_000, "3.0"),
    (480, 1_200_000, "3.1"),
    (720, 2_500_000, "3.1"),
    (1080, 5_000_000, "4.0"),
]


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


# ---------------------------------------------------------------------------------------
# probe


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


# ---------------------------------------------------------------------------------------
# ladder


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def ladder_for(info: MediaInfo) -> list[Rung]:
    """Rungs up to the source's short side; the source itself is the top rung when it
    falls between two standard ones, so nothing is thrown away and nothing upscaled."""
    short, long_ = min(info.width, info.height), max(info.width, info.height)
    portrait = info.height > info.width
    rungs: list[Rung] = []
    for p, bitrate, level in LADDER:
        if p > short:
            break
        rungs.append(_rung(p, p * long_ / short, bitrate, level, portrait))
    top = rungs[-1].name if rungs else None
    top_p = int(top[:-1]) if top else 0
    if short > top_p * 1.1 and short < 1440:
        # e.g. 432p or 818p sources: add a rung at the source size with an interpolated bitrate
        bitrate, level = _interpolate_bitrate(short)
        native = short - short % 2  # round down: an odd source size must not be upscaled
        rungs.append(_rung(native, native * long_ / short, bitrate, level, portrait))
    return rungs


def _rung(short_side: int, long_side: float, bitrate: int, level: str, portrait: bool) -> Rung:
    s, l_ = _even(short_side), _even(long_side)
    w, h = (s, l_) if portrait else (l_, s)
    return Rung(name=f"{s}p", width=w, height=h, video_bitrate_bps=bitrate, h264_level=level)


def _interpolate_bitrate(short_side: int) -> tuple[int, str]:
    # bitrate grows roughly with pixel count^0.75 between ladder points
    points = [(p, b) for p, b, _ in LADDER]
    lo = max((pt for pt in points if pt[0] <= short_side), default=points[0])
    hi = min((pt for pt in points if pt[0] >= short_side), default=points[-1])
    if hi[0] == lo[0]:
        bitrate = lo[1] * (short_side / lo[0]) ** 1.5
    else:
        t = (math.log(short_side) - math.log(lo[0])) / (math.log(hi[0]) - math.log(lo[0]))
        bitrate = math.exp(math.log(lo[1]) + t * (math.log(hi[1]) - math.log(lo[1])))
    level = "3.0" if short_side <= 360 else "3.1" if short_side <= 720 else "4.0"
    return int(round(bitrate, -4)), level


# ---------------------------------------------------------------------------------------
# transcode


def build_hls_command(src: str, out_dir: str, info: MediaInfo, rungs: list[Rung]) -> list[str]:
    inp = ffmpeg.input(src)
    video = inp[str(info.video_stream_index)]
    fps = min(info.frame_rate or 30.0, MAX_FRAME_RATE)
    if info.frame_rate > MAX_FRAME_RATE:
        video = video.filter("fps", fps=MAX_FRAME_RATE)
    split = video.filter_multi_output("split", len(rungs))
    streams = []
    kwargs: dict[str, object] = {}
    var_map = []
    for i, rung in enumerate(rungs):
        v = split.stream(i).filter("scale", rung.width, rung.height, flags="bicubic").filter("format", "yuv420p")
        streams.append(v)
        kwargs.update({
            f"b:v:{i}": rung.video_bitrate_bps,
            f"maxrate:v:{i}": int(rung.video_bitrate_bps * 1.5),
            f"bufsize:v:{i}": int(rung.video_bitrate_bps * 2),
            f"level:v:{i}": rung.h264_level,
        })
        var_map.append(f"v:{i},a:{i},name:{rung.name}" if info.has_audio else f"v:{i},name:{rung.name}")
    if info.has_audio:
        audio = inp[str(info.audio_stream_index)]
        asplit = audio.filter_multi_output("asplit", len(rungs))
        streams.extend(asplit.stream(i) for i in range(len(rungs)))
        kwargs.update({"c:a": "aac", "b:a": AUDIO_BITRATE_BPS, "ac": 2, "ar": 48000})
    out = ffmpeg.output(
        *streams,
        os.path.join(out_dir, "%v", "playlist.m3u8"),
        f="hls",
        **{
            "c:v": "libx264",
            "preset": X264_PRESET,
            "profile:v": "high",
            "force_key_frames": f"expr:gte(t,n_forced*{SEGMENT_SECONDS})",
            "sc_threshold": 0,
            "hls_time": SEGMENT_SECONDS,
            "hls_playlist_type": "vod",
            "hls_segment_type": "mpegts",
            "hls_segment_filename": os.path.join(out_dir, "%v", "segment_%05d.ts"),
            "master_pl_name": "master.m3u8",
            "var_stream_map": " ".join(var_map),
            "max_muxing_queue_size": 4096,
            **kwargs,
        },
    )
    args = out.global_args("-nostdin", "-hide_banner", "-loglevel", "error", "-y").compile(cmd=ffmpeg_exe())
    return args


def transcode_hls(src: str, out_dir: str, info: MediaInfo, rungs: list[Rung], timeout_s: float = 3600) -> TranscodeOutput:
    if not rungs:
        raise MediaError("no rendition fits this video's size")
    _run(build_hls_command(src, out_dir, info, rungs), timeout_s, "transcoding")
    out = Path(out_dir)
    if not (out / "master.m3u8").exists():
        raise MediaError("transcoding produced no master playlist")
    result = TranscodeOutput(master_path="master.m3u8")
    for rung in rungs:
        playlist = out / rung.name / "playlist.m3u8"
        if not playlist.exists():
            raise MediaError(f"transcoding produced no {rung.name} playlist")
        duration = playlist_duration(playlist)
        size = sum(p.stat().st_size for p in playlist.parent.glob("segment_*.ts"))
        result.renditions.append(RenditionOutput(
            codec="h264", width=rung.width, height=rung.height,
            bitrate_bps=int(size * 8 / duration) if duration > 0 else rung.video_bitrate_bps,
            container="mpegts", playlist_path=f"{rung.name}/playlist.m3u8",
            frame_rate=min(info.frame_rate, MAX_FRAME_RATE),
            codecs=rung.codecs + (",mp4a.40.2" if info.has_audio else ""),
        ))
        result.duration_s = max(result.duration_s, duration)
    if result.duration_s < info.duration_s * MIN_DECODED_SHARE:
        raise MediaError(
            f"the file is truncated or damaged: only {result.duration_s:.1f} s of its "
            f"{info.duration_s:.1f} s could be decoded"
        )
    _poster(src, out, info, result, timeout_s)
    return result


def _poster(src: str, out: Path, info: MediaInfo, result: TranscodeOutput, timeout_s: float) -> None:
    # A frame a little into the video (the first is often black), at most 720 high.
    at = min(info.duration_s * 0.1, 5.0)
    height = min(720, max(r.height for r in result.renditions))
    width = _even(height * info.width / info.height)
    args = (
        ffmpeg.input(src, ss=at)
        .output(str(out / "poster.jpg"), vframes=1, vf=f"scale={width}:{height}", **{"q:v": 3})
        .global_args("-nostdin", "-hide_banner", "-loglevel", "error", "-y")
        .compile(cmd=ffmpeg_exe())
    )
    _run(args, min(timeout_s, 120), "making the poster")
    if (out / "poster.jpg").exists():
        result.poster_path, result.poster_width, result.poster_height = "poster.jpg", width, height


_EXTINF = re.compile(rb"#EXTINF:([0-9.]+)")


def playlist_duration(path: Path) -> float:
    return sum(float(m.group(1)) for m in _EXTINF.finditer(path.read_bytes()))


def _die_with_parent() -> None:
    # Linux: ffmpeg gets SIGKILL if the worker dies, so a killed worker leaves no orphan encoding.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _run(args: list[str], timeout_s: float, what: str) -> None:
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=_die_with_parent)
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise MediaError(f"{what} took longer than {timeout_s:.0f} s and was stopped")
    if proc.returncode != 0:
        lines = [ln for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
        detail = "; ".join(lines[-3:])[:500] or f"exit code {proc.returncode}"
        raise MediaError(f"{what} failed: {detail}")
