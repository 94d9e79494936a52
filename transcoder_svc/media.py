"""Probing and transcoding: the only module that knows about ffmpeg.

* `probe` opens the file with PyAV (the imageio-ffmpeg wheel ships ffmpeg but no ffprobe)
  and decodes the first video frame, so a file that merely looks like a video is caught
  here with a clear reason instead of deep inside ffmpeg.
* `check_limits` rejects sources beyond the configured duration/resolution before any work.
* `ladder_for` picks the rungs for a source (144p..2160p): never above the source size.
* `transcode` runs ONE ffmpeg process that decodes once, splits, scales and encodes every
  rung of every codec family (H.264, VP9, AV1) plus the storyboard sprite. Each family is
  one output writing CMAF (fragmented MP4) segments per rung and one stereo audio rendition:
  AAC-LC for H.264 (plays everywhere), Opus for VP9/AV1 (every client handed those plays
  Opus in MP4, and it sounds as good at fewer bits); keyframes are forced on segment
  boundaries so every rung switches cleanly. The HLS master (CODECS/BANDWIDTH/RESOLUTION)
  and the DASH MPD are then written here from the measured segments, so both protocols
  share the same segment files.
* Rungs are plain data: per-title encoding may hand in any bitrates (and a measured VMAF).

Every failure a user's file can cause raises MediaError with a reason meant for the
uploader; the process is killed on timeout and when the worker dies (PDEATHSIG).
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg

from longtail_common.runtime import die_with_parent

SEGMENT_SECONDS = 4
# Speed knobs, sized for a 2-core worker; configurable per deployment.
X264_PRESET = os.environ.get("LONGTAIL_X264_PRESET", "veryfast")
VP9_CPU_USED = int(os.environ.get("LONGTAIL_VP9_CPU_USED", "8"))  # realtime deadline, 5..8 on small boxes
SVTAV1_PRESET = int(os.environ.get("LONGTAIL_SVTAV1_PRESET", "10"))
AUDIO_BITRATE_BPS = 128_000  # AAC-LC stereo
OPUS_BITRATE_BPS = 96_000  # Opus stereo: as good as AAC at 128 kb/s
# Audio codec of each family's manifests; the RFC 6381 string HLS CODECS and DASH @codecs use.
FAMILY_AUDIO_CODEC = {"h264": "aac", "vp9": "opus", "av1": "opus"}
AUDIO_CODECS_STRING = {"aac": "mp4a.40.2", "opus": "opus"}
MAX_FRAME_RATE = 60
CODEC_FAMILIES = ("h264", "vp9", "av1")
# A transcode that yields less than this share of the probed duration came from a
# truncated or damaged file; publishing it would show viewers a video that stops early.
MIN_DECODED_SHARE = 0.9
STORYBOARD_TILE_WIDTH = 160
STORYBOARD_MAX_TILES = 100  # one 10x10 sheet
STORYBOARD_COLUMNS = 10


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
    video_bitrate_bps: int  # H.264 target; other families scale it (FAMILY_BITRATE_FACTOR) or set their own
    frame_rate: float = 30.0
    vmaf: float = 0.0  # H.264's, measured by per-title encoding, 0 when not measured
    # Per-title encoding of the other families (pertitle.per_title_families): each one's
    # bitrate for this rung (family -> bps; a family missing: FAMILY_BITRATE_FACTOR of the
    # H.264 rate) and its VMAF measured there (a family missing: not measured).
    family_bitrate_bps: dict[str, int] = field(default_factory=dict, hash=False)
    family_vmaf: dict[str, float] = field(default_factory=dict, hash=False)

    @property
    def h264_level(self) -> str:
        return _level(H264_LEVELS, self)

    @property
    def codecs(self) -> str:
        return self.codecs_for("h264")

    def bitrate_for(self, family: str, top: bool = False) -> int:
        """The family's target for this rung; `top`: it is the ladder's top rung."""
        if family in self.family_bitrate_bps:
            return self.family_bitrate_bps[family]  # chosen for this video, from measured VMAF
        lower, top_factor = FAMILY_BITRATE_FACTOR[family]
        return int(self.video_bitrate_bps * (top_factor if top else lower))

    def codecs_for(self, family: str) -> str:
        """RFC 6381 string of the video track (HLS CODECS, DASH @codecs)."""
        if family == "h264":
            level = int(round(float(self.h264_level) * 10))
            return f"avc1.6400{level:02x}"  # High profile
        if family == "vp9":
            return f"vp09.00.{int(round(float(_level(VP9_LEVELS, self)) * 10)):02d}.08"  # profile 0, 8 bit
        if family == "av1":
            major, minor = _level(AV1_LEVELS, self).split(".")
            seq_level_idx = (int(major) - 2) * 4 + int(minor)
            return f"av01.0.{seq_level_idx:02d}M.08"  # Main profile, Main tier, 8 bit
        raise ValueError(f"unknown codec family {family!r}")


# Level tables: (level, max luma samples per frame, max luma samples per second).
H264_LEVELS = [("3.0", 414_720, 10_368_000), ("3.1", 921_600, 27_648_000), ("3.2", 1_310_720, 55_296_000),
               ("4.0", 2_097_152, 62_914_560), ("4.2", 2_228_224, 133_693_440),
               ("5.0", 5_652_480, 150_994_944), ("5.1", 9_437_184, 251_658_240),
               ("5.2", 9_437_184, 530_841_600)]
VP9_LEVELS = [("2.1", 245_760, 9_216_000), ("3.0", 552_960, 20_736_000), ("3.1", 983_040, 36_864_000),
              ("4.0", 2_228_224, 83_558_400), ("4.1", 2_228_224, 160_432_128),
              ("5.0", 8_912_896, 311_951_360), ("5.1", 8_912_896, 588_251_136),
              ("5.2", 8_912_896, 1_176_502_272)]
AV1_LEVELS = [("2.0", 147_456, 4_423_680), ("2.1", 278_784, 8_363_520), ("3.0", 665_856, 19_975_680),
              ("3.1", 1_065_024, 31_950_720), ("4.0", 2_359_296, 70_778_880), ("4.1", 2_359_296, 141_557_760),
              ("5.0", 8_912_896, 267_386_880), ("5.1", 8_912_896, 534_773_760), ("5.2", 8_912_896, 1_069_547_520)]


def _level(table, rung: Rung) -> str:
    samples = rung.width * rung.height
    rate = samples * max(rung.frame_rate, 1.0)
    for level, max_fs, max_sr in table:
        if samples <= max_fs and rate <= max_sr:
            return level
    return table[-1][0]


# Each family's target as a fraction of the H.264 rung's: (the ladder's lower rungs, its top
# rung). Measured, not assumed (bench/codec_bench.py --factors; BENCHMARKS.md, "Codec
# families"): the fraction at which the family's rung scores within half a VMAF point of the
# H.264 rung, on every bench clip. The top rung is where H.264 nears VMAF 95-100 and the
# others' curves flatten later. A fraction of the request is not one of the bits: SVT-AV1
# spends well under what it is asked for.
# VP9 at libvpx's realtime speed 8 needs more bits than x264 veryfast on the film's small
# rungs: at equal quality it saves nothing; AV1 (SVT-AV1 preset 10) saves about a third.
FAMILY_BITRATE_FACTOR = {"h264": (1.0, 1.0), "vp9": (1.35, 1.0), "av1": (0.75, 1.1)}


@dataclass
class RenditionOutput:
    codec: str
    name: str
    width: int
    height: int
    bitrate_bps: int  # peak bandwidth (video + audio) as advertised in the manifests
    average_bitrate_bps: int
    container: str
    playlist_path: str  # relative to the output directory
    frame_rate: float
    codecs: str
    duration_s: float = 0.0
    vmaf: float = 0.0


@dataclass
class FamilyOutput:
    codec: str
    hls_path: str  # master playlist, relative to the output directory
    dash_path: str  # MPD
    audio_codec: str = ""  # "aac" | "opus"; "" when the video has no audio
    renditions: list[RenditionOutput] = field(default_factory=list)


@dataclass
class TranscodeOutput:
    families: list[FamilyOutput] = field(default_factory=list)
    poster_path: str = ""
    poster_width: int = 0
    poster_height: int = 0
    storyboard_path: str = ""  # tiled JPEG sprite
    storyboard_vtt_path: str = ""  # WebVTT cues pointing into the sprite with #xywh
    storyboard_width: int = 0
    storyboard_height: int = 0
    duration_s: float = 0.0

    @property
    def renditions(self) -> list[RenditionOutput]:
        return [r for f in self.families for r in f.renditions]

    @property
    def master_path(self) -> str:
        return self.families[0].hls_path


# Short side -> target average H.264 bitrate at 30 fps. Close to Apple's HLS authoring
# ladder; per-title encoding replaces these per video.
LADDER = [
    (144, 150_000),
    (240, 300_000),
    (360, 700_000),
    (480, 1_200_000),
    (720, 2_500_000),
    (1080, 5_000_000),
    (1440, 9_000_000),
    (2160, 16_000_000),
]
HIGH_FRAME_RATE_FACTOR = 1.5  # 50/60 fps rungs get this much more than the 30 fps figure


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


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
    fps = min(info.frame_rate or 30.0, MAX_FRAME_RATE)
    rungs: list[Rung] = []
    for p, bitrate in LADDER:
        if p > short:
            break
        rungs.append(_rung(p, short, long_, bitrate, portrait, fps))
    top_p = int(rungs[-1].name[:-1]) if rungs else 0
    if short > top_p * 1.1 and short < LADDER[-1][0]:
        # e.g. 432p or 818p sources: add a rung at the source size with an interpolated bitrate
        native = short - short % 2  # round down: an odd source size must not be upscaled
        rungs.append(_rung(native, short, long_, _interpolate_bitrate(native), portrait, fps))
    return rungs


def _rung(p: int, short: int, long_: int, bitrate: int, portrait: bool, fps: float) -> Rung:
    s = min(_even(p), short - short % 2)
    # never wider than the source either (an odd long side would round up by one pixel)
    l_ = min(_even(p * long_ / short), long_ - long_ % 2)
    w, h = (s, l_) if portrait else (l_, s)
    if fps > 31:
        bitrate = int(bitrate * HIGH_FRAME_RATE_FACTOR)
    return Rung(name=f"{s}p", width=w, height=h, video_bitrate_bps=bitrate, frame_rate=round(fps, 3))


def _interpolate_bitrate(short_side: int) -> int:
    # log-linear between ladder points (bitrate grows roughly with pixel count^0.75)
    points = LADDER
    lo = max((pt for pt in points if pt[0] <= short_side), default=points[0])
    hi = min((pt for pt in points if pt[0] >= short_side), default=points[-1])
    if hi[0] == lo[0]:
        bitrate = lo[1] * (short_side / lo[0]) ** 1.5
    else:
        t = (math.log(short_side) - math.log(lo[0])) / (math.log(hi[0]) - math.log(lo[0]))
        bitrate = math.exp(math.log(lo[1]) + t * (math.log(hi[1]) - math.log(lo[1])))
    return int(round(bitrate, -4))


# ---------------------------------------------------------------------------------------
# transcode


@dataclass(frozen=True)
class Storyboard:
    """Tile layout of the scrubbing sprite: one tile every `interval_s` seconds."""

    interval_s: float
    count: int
    columns: int
    rows: int
    tile_width: int
    tile_height: int


def storyboard_for(info: MediaInfo) -> Storyboard:
    interval = max(2.0, info.duration_s / STORYBOARD_MAX_TILES)
    count = max(1, min(STORYBOARD_MAX_TILES, math.ceil(info.duration_s / interval - 1e-6)))
    columns = min(STORYBOARD_COLUMNS, count)
    tile_h = _even(STORYBOARD_TILE_WIDTH * info.height / info.width)
    return Storyboard(interval, count, columns, math.ceil(count / columns), STORYBOARD_TILE_WIDTH, tile_h)


def top_rung(rungs: list[Rung]) -> Rung:
    """The ladder's top rung: the largest picture, at its highest bitrate."""
    return max(rungs, key=lambda r: (r.width * r.height, r.video_bitrate_bps))


