"""What to encode: the rungs of a video's ladder and where its cuts fall.

* `ladder_for` picks the rungs for a source (144p..2160p): never above the source size.
  By default each rung is constant quality (an x264 CRF) under a peak cap from a
  bits-per-pixel table (`LADDER`): easy content gets the few bits it needs, hard content
  no more than the cap; the top rung's CRF is at most TOP_RUNG_MAX_CRF. A letterboxed
  source (`MediaInfo.crop`) gets the same rungs showing only the picture inside its bars.
  Rungs are plain data: per-title encoding hands in average bitrates instead (and a
  measured VMAF).
* `Rung` knows each codec family's target for itself (`FAMILY_BITRATE_FACTOR`, or a
  per-title rate) and its RFC 6381 codecs string (levels from the tables below).
* Every rung is cut into SEGMENT_SECONDS segments; `chunk_plan` cuts a long video into
  chunks on those boundaries; `storyboard_for` lays out the scrubbing sprite's tiles.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from transcoder_svc.probe import MediaInfo

SEGMENT_SECONDS = 4
MAX_FRAME_RATE = 60
CODEC_FAMILIES = ("h264", "vp9", "av1")
# Audio codec of each family's stereo rendition: AAC-LC for H.264 (plays everywhere), Opus
# for VP9/AV1 (every client handed those plays Opus in MP4, and it sounds as good at fewer bits).
FAMILY_AUDIO_CODEC = {"h264": "aac", "vp9": "opus", "av1": "opus"}
STORYBOARD_TILE_WIDTH = 160
STORYBOARD_MAX_TILES = 100  # one 10x10 sheet
STORYBOARD_COLUMNS = 10


@dataclass(frozen=True)
class Rung:
    name: str  # e.g. "720p": the short side of the picture
    width: int
    height: int
    # H.264's average target, or with `crf` its peak cap; other families scale it
    # (FAMILY_BITRATE_FACTOR) or set their own
    video_bitrate_bps: int
    frame_rate: float = 30.0
    vmaf: float = 0.0  # H.264's, measured by per-title encoding, 0 when not measured
    # Per-title encoding of the other families (pertitle.per_title_families): each one's
    # bitrate for this rung (family -> bps; a family missing: FAMILY_BITRATE_FACTOR of the
    # H.264 rate) and its VMAF measured there (a family missing: not measured).
    family_bitrate_bps: dict[str, int] = field(default_factory=dict, hash=False)
    family_vmaf: dict[str, float] = field(default_factory=dict, hash=False)
    # > 0: constant quality, x264's CRF (other families: FAMILY_CRF) under the cap
    # `video_bitrate_bps`; 0: an average bitrate of `video_bitrate_bps` (per-title rungs).
    crf: float = 0.0

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

# Constant-quality rungs: each family's CRF for an x264 CRF c is offset + slope * (c - 23),
# offset (the ladder's lower rungs, its top rung): about the CRF at which the family's rung
# scores as the default ladder's x264 rung does, set on two 6 s clips (camera and road).
# On the main set (bench/peer_bench.py, BENCHMARKS.md "Fewer bits than PeerTube") AV1's
# rungs score -2.5 .. +6.8 VMAF from H.264's (under on road and camera, over on film and
# animation); VP9's were only tried on the two clips. As with the bitrate factors, the top
# rung needs more (a lower CRF). The slope is assumed: the table's CRFs are 23-24.
FAMILY_CRF = {"h264": (23.0, 23.0, 1.0), "vp9": (31.0, 29.0, 1.5), "av1": (32.0, 30.0, 1.5)}


def family_crf(family: str, x264_crf: float, top: bool = False) -> float:
    """The family's CRF (0-63 for VP9 and SVT-AV1) matching x264 CRF `x264_crf`."""
    lower, top_offset, slope = FAMILY_CRF[family]
    crf = (top_offset if top else lower) + slope * (x264_crf - 23.0)
    return round(crf, 1) if family == "h264" else float(min(63, max(1, round(crf))))


# Short side -> target average H.264 bitrate at 30 fps. Close to Apple's HLS authoring
# ladder: the fixed ladder of rate control "average", and per-title encoding's ceilings.
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

# Rate control "constant_quality" (the default): short side -> (x264 CRF, peak cap in bits
# per pixel per frame). A rung at or between standard sizes takes the row of the largest
# standard size not above it. The CRFs hold each rung within a VMAF point of PeerTube's
# CRF 23 rung of the same height (bench/peer_bench.py, BENCHMARKS.md "Fewer bits than
# PeerTube"). The caps are PeerTube's average bits-per-pixel table
# (packages/core-utils/src/videos/bitrate.ts), which it uses as its own VBV cap: content
# hard enough to reach one gets no fewer bits than from the peer.
CONSTANT_QUALITY = {
    144: (23.0, 0.19),
    240: (24.0, 0.17),
    360: (23.0, 0.15),
    480: (24.0, 0.12),
    720: (23.0, 0.11),
    1080: (23.0, 0.10),
    1440: (23.0, 0.09),
    2160: (23.0, 0.08),
}
RATE_CONTROLS = ("constant_quality", "average")
# The top rung's CRF at most this: the rung the big screens get (and the lower rungs' only
# source in a codec upgrade from a rendition) holds VMAF ~93 on content where the table's
# CRF left it at 91-92 (animation, detailed camera footage).
TOP_RUNG_MAX_CRF = 23.0