def encoder_args(family: str, rungs: list[Rung], fps: float, top: Rung | None = None) -> list[str]:
    """Encoder options for `rungs` (stream i = rungs[i]); `top`: the ladder's top rung
    (default: the top of `rungs`)."""
    top = top or top_rung(rungs)
    gop = str(max(1, round(fps * SEGMENT_SECONDS)))  # a keyframe on every segment boundary, none between
    args: list[str] = []
    if family == "h264":
        args += ["-c:v", "libx264", "-preset", X264_PRESET, "-profile:v", "high", "-sc_threshold", "0"]
        for i, r in enumerate(rungs):
            args += [f"-level:v:{i}", r.h264_level]
    elif family == "vp9":
        args += ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", str(VP9_CPU_USED),
                 "-row-mt", "1", "-lag-in-frames", "0"]
    elif family == "av1":
        args += ["-c:v", "libsvtav1", "-preset", str(SVTAV1_PRESET), "-svtav1-params", "scd=0"]
    else:
        raise ValueError(f"unknown codec family {family!r}; one of {CODEC_FAMILIES}")
    args += ["-g", gop, "-keyint_min", gop, "-force_key_frames", f"expr:gte(t,n_forced*{SEGMENT_SECONDS})"]
    for i, r in enumerate(rungs):
        b = r.bitrate_for(family, top=r == top)
        args += [f"-b:v:{i}", str(b)]
        if family != "av1":  # SVT-AV1 takes a peak cap only in CRF mode; its VBR stays near target
            args += [f"-maxrate:v:{i}", str(int(b * 1.5)), f"-bufsize:v:{i}", str(b * 2)]
    return args


def build_command(src: str, out_dir: str, info: MediaInfo, rungs: list[Rung], families=("h264",),
                  audio: bool = True, storyboard: Storyboard | None = None) -> list[str]:
    """One ffmpeg process: decode once, scale every rung once (cascaded, see `_scale_tree`)
    and hand each rung's picture to every family's encoder; the storyboard taps the source.

    Each family is an HLS output of CMAF segments: <out>/<family>/<rung>/{init.mp4,
    segment_NNNNN.m4s, playlist.m3u8} plus <family>/audio/ (stereo, AAC-LC or Opus: see
    FAMILY_AUDIO_CODEC).
    """
    if not rungs or not families:
        raise MediaError("no rendition fits this video's size")
    fps = min(info.frame_rate or 30.0, MAX_FRAME_RATE)
    graph = _video_graph(info, rungs, families, storyboard)
    args = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", src,
            "-filter_complex", ";".join(graph)]
    with_audio = audio and info.has_audio
    for family in families:
        fam_dir = os.path.join(out_dir, family)
        for j in range(len(rungs)):
            args += ["-map", f"[{family}{j}]"]
        var_map = [f"v:{j},agroup:aud,name:{r.name}" if with_audio else f"v:{j},name:{r.name}"
                   for j, r in enumerate(rungs)]
        if with_audio:
            args += _audio_args(info, codec=FAMILY_AUDIO_CODEC[family])
            var_map.append("a:0,agroup:aud,name:audio")
        args += encoder_args(family, rungs, fps)
        args += _hls_output_args(fam_dir, var_map)
    if storyboard:
        args += ["-map", "[sb]", "-frames:v", "1", "-q:v", "4", "-update", "1",
                 os.path.join(out_dir, "thumbs", "storyboard.jpg")]
    return args