def even_size(x: float) -> int:
    """The even pixel count nearest `x`, at least 2 (4:2:0 pictures have even sides)."""
    return max(2, int(round(x / 2)) * 2)


def ladder_for(info: MediaInfo, rate_control: str = "constant_quality") -> list[Rung]:
    """Rungs up to the source's short side; the source itself is the top rung when it
    falls between two standard ones, so nothing is thrown away and nothing upscaled.
    `rate_control`: "constant_quality" (a CRF under a cap per rung: `CONSTANT_QUALITY`)
    or "average" (the fixed bitrates of `LADDER`)."""
    if rate_control not in RATE_CONTROLS:
        raise ValueError(f"unknown rate control {rate_control!r}; one of {RATE_CONTROLS}")
    short, long_ = min(info.width, info.height), max(info.width, info.height)
    portrait = info.height > info.width
    fps = min(info.frame_rate or 30.0, MAX_FRAME_RATE)
    sizes = [p for p, _ in LADDER if p <= short]
    top_p = sizes[-1] if sizes else 0
    # e.g. 432p or 818p sources: a rung at the source size (rounded down: an odd source size
    # must not be upscaled)
    native = short - short % 2 if short > top_p * 1.1 and short < LADDER[-1][0] else None
    rungs = [_rung(p, short, long_, portrait, fps) for p in sizes]
    if native:
        rungs.append(_rung(native, short, long_, portrait, fps))
    if info.crop:
        rungs = [_cropped(r, info) for r in rungs]
    if rate_control == "average":
        return [dataclasses.replace(r, video_bitrate_bps=_average_bitrate(int(r.name[:-1]), fps)) for r in rungs]
    rungs = [_constant_quality(r, fps) for r in rungs]
    top = rungs[-1]
    return rungs[:-1] + [dataclasses.replace(top, crf=min(top.crf, TOP_RUNG_MAX_CRF))]


def _cropped(rung: Rung, info: MediaInfo) -> Rung:
    """`rung` (sized for the whole frame) showing only the picture inside the bars
    (`info.crop`) at the same scale: the name and the display size are the frame's, the
    player letterboxes the rest, and no pixel is spent on black."""
    w, h, _, _ = info.crop
    return dataclasses.replace(rung, width=min(even_size(rung.width * w / info.width), w),
                               height=min(even_size(rung.height * h / info.height), h))


def _rung(p: int, short: int, long_: int, portrait: bool, fps: float) -> Rung:
    s = min(even_size(p), short - short % 2)
    # never wider than the source either (an odd long side would round up by one pixel)
    l_ = min(even_size(p * long_ / short), long_ - long_ % 2)
    w, h = (s, l_) if portrait else (l_, s)
    return Rung(name=f"{s}p", width=w, height=h, video_bitrate_bps=0, frame_rate=round(fps, 3))


def _constant_quality(rung: Rung, fps: float) -> Rung:
    short = int(rung.name[:-1])  # the frame's short side (a cropped rung's is its name's)
    row = max((p for p in CONSTANT_QUALITY if p <= short), default=min(CONSTANT_QUALITY))
    crf, bpp = CONSTANT_QUALITY[row]
    return dataclasses.replace(rung, crf=crf, video_bitrate_bps=int(rung.width * rung.height * fps * bpp))


def _average_bitrate(short_side: int, fps: float) -> int:
    standard = dict(LADDER)
    bitrate = standard[short_side] if short_side in standard else _interpolate_bitrate(short_side)
    return int(bitrate * HIGH_FRAME_RATE_FACTOR) if fps > 31 else bitrate


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
    tile_h = even_size(STORYBOARD_TILE_WIDTH * info.height / info.width)
    return Storyboard(interval, count, columns, math.ceil(count / columns), STORYBOARD_TILE_WIDTH, tile_h)


def top_rung(rungs: list[Rung]) -> Rung:
    """The ladder's top rung: the largest picture, at its highest bitrate."""
    return max(rungs, key=lambda r: (r.width * r.height, r.video_bitrate_bps))


def chunk_plan(duration_s: float, chunk_seconds: float) -> list[tuple[float, float]]:
    """(start, duration) per chunk. Cuts fall on segment boundaries, where every rung has a
    forced keyframe anyway, so joined chunks segment exactly like a whole-file encode."""
    step = max(SEGMENT_SECONDS, round(chunk_seconds / SEGMENT_SECONDS) * SEGMENT_SECONDS)
    count = max(1, math.ceil(duration_s / step - 1e-6))
    return [(i * step, step if i < count - 1 else 0.0) for i in range(count)]  # 0: to the end