def _scale_tree(info: MediaInfo, rungs: list[Rung]) -> dict[int, int | None]:
    """Rung index -> the rung whose picture it is scaled from (None: the decoded source).

    Largest first, each rung is scaled from the smallest rung already made that is at
    least as big in both directions (and not upscaled from the source), so only the top
    rung reads the full-size picture: scaling 1080p down five times costs 2-3x the CPU of
    1080p->720p->480p->...; the cascaded pictures differ from direct bicubic by 54-60 dB
    PSNR (invisible, far below the encoders' own loss)."""
    order = sorted(range(len(rungs)), key=lambda i: rungs[i].width * rungs[i].height, reverse=True)
    parent: dict[int, int | None] = {}
    made: list[int] = []
    for i in order:
        r = rungs[i]
        fits = [j for j in made if rungs[j].width >= r.width and rungs[j].height >= r.height
                and rungs[j].width <= info.width and rungs[j].height <= info.height]
        parent[i] = min(fits, key=lambda j: rungs[j].width * rungs[j].height) if fits else None
        made.append(i)
    return parent


def _fan_out(head: str, filters: str, outs: list[str]) -> str:
    """`head` (an input label) through `filters` to every label in `outs`."""
    if len(outs) > 1:
        filters = (filters + "," if filters else "") + f"split={len(outs)}"
    return f"{head}{filters or 'null'}{''.join(outs)}"


def _video_graph(info: MediaInfo, rungs: list[Rung], families, storyboard: Storyboard | None) -> list[str]:
    """Filter chains: the decoded video scaled once per rung, each rung's picture split to
    [<family><j>] for every family (and to the rungs scaled from it); [sb] the storyboard."""
    parent = _scale_tree(info, rungs)
    children = {i: [k for k in range(len(rungs)) if parent[k] == i] for i in range(len(rungs))}
    src_outs = [f"[src{i}]" for i in range(len(rungs)) if parent[i] is None] + (["[sbsrc]"] if storyboard else [])
    pre = f"fps={MAX_FRAME_RATE}" if info.frame_rate > MAX_FRAME_RATE else ""
    graph = [_fan_out(f"[0:{info.video_stream_index}]", pre, src_outs)]
    for i in sorted(range(len(rungs)), key=lambda i: rungs[i].width * rungs[i].height, reverse=True):
        r = rungs[i]
        head = f"[src{i}]" if parent[i] is None else f"[r{parent[i]}to{i}]"
        outs = [f"[{family}{i}]" for family in families] + [f"[r{i}to{k}]" for k in children[i]]
        graph.append(_fan_out(head, f"scale={r.width}:{r.height}:flags=bicubic,setsar=1,format=yuv420p", outs))
    if storyboard:
        sb = storyboard
        graph.append(f"[sbsrc]fps=1/{sb.interval_s:.6f},scale={sb.tile_width}:{sb.tile_height},"
                     f"tile={sb.columns}x{sb.rows}[sb]")
    return graph


def _hls_output_args(fam_dir: str, var_map: list[str]) -> list[str]:
    return ["-f", "hls", "-hls_time", str(SEGMENT_SECONDS), "-hls_playlist_type", "vod",
            "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
            "-hls_flags", "independent_segments",
            "-hls_segment_filename", os.path.join(fam_dir, "%v", "segment_%05d.m4s"),
            "-var_stream_map", " ".join(var_map), "-max_muxing_queue_size", "4096",
            os.path.join(fam_dir, "%v", "playlist.m3u8")]


def _audio_args(info: MediaInfo, input_index: int = 0, codec: str = "aac") -> list[str]:
    args = ["-map", f"{input_index}:{info.audio_stream_index}"]
    if codec == "aac":
        args += ["-c:a", "aac", "-profile:a", "aac_low", "-b:a", str(AUDIO_BITRATE_BPS)]
    elif codec == "opus":  # 20 ms frames; Opus in ISO-BMFF ('Opus' sample entry + dOps)
        args += ["-c:a", "libopus", "-b:a", str(OPUS_BITRATE_BPS), "-vbr", "on", "-application", "audio"]
    else:
        raise ValueError(f"unknown audio codec {codec!r}")
    return args + ["-ac", "2", "-ar", "48000"]


def transcode(src: str, out_dir: str, info: MediaInfo, rungs: list[Rung], families=("h264",),
              timeout_s: float = 3600, storyboard: bool = True, poster: bool = True) -> TranscodeOutput:
    for family in families:
        if family not in CODEC_FAMILIES:
            raise ValueError(f"unknown codec family {family!r}; one of {CODEC_FAMILIES}")
    if not rungs:
        raise MediaError("no rendition fits this video's size")
    out = Path(out_dir)
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    sb = storyboard_for(info) if storyboard else None
    _run(build_command(src, out_dir, info, rungs, families, storyboard=sb), timeout_s, "transcoding")
    result = TranscodeOutput()
    for family in families:
        fam = _package(out, family, info, rungs)
        result.families.append(fam)
        result.duration_s = max([result.duration_s] + [r.duration_s for r in fam.renditions])
    if result.duration_s < info.duration_s * MIN_DECODED_SHARE:
        raise MediaError(
            f"the file is truncated or damaged: only {result.duration_s:.1f} s of its "
            f"{info.duration_s:.1f} s could be decoded"
        )
    if sb and (out / "thumbs" / "storyboard.jpg").exists():
        _write_storyboard_vtt(out / "thumbs" / "storyboard.vtt", sb, result.duration_s)
        result.storyboard_path, result.storyboard_vtt_path = "thumbs/storyboard.jpg", "thumbs/storyboard.vtt"
        result.storyboard_width, result.storyboard_height = sb.columns * sb.tile_width, sb.rows * sb.tile_height
    if poster:
        _poster(src, out, info, result, timeout_s)
    return result


# ---------------------------------------------------------------------------------------
# chunked transcoding: chunks encoded anywhere, then one join that packages them


def chunk_plan(duration_s: float, chunk_seconds: float) -> list[tuple[float, float]]:
    """(start, duration) per chunk. Cuts fall on segment boundaries, where every rung has a
    forced keyframe anyway, so joined chunks segment exactly like a whole-file encode."""
    step = max(SEGMENT_SECONDS, round(chunk_seconds / SEGMENT_SECONDS) * SEGMENT_SECONDS)
    count = max(1, math.ceil(duration_s / step - 1e-6))
    return [(i * step, step if i < count - 1 else 0.0) for i in range(count)]  # 0: to the end


def encode_chunk(src: str, out_dir: str, info: MediaInfo, rungs: list[Rung], families, start_s: float,
                 duration_s: float, timeout_s: float = 3600) -> dict[str, dict[str, str]]:
    """Encodes [start, start+duration) of the video (duration 0: to the end) into one
    video-only MP4 per (family, rung), from one decode. Returns family -> rung -> path."""
    if not rungs:
        raise MediaError("no rendition fits this video's size")
    fps = min(info.frame_rate or 30.0, MAX_FRAME_RATE)
    graph = _video_graph(info, rungs, families, None)  # the same cascaded scales as a whole-file encode
    # input seeking decodes from the keyframe before `start` and drops frames up to it: exact cut
    args = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-ss", f"{start_s:.6f}"]
    if duration_s > 0:
        args += ["-t", f"{duration_s:.6f}"]
    args += ["-i", src]
    outputs: dict[str, dict[str, str]] = {}
    out_args: list[str] = []
    top = top_rung(rungs)
    for family in families:
        os.makedirs(os.path.join(out_dir, family), exist_ok=True)
        for j, r in enumerate(rungs):
            path = os.path.join(out_dir, family, f"{r.name}.mp4")
            out_args += ["-map", f"[{family}{j}]", *encoder_args(family, [r], fps, top), "-an", "-f", "mp4", path]
            outputs.setdefault(family, {})[r.name] = path
    _run(args + ["-filter_complex", ";".join(graph)] + out_args, timeout_s, "transcoding a chunk")
    return outputs


def remux_rendition(video_playlist: str, audio_playlist: str | None, out: str, timeout_s: float = 3600) -> None:
    """One MP4 from a packaged rendition (its CMAF media playlist, plus the family's audio
    playlist if any), streams copied: the source of a codec upgrade once the original
    upload is gone (raw uploads are temporary)."""
    args = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", video_playlist]
    if audio_playlist:
        args += ["-i", audio_playlist, "-map", "0:v:0", "-map", "1:a:0"]
    args += ["-c", "copy", "-movflags", "+faststart", out]
    _run(args, timeout_s, "reading the top rendition back")


def join_chunks(chunks: list[dict[str, dict[str, str]]], src: str, out_dir: str, info: MediaInfo,
                rungs: list[Rung], families, timeout_s: float = 3600, storyboard: bool = True,
                poster: bool = True) -> TranscodeOutput:
    """Concatenates the chunks' encoded video (no re-encode), adds the audio (encoded once
    here: cheap) and packages exactly like `transcode`: CMAF segments, HLS master, DASH MPD."""
    out = Path(out_dir)
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    args = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    n_inputs = 0
    maps: dict[str, list[int]] = {}
    for family in families:
        for r in rungs:
            listing = out / f"concat_{family}_{r.name}.txt"
            listing.write_text("".join(f"file '{Path(c[family][r.name]).resolve()}'\n" for c in chunks))
            args += ["-f", "concat", "-safe", "0", "-i", str(listing)]
            maps.setdefault(family, []).append(n_inputs)
            n_inputs += 1
    with_audio = info.has_audio
    if with_audio:
        args += ["-vn", "-i", src]
    for family in families:
        for idx in maps[family]:
            args += ["-map", f"{idx}:v:0"]
        var_map = [f"v:{j},agroup:aud,name:{r.name}" if with_audio else f"v:{j},name:{r.name}"
                   for j, r in enumerate(rungs)]
        if with_audio:
            args += _audio_args(info, n_inputs, codec=FAMILY_AUDIO_CODEC[family])
            var_map.append("a:0,agroup:aud,name:audio")
        args += ["-c:v", "copy"] + _hls_output_args(os.path.join(out_dir, family), var_map)
    _run(args, timeout_s, "joining chunks")
    for listing in out.glob("concat_*.txt"):
        listing.unlink()
    result = TranscodeOutput()
    for family in families:
        fam = _package(out, family, info, rungs)
        result.families.append(fam)
        result.duration_s = max([result.duration_s] + [r.duration_s for r in fam.renditions])
    if result.duration_s < info.duration_s * MIN_DECODED_SHARE:
        raise MediaError(f"the file is truncated or damaged: only {result.duration_s:.1f} s of its "
                         f"{info.duration_s:.1f} s could be decoded")
    if storyboard:
        sb = storyboard_for(info)
        _run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", src, "-filter_complex",
              f"[0:{info.video_stream_index}]fps=1/{sb.interval_s:.6f},scale={sb.tile_width}:{sb.tile_height},"
              f"tile={sb.columns}x{sb.rows}[sb]", "-map", "[sb]", "-frames:v", "1", "-q:v", "4", "-update", "1",
              str(out / "thumbs" / "storyboard.jpg")], timeout_s, "making the storyboard")
        _write_storyboard_vtt(out / "thumbs" / "storyboard.vtt", sb, result.duration_s)
        result.storyboard_path, result.storyboard_vtt_path = "thumbs/storyboard.jpg", "thumbs/storyboard.vtt"
        result.storyboard_width, result.storyboard_height = sb.columns * sb.tile_width, sb.rows * sb.tile_height
    if poster:
        _poster(src, out, info, result, timeout_s)
    return result


# ---------------------------------------------------------------------------------------
# packaging: HLS master + DASH MPD over the same CMAF segments


@dataclass
class MediaPlaylist:
    init: str
    segments: list[tuple[str, float]]  # (file name, duration s)

    @property
    def duration_s(self) -> float:
        return sum(d for _, d in self.segments)


_MAP = re.compile(r'#EXT-X-MAP:URI="([^"]+)"')


def read_media_playlist(path: Path) -> MediaPlaylist:
    text = path.read_text()
    init = _MAP.search(text)
    segments, duration = [], None
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:"):].split(",")[0])
        elif line and not line.startswith("#") and duration is not None:
            segments.append((line, duration))
            duration = None
    return MediaPlaylist(init=init.group(1) if init else "", segments=segments)


def _bitrates(folder: Path, pl: MediaPlaylist) -> tuple[int, int]:
    """(peak, average) bits per second over the segments, as players budget for them."""
    sizes = [((folder / name).stat().st_size, d) for name, d in pl.segments]
    # the short last segment would exaggerate the peak; players judge whole segments
    full = [s * 8 / d for s, d in sizes if d >= SEGMENT_SECONDS * 0.5] or [s * 8 / d for s, d in sizes if d > 0]
    total_d = sum(d for _, d in sizes)
    avg = int(sum(s for s, _ in sizes) * 8 / total_d) if total_d else 0
    return int(max(full, default=avg)), avg


def _package(out: Path, family: str, info: MediaInfo, rungs: list[Rung]) -> FamilyOutput:
    fam_dir = out / family
    audio = None
    if info.has_audio:
        pl_path = fam_dir / "audio" / "playlist.m3u8"
        if not pl_path.exists():
            raise MediaError(f"transcoding produced no {family} audio playlist")
        apl = read_media_playlist(pl_path)
        audio = (apl, *_bitrates(fam_dir / "audio", apl))
    audio_codec = FAMILY_AUDIO_CODEC[family] if audio else ""
    fam = FamilyOutput(codec=family, hls_path=f"{family}/master.m3u8", dash_path=f"{family}/manifest.mpd",
                       audio_codec=audio_codec)
    playlists = {}
    for rung in rungs:
        pl_path = fam_dir / rung.name / "playlist.m3u8"
        if not pl_path.exists():
            raise MediaError(f"transcoding produced no {family} {rung.name} playlist")
        pl = read_media_playlist(pl_path)
        if not pl.segments or not pl.init:
            raise MediaError(f"transcoding produced an empty {family} {rung.name} playlist")
        playlists[rung.name] = pl
        peak, avg = _bitrates(fam_dir / rung.name, pl)
        if audio:
            peak, avg = peak + audio[1], avg + audio[2]
        fam.renditions.append(RenditionOutput(
            codec=family, name=rung.name, width=rung.width, height=rung.height, bitrate_bps=peak,
            average_bitrate_bps=avg, container="fmp4", playlist_path=f"{family}/{rung.name}/playlist.m3u8",
            frame_rate=rung.frame_rate,
            codecs=rung.codecs_for(family) + (f",{AUDIO_CODECS_STRING[audio_codec]}" if audio else ""),
            duration_s=pl.duration_s,
            vmaf=rung.vmaf if family == "h264" else rung.family_vmaf.get(family, 0.0),
        ))
    _write_hls_master(fam_dir / "master.m3u8", fam, audio is not None)
    _write_mpd(fam_dir / "manifest.mpd", fam, rungs, playlists, audio[0] if audio else None,
               (audio[1] if audio else 0), max(r.duration_s for r in fam.renditions))
    return fam


def _write_hls_master(path: Path, fam: FamilyOutput, has_audio: bool) -> None:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if has_audio:
        lines.append('#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="default",DEFAULT=YES,AUTOSELECT=YES,'
                     'CHANNELS="2",URI="audio/playlist.m3u8"')
    for r in sorted(fam.renditions, key=lambda r: r.bitrate_bps):
        attrs = (f"BANDWIDTH={r.bitrate_bps},AVERAGE-BANDWIDTH={r.average_bitrate_bps},"
                 f"RESOLUTION={r.width}x{r.height},FRAME-RATE={r.frame_rate:.3f},CODECS=\"{r.codecs}\"")
        if has_audio:
            attrs += ',AUDIO="aud"'
        lines += [f"#EXT-X-STREAM-INF:{attrs}", f"{r.name}/playlist.m3u8"]
    path.write_text("\n".join(lines) + "\n")


def _iso_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _segment_template(parent: ET.Element, rep_id: str, pl: MediaPlaylist) -> None:
    # $RepresentationID$ is the rung's folder, so DASH reads the very files HLS lists.
    first = int(re.search(r"(\d+)", pl.segments[0][0]).group(1))
    tmpl = ET.SubElement(parent, "SegmentTemplate", timescale="1000", startNumber=str(first),
                         initialization=f"{rep_id}/{pl.init}", media=f"{rep_id}/segment_$Number%05d$.m4s")
    timeline = ET.SubElement(tmpl, "SegmentTimeline")
    start = 0.0
    for i, (_, d) in enumerate(pl.segments):
        t0, t1 = round(start * 1000), round((start + d) * 1000)
        attrs = {"d": str(t1 - t0)}
        if i == 0:
            attrs["t"] = str(t0)
        ET.SubElement(timeline, "S", **attrs)
        start += d


def _write_mpd(path: Path, fam: FamilyOutput, rungs: list[Rung], playlists: dict[str, MediaPlaylist],
               audio: MediaPlaylist | None, audio_peak: int, duration_s: float) -> None:
    mpd = ET.Element("MPD", xmlns="urn:mpeg:dash:schema:mpd:2011", type="static",
                     profiles="urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019",
                     minBufferTime=_iso_duration(SEGMENT_SECONDS), mediaPresentationDuration=_iso_duration(duration_s))
    period = ET.SubElement(mpd, "Period", id="0", start="PT0S")
    video = ET.SubElement(period, "AdaptationSet", id="0", contentType="video", mimeType="video/mp4",
                          segmentAlignment="true", startWithSAP="1",
                          maxWidth=str(max(r.width for r in rungs)), maxHeight=str(max(r.height for r in rungs)))
    for r, rung in sorted(zip(fam.renditions, rungs), key=lambda x: x[0].bitrate_bps):
        rep = ET.SubElement(video, "Representation", id=rung.name, bandwidth=str(r.bitrate_bps - audio_peak),
                            width=str(r.width), height=str(r.height), frameRate=_frame_rate(r.frame_rate),
                            codecs=rung.codecs_for(fam.codec), sar="1:1")
        _segment_template(rep, rung.name, playlists[rung.name])
    if audio is not None:
        aset = ET.SubElement(period, "AdaptationSet", id="1", contentType="audio", mimeType="audio/mp4",
                             lang="und", segmentAlignment="true", startWithSAP="1")
        rep = ET.SubElement(aset, "Representation", id="audio", bandwidth=str(audio_peak),
                            codecs=AUDIO_CODECS_STRING[fam.audio_codec], audioSamplingRate="48000")
        ET.SubElement(rep, "AudioChannelConfiguration",
                      schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011", value="2")
        _segment_template(rep, "audio", audio)
    ET.indent(mpd)
    path.write_bytes(ET.tostring(mpd, encoding="utf-8", xml_declaration=True) + b"\n")


def _frame_rate(fps: float) -> str:
    frac = Fraction(fps).limit_denominator(1001)
    return str(frac.numerator) if frac.denominator == 1 else f"{frac.numerator}/{frac.denominator}"


def _write_storyboard_vtt(path: Path, sb: Storyboard, duration_s: float) -> None:
    def ts(t: float) -> str:
        ms = int(round(t * 1000))
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"

    lines = ["WEBVTT", ""]
    for i in range(sb.count):
        start = i * sb.interval_s
        if start >= duration_s:
            break
        end = min((i + 1) * sb.interval_s, duration_s)
        x, y = (i % sb.columns) * sb.tile_width, (i // sb.columns) * sb.tile_height
        lines += [f"{ts(start)} --> {ts(end)}", f"storyboard.jpg#xywh={x},{y},{sb.tile_width},{sb.tile_height}", ""]
    path.write_text("\n".join(lines))


def _poster(src: str, out: Path, info: MediaInfo, result: TranscodeOutput, timeout_s: float) -> None:
    # A frame a little into the video (the first is often black), at most 720 high.
    at = min(info.duration_s * 0.1, 5.0)
    height = min(720, max(r.height for r in result.renditions))
    width = _even(height * info.width / info.height)
    args = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-ss", f"{at:.3f}", "-i", src,
            "-frames:v", "1", "-vf", f"scale={width}:{height}", "-q:v", "3", str(out / "thumbs" / "poster.jpg")]
    _run(args, min(timeout_s, 120), "making the poster")
    if (out / "thumbs" / "poster.jpg").exists():
        result.poster_path, result.poster_width, result.poster_height = "thumbs/poster.jpg", width, height


def _run(args: list[str], timeout_s: float, what: str) -> None:
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=die_with_parent)  # a killed worker leaves no orphan encoding
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
