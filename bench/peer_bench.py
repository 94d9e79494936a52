"""PeerTube's default VOD H.264 ladder against Longtail's default ladder: bits at equal VMAF,
and the CPU each ladder costs (issue 29's peer benchmark).

  nice -n 10 .venv/bin/python bench/peer_bench.py [--clips a,b] [--seconds S] [--json PATH]
      [--peertube-from-source] [--ladders a,b] [--cpu-repeats N] [--cpu-hour-usd X] -> bench/results/peer.json
  # the stored results: issue 29's three clips, 10 s each (~5 and ~9 min on the shared box)
  nice -n 10 .venv/bin/python bench/peer_bench.py --clips sintel_1080p,cockatoo_720p,car_detection_432p --seconds 10
  nice -n 10 .venv/bin/python bench/peer_bench.py --clips sintel_1080p,cockatoo_720p,car_detection_432p --seconds 10 \
      --peertube-from-source --json bench/results/peer_from_source.json

Per clip of ../shared/media's main set (a lossless excerpt of its first --seconds, video only,
the reference every rung is scored against), each ladder is encoded, then per rung: bits
(file size / duration, every rung remuxed to one MP4), display VMAF (vmaf_v0.6.1, the rung
upscaled to the source size, every 2nd frame: ffmpeg_graphs.vmaf_many, as the other benches), and
per ladder the CPU seconds of its encodes (user+sys of the ffmpeg children). Per clip: the
BD-rate of Longtail's ladder against PeerTube's (bits at equal display VMAF,
pertitle_bench.bd_rate; > 0: Longtail spends more), the ladders' kbps ratio and CPU ratio.
A letterboxed clip (black bars found by ffmpeg_graphs.detect_crop) is also scored on the
picture alone (`picture_vmaf`, `bd_rate_picture_vmaf_pct`): display VMAF weighs a small
rung's smeared bar edge by tens of points, which a cropped ladder (transcoder.crop_black_bars,
its rungs letterboxed back for display VMAF) does not have. The crop detection's CPU counts
in Longtail's ladder.

PeerTube, re-implemented here from its source (github.com/Chocobozzz/PeerTube; each file as
stored at the commit given; code read, none copied):
- packages/ffmpeg/src/ffmpeg-default-transcoding-profile.ts (bbaf96d6): the libx264 VOD
  profile: `-preset veryfast -maxrate T -bufsize 2T -b_strategy 1 -bf 16 -r FPS`, no bitrate
  and no CRF given, so x264's default CRF 23 under that VBV cap; T = getTargetBitrate =
  max(min theoretical, min(average theoretical, input bitrate x 1.3)).
- packages/core-utils/src/videos/bitrate.ts (b6b1aaa5): the bits-per-pixel tables and
  calculateBitrate = floor(res x res*ratio x fps x bpp[largest standard height <= res]).
- packages/core-utils/src/videos/common.ts (44f8f0e5): buildAspectRatio, width/height to 4
  decimals.
- packages/ffmpeg/src/ffprobe.ts (5af6cf6e): input fps = Math.round(avg_frame_rate); input
  bitrate = the container's bit_rate; rotation swaps width and height; resolution = the short side.
- packages/ffmpeg/src/shared/encoder-options.ts (034e1bf3): `-max_muxing_queue_size 1024
  -map_metadata -1 -pix_fmt yuv420p`, and `-g 2*fps` for libx264.
- packages/ffmpeg/src/ffmpeg-vod.ts (d7562e0b), shared/presets.ts (1d1ac573): one ffmpeg run
  per resolution, `scale=w=-2:h=RES` (`w=RES:h=-2` in portrait), MP4 with faststart.
- packages/ffmpeg/src/ffmpeg-command-wrapper.ts (9b70c8e7): `-threads N`, N =
  transcoding.threads, 1 in config/default.yaml (f83674c1).
- server/core/helpers/ffmpeg/framerate.ts (d7562e0b): computeOutputFPS (fps.max 60).
- server/core/lib/transcoding/transcoding-resolutions.ts (0e8a6bbe) and
  shared/job-builders/abstract-job-builder.ts (23cd9243): the original resolution is always
  encoded (always_transcode_original_resolution: true), then every enabled resolution strictly
  below it; lower resolutions are encoded from the top one's output (getMaxQualityFile), their
  input bitrate that file's.
As shipped (config/default.yaml) every extra resolution is off: only the original is encoded.
This bench enables them all (144p..2160p up to the source), the ladder an admin would serve,
and reports the original rung's CPU alone as `cpu_s_as_shipped`. Not modelled: the remux
PeerTube does instead of the top encode when the upload is already H.264 under its max
bitrate (canDoQuickTranscode), and audio. --peertube-from-source encodes every rung from the
source excerpt instead (PeerTube at its best: no second generation), with the upload's bitrate.

Longtail's ladders, as the transcoder encodes them (ladder.ladder_for, ffmpeg_graphs.transcode:
one ffmpeg process for all rungs, no per-title analysis), each rung remuxed to one MP4:
- longtail_default: every upload's: transcoder.rate_control (constant quality: an x264 CRF
  per rung under a bits-per-pixel cap, ladder.CONSTANT_QUALITY) at the default
  ffmpeg_graphs.Effort (x264 veryfast, slower presets on the small rungs), and the top rung
  check (transcoder.top_rung_min_vmaf: the top rung re-encoded where under VMAF 93; scored
  only where x264's own PSNR of it is under transcoder.top_rung_score_below_psnr_db);
- longtail_unchecked: the default without its top rung check (transcoder.top_rung_min_vmaf
  0; the default's top rung is scored against the source and re-encoded at a lower CRF where
  under VMAF 93: transcoder_svc/top_rung.py, its CPU counted in longtail_default's);
- longtail_previous: the default before issue 29, fixed average bitrates (rate control
  "average");
- longtail_pertitle: per-title encoding (transcoder.per_title) with its analysis cut
  (PER_TITLE_CUT), the analysis's CPU counted with the ladder's;
- longtail_popular / longtail_popular_av1: the popular-video path (a codec upgrade): the same
  rungs (as the default's check left them) re-encoded in H.264 at transcoder.popular_x264_preset,
  and in AV1 (transcoder.popular_codecs) at transcoder.popular_svtav1_preset. Against longtail_default: BD-rate, and what the encode buys
  (`popular_economics`: bytes saved per view per CPU-second, break-even views at the
  cheapest CDN price and at origin egress, codec_bench's cost model and CPU price).
Every ladder is encoded `--cpu-repeats` times (in turn) and its least CPU kept: on the shared
box one encode's CPU time moves by tens of % with the load.
"""

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import ffmpeg
import imageio_ffmpeg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import cpu_model, ffmpeg_version  # noqa: E402  (bench/machine.py)
from codec_bench import CPU_HOUR_USD, economics  # noqa: E402
from pertitle_bench import VMAF_SUBSAMPLE, bd_rate  # noqa: E402
from longtail_common.config import Config  # noqa: E402
from transcoder_svc import ffmpeg_graphs, ladder, pertitle  # noqa: E402
from transcoder_svc import probe as probe_module  # noqa: E402  (this file has its own probe())
from transcoder_svc.top_rung import TopRungCheck  # noqa: E402

# ../shared/media beside the checkout (or beside its worktrees' folder: /work/wt/NAME -> /work/shared)
SHARED = next((p for p in (ROOT.parent / "shared" / "media", ROOT.parents[1] / "shared" / "media") if p.is_dir()),
              ROOT.parent / "shared" / "media")
# ../shared/media's main set (media/SOURCES.md #1-#10; #11 is the deliberately truncated file).
MAIN_SET = {
    "cockatoo_720p": "cockatoo_720p_h264.mp4",
    "car_detection_432p": "car-detection_432p_h264_aac.mp4",
    "bottle_detection_360p": "bottle-detection_360p_h264.mp4",
    "friday_480p": "friday_480p_h264_aac.mp4",
    "bbb_720p": "bbb_720p_h264_aac51.mp4",
    "sintel_818p_av1": "sintel_1920x818_av1.mp4",
    "sintel_1080p": "sintel_1080p_h264_letterbox.mp4",
    "car_detection_432p_vp9": "car-detection_432p_vp9_opus.webm",
    "cockatoo_portrait": "cockatoo_portrait_rot90_h264.mp4",
    "office_767x431_vp9": "office_767x431_vp9.webm",
}
ISSUE_CLIPS = ["sintel_1080p", "cockatoo_720p", "car_detection_432p"]

# --- PeerTube's default VOD profile (see the module docstring for the files) -------------

RESOLUTIONS = (144, 240, 360, 480, 720, 1080, 1440, 2160)  # VideoResolution, 0p (audio) aside
AVERAGE_BPP = {144: 0.19, 240: 0.17, 360: 0.15, 480: 0.12, 720: 0.11, 1080: 0.10, 1440: 0.09, 2160: 0.08}
MAX_BPP = {144: 0.32, 240: 0.29, 360: 0.26, 480: 0.22, 720: 0.19, 1080: 0.17, 1440: 0.16, 2160: 0.14}
MIN_BPP = {r: 0.02 for r in RESOLUTIONS}
# What each getXTheoreticalBitrate returns when the table gives 0 (below 144p).
AVERAGE_FALLBACK, MAX_FALLBACK, MIN_FALLBACK = 192_000, 256_000, 10_000
FPS_MAX = 60  # transcoding.fps.max
KEEP_ORIGIN_FPS_RESOLUTION_MIN = 720
THREADS = 1  # transcoding.threads


def js_round(x: float) -> int:
    """JavaScript's Math.round: halves go up (Python's round would take 12.5 to 12)."""
    return math.floor(x + 0.5)


def aspect_ratio(width: int, height: int) -> float:
    return js_round(width / height * 10000) / 10000


def calculate_bitrate(bpp: dict[int, float], resolution: int, ratio: float, fps: float) -> int:
    """bits/s for a picture `resolution` high (short side) at `ratio`, from the bits-per-pixel
    of the largest standard resolution not above it (0 below 144p)."""
    other_side = resolution / ratio if 0 < ratio < 1 else resolution * ratio  # portrait: ratio < 1
    standard = max((r for r in RESOLUTIONS if r <= resolution), default=None)
    return math.floor(resolution * other_side * fps * bpp[standard]) if standard else 0


def average_bitrate(resolution: int, ratio: float, fps: float) -> int:
    return calculate_bitrate(AVERAGE_BPP, resolution, ratio, fps) or AVERAGE_FALLBACK


def max_bitrate(resolution: int, ratio: float, fps: float) -> int:
    return calculate_bitrate(MAX_BPP, resolution, ratio, fps) or MAX_FALLBACK


def min_bitrate(resolution: int, ratio: float, fps: float) -> int:
    return calculate_bitrate(MIN_BPP, resolution, ratio, fps) or MIN_FALLBACK


def target_bitrate(input_bitrate: float | None, resolution: int, ratio: float, fps: float) -> float:
    """The VBV cap (maxrate) of a rung: the average table, at most the input's bitrate plus
    30 %, at least the minimum table."""
    target = average_bitrate(resolution, ratio, fps)
    if input_bitrate:
        target = min(target, input_bitrate * 1.3)
    return max(min_bitrate(resolution, ratio, fps), target)


def closest_framerate(fps: int, candidates: list[int]) -> int:
    """The largest candidate dividing fps, else the one leaving the smallest remainder."""
    for c in sorted(candidates, reverse=True):
        if fps % c == 0:
            return c
    return min(sorted(candidates, reverse=True), key=lambda c: fps % c)


def output_fps(input_fps: int, resolution: int, is_origin: bool, max_fps: int = FPS_MAX) -> int:
    standard = [v for v in (24, 25, 30) if v <= max_fps] or [max_fps]
    fps = input_fps
    if not is_origin and resolution < KEEP_ORIGIN_FPS_RESOLUTION_MIN and fps > min(30, max_fps):
        fps = closest_framerate(fps, standard)
    fps = max(fps, 1)
    if fps > max_fps:
        fps = closest_framerate(fps, [v for v in (50, 60, max_fps) if v <= max_fps])
    return fps


def to_even(n: int) -> int:
    return n + n % 2  # rounding an odd size up (unverified: no clip of the issue's has one)


def resolutions_to_encode(short_side: int) -> list[int]:
    """The original resolution, then every standard one strictly below it (all enabled)."""
    top = to_even(short_side)
    return [top] + [r for r in sorted(RESOLUTIONS, reverse=True) if r < top]


def x264_options(target_bps: float, fps: int) -> dict:
    """ffmpeg-python output options of one PeerTube rung: the libx264 VOD profile plus the
    defaults every VOD encode gets (no -b:v, no -crf: x264's CRF 23 under the VBV cap)."""
    return {
        "threads": THREADS,
        "max_muxing_queue_size": 1024, "map_metadata": -1, "pix_fmt": "yuv420p",
        "vcodec": "libx264", "preset": "veryfast", "maxrate": target_bps, "bufsize": target_bps * 2,
        "b_strategy": 1, "bf": 16, "r": fps, "g": fps * 2,
        "f": "mp4", "movflags": "faststart",
    }


def peertube_rung_command(src: str, dst: str, resolution: int, portrait: bool, target_bps: float,
                          fps: int) -> list[str]:
    scale = {"w": resolution, "h": -2} if portrait else {"w": -2, "h": resolution}
    stream = ffmpeg.input(src).video.filter("scale", **scale)
    out = ffmpeg.output(stream, dst, **x264_options(target_bps, fps)).overwrite_output()
    return out.compile(cmd=imageio_ffmpeg.get_ffmpeg_exe())


# --- measuring ------------------------------------------------------------------------


@dataclasses.dataclass
class Rung:
    name: str
    width: int
    height: int
    path: str  # one MP4, video only
    extra: dict = dataclasses.field(default_factory=dict)  # ladder-specific (PeerTube: fps, maxrate, CPU)


@dataclasses.dataclass
class Ladder:
    rungs: list[Rung]
    cpu_s: float
    wall_s: float
    extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Clip:
    name: str
    upload: str  # the file as uploaded (PeerTube's input bitrate and fps come from it)
    source: str  # the lossless excerpt both ladders encode and VMAF scores against
    width: int
    height: int
    frame_rate: Fraction
    duration_s: float
    bars: tuple[int, int, int, int] | None = None  # the picture inside black bars (w, h, x, y), if any


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_ffmpeg(args: list[str]) -> float:
    """Runs one ffmpeg command; returns the CPU seconds it took."""
    cpu0 = cpu_children()
    proc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {proc.stderr.decode(errors='replace')[-800:]}")
    return cpu_children() - cpu0


def probe(path: str) -> tuple[int, int, Fraction, int, float]:
    """(width, height, average frame rate, container bit rate, duration s) of the first video
    stream, width and height as coded."""
    with av.open(path) as c:
        v = c.streams.video[0]
        return (v.codec_context.width, v.codec_context.height, Fraction(v.average_rate or 30), c.bit_rate or 0,
                (c.duration or 0) / 1_000_000)


def make_clip(name: str, work: Path, seconds: float | None) -> Clip:
    """A lossless excerpt (x264 -qp 0, rotation applied; 4:4:4 when a side is odd, as 4:2:0
    cannot code it) of the clip's first `seconds` (None: all of it), video only."""
    upload = SHARED / MAIN_SET[name]
    width, height = probe(str(upload))[:2]
    pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    dst = work / f"{name}.mp4"
    stream = ffmpeg.input(str(upload)).video
    cut = {"t": seconds} if seconds else {}
    # a keyframe every 2 s, as uploads have (what the transcoder's crop detection decodes)
    gop = max(1, round(2 * float(probe(str(upload))[2])))
    run_ffmpeg(ffmpeg.output(stream, str(dst), vcodec="libx264", preset="ultrafast", qp=0, pix_fmt=pix_fmt, g=gop, **cut)
               .overwrite_output().compile(cmd=imageio_ffmpeg.get_ffmpeg_exe()))
    width, height, rate, _, duration = probe(str(dst))
    bars = ffmpeg_graphs.detect_crop(str(dst), probe_module.probe(str(dst)), str(work)).crop
    return Clip(name, str(upload), str(dst), width, height, rate, duration, bars)


def at_source_rate(rung: Rung, clip: Clip, work: Path) -> str:
    """The rung as a viewer sees it at each source frame's time (a lossless copy resampled to
    the source frame rate), when its rate differs: VMAF pairs frames by index."""
    if Fraction(rung.extra.get("fps", clip.frame_rate)) == clip.frame_rate:
        return rung.path
    dst = str(work / f"{Path(rung.path).stem}_at_source_rate.mp4")
    stream = ffmpeg.input(rung.path).video.filter("fps", fps=str(clip.frame_rate))
    run_ffmpeg(ffmpeg.output(stream, dst, vcodec="libx264", preset="ultrafast", qp=0).overwrite_output()
               .compile(cmd=imageio_ffmpeg.get_ffmpeg_exe()))
    return dst


def at_display(path: str, rung: Rung, clip: Clip, work: Path) -> str:
    """A cropped rung (only the picture inside the source's black bars) as the player shows
    it: scaled to the bars' box at the source size and letterboxed (a lossless copy)."""
    crop = rung.extra.get("crop")
    if not crop:
        return path
    w, h, x, y = crop
    dst = str(work / f"{Path(rung.path).stem}_letterboxed.mp4")
    stream = (ffmpeg.input(path).video.filter("scale", w, h, flags="bicubic")
              .filter("pad", clip.width, clip.height, x, y, color="black"))
    run_ffmpeg(ffmpeg.output(stream, dst, vcodec="libx264", preset="ultrafast", qp=0).overwrite_output()
               .compile(cmd=imageio_ffmpeg.get_ffmpeg_exe()))
    return dst


def vmaf_display(files: list[str], clip: Clip, work: Path) -> list[float]:
    """Display VMAF of each file, upscaled to the source size, against the source excerpt."""
    return ffmpeg_graphs.vmaf_many(files, clip.source, clip.width, clip.height, str(work), VMAF_SUBSAMPLE, upscale=True)


def vmaf_picture(files: list[str], clip: Clip, box: tuple[int, int, int, int], work: Path) -> list[float]:
    """VMAF of the picture inside the source's black bars only (`box`: w, h, x, y): each file
    upscaled to the source size, then both it and the source cropped to the box. Scores
    letterboxed encodes and cropped ones alike, without the bar edge (which display VMAF
    weighs heavily at the small rungs: a blurred bar edge costs tens of points)."""
    w, h, x, y = box
    ref = ffmpeg_graphs._frames_by_index(ffmpeg.input(clip.source)["v"].filter("crop", w, h, x, y))
    refs = ffmpeg_graphs._fan_out(ref, len(files))
    logs, outputs = [], []
    for k, (path, r) in enumerate(zip(files, refs)):
        log = str(work / f"vmaf_picture_{k}_{Path(path).stem}.json")
        d = (ffmpeg.input(path)["v"].filter("scale", clip.width, clip.height, flags="bicubic")
             .filter("crop", w, h, x, y))
        scores = ffmpeg.filter([ffmpeg_graphs._frames_by_index(d), r], "libvmaf", n_threads=ffmpeg_graphs.VMAF_THREADS,
                               n_subsample=VMAF_SUBSAMPLE, log_fmt="json", log_path=log)
        outputs.append(scores.output("-", format="null"))
        logs.append(log)
    ffmpeg_graphs.run(ffmpeg_graphs.command(*outputs), 3600, "picture VMAF")
    return [float(json.loads(Path(log).read_text())["pooled_metrics"]["vmaf"]["mean"]) for log in logs]


def measure(ladder: Ladder, clip: Clip, work: Path) -> dict:
    scored = [at_display(at_source_rate(r, clip, work), r, clip, work) for r in ladder.rungs]
    vmaf = vmaf_display(scored, clip, work)
    rungs = {r.name: {"width": r.width, "height": r.height,
                      "bitrate_bps": int(os.path.getsize(r.path) * 8 / clip.duration_s),
                      "display_vmaf": round(q, 2), **r.extra} for r, q in zip(ladder.rungs, vmaf)}
    if clip.bars:  # letterboxed source: also the picture alone, so cropping is not credited for the bar edge
        for rung, q in zip(rungs.values(), vmaf_picture(scored, clip, clip.bars, work)):
            rung["picture_vmaf"] = round(q, 2)
    return {"cpu_s": round(ladder.cpu_s, 2), "wall_s": round(ladder.wall_s, 1),
            "ladder_kbps": round(sum(r["bitrate_bps"] for r in rungs.values()) / 1000),
            "ladder_bytes": sum(os.path.getsize(r.path) for r in ladder.rungs), **ladder.extra,
            "rungs": rungs}


# --- the ladders ----------------------------------------------------------------------


def _peertube_rung(src: str, work: Path, resolution: int, portrait: bool, ratio: float, input_bitrate: float,
                   fps: int) -> Rung:
    target = target_bitrate(input_bitrate, resolution, ratio, fps)
    dst = work / f"peertube_{resolution}p.mp4"
    cpu = run_ffmpeg(peertube_rung_command(src, str(dst), resolution, portrait, target, fps))
    width, height = probe(str(dst))[:2]
    return Rung(f"{resolution}p", width, height, str(dst), {"fps": fps, "maxrate_bps": int(target), "cpu_s": round(cpu, 2)})


def peertube_ladder(clip: Clip, work: Path, from_source: bool = False) -> Ladder:
    """PeerTube's default VOD ladder with every resolution enabled: the original resolution
    from the upload, then each lower one from that file (or, `from_source`, from the upload)."""
    upload_rate, upload_bitrate = probe(clip.upload)[2:4]
    portrait = clip.height > clip.width
    top_res, *lower = resolutions_to_encode(min(clip.width, clip.height))
    top_fps = output_fps(js_round(float(upload_rate)), top_res, is_origin=True)
    t0 = time.monotonic()
    top = _peertube_rung(clip.source, work, top_res, portrait, aspect_ratio(clip.width, clip.height),
                         upload_bitrate, top_fps)
    src, (width, height, _, bitrate, _) = top.path, probe(top.path)
    if from_source:
        src, width, height, bitrate = clip.source, clip.width, clip.height, upload_bitrate
    rungs = [top] + [_peertube_rung(src, work, res, portrait, aspect_ratio(width, height), bitrate,
                                    output_fps(top_fps, res, is_origin=False)) for res in lower]
    return Ladder(rungs, sum(r.extra["cpu_s"] for r in rungs), time.monotonic() - t0,
                  {"cpu_s_as_shipped": top.extra["cpu_s"], "upload_bitrate_bps": upload_bitrate,
                   "lower_rungs_from": "source" if from_source else "top rung"})


# The rungs each clip's default ladder came out at (its top rung's CRF as the top rung check
# left it): a codec upgrade encodes the ladder the first encode recorded, so do the popular ladders.
RECORDED_RUNGS: dict[str, list] = {}


def _longtail_ladder(clip: Clip, work: Path, family: str, effort: ffmpeg_graphs.Effort, rate_control: str,
                     per_title: bool = False, top_check: TopRungCheck | None = None,
                     recorded: bool = False) -> Ladder:
    """Longtail's ladder of `family` as the transcoder encodes it (ladder.ladder_for,
    ffmpeg_graphs.transcode: one ffmpeg process for all rungs; `per_title`: the rungs the
    per-title analysis chooses, as a WholeVideoJob with transcoder.per_title, its CPU
    counted): the ladder only, no storyboard or poster. Each rung's HLS output is remuxed
    to one MP4."""
    info = probe_module.probe(clip.source)
    out = work / "hls"
    cpu0, t0 = cpu_children(), time.monotonic()
    if Config().transcoder.crop_black_bars and not per_title:  # its CPU is the ladder's
        info = ffmpeg_graphs.detect_crop(clip.source, info, str(work))
    if per_title:
        rungs = pertitle.per_title_ladder(clip.source, info, ladder.ladder_for(info, "average"),
                                          workdir=str(work / "analysis"), **PER_TITLE_CUT).rungs
    else:
        rungs = ladder.ladder_for(info, rate_control)
    asked = rungs[-1].crf
    if recorded and clip.source in RECORDED_RUNGS:
        rungs = RECORDED_RUNGS[clip.source]
    result = ffmpeg_graphs.transcode(clip.source, str(out), info, rungs, families=(family,), storyboard=False,
                                     poster=False, effort=effort, top_check=top_check)
    cpu, wall = cpu_children() - cpu0, time.monotonic() - t0
    rungs = result.rungs
    if top_check is not None:
        RECORDED_RUNGS[clip.source] = rungs
    encoded = []
    for rendition, rung in zip(result.families[0].renditions, rungs):
        mp4 = work / f"longtail_{rendition.name}.mp4"
        ffmpeg_graphs.remux_rendition(str(out / rendition.playlist_path), None, str(mp4))
        top = rung is rungs[-1]
        settings = {"crf": ladder.family_crf(family, rung.crf, top), "cap_bps": rung.bitrate_for(family, top)} \
            if rung.crf else {"target_bps": rung.bitrate_for(family, top)}
        shown = {"crop": list(info.crop), "display_height": int(rendition.name[:-1]) if clip.height <= clip.width
                 else None} if info.crop else {}
        encoded.append(Rung(rendition.name, rendition.width, rendition.height, str(mp4),
                            {**settings, **shown, "preset": effort.x264_preset_for(rung) if family == "h264" else
                             effort.svtav1_preset}))
    checked = {"top_rung_crf_asked": asked, "top_rung_crf": rungs[-1].crf} if rungs[-1].crf else {}
    return Ladder(encoded, cpu, wall, {"family": family, **checked})


def longtail_default_ladder(clip: Clip, work: Path) -> Ladder:
    """Longtail's default ladder: H.264, the default rate control (transcoder.rate_control)
    and encoder effort, as every upload gets it."""
    tc = Config().transcoder
    return _longtail_ladder(clip, work, "h264", ffmpeg_graphs.Effort(), tc.rate_control,
                            top_check=TopRungCheck.from_config(tc))


def longtail_unchecked_ladder(clip: Clip, work: Path) -> Ladder:
    """The default ladder without the top rung check (transcoder.top_rung_min_vmaf = 0): what
    the check costs and buys, same run."""
    return _longtail_ladder(clip, work, "h264", ffmpeg_graphs.Effort(), Config().transcoder.rate_control)


def longtail_previous_ladder(clip: Clip, work: Path) -> Ladder:
    """Longtail's default ladder before issue 29: fixed average bitrates per rung."""
    return _longtail_ladder(clip, work, "h264", ffmpeg_graphs.Effort(), "average")


# Per-title encoding with its cost cut (issue 29's option b): 2 x 2 s samples, no in-between
# sizes, no refinement rounds.
PER_TITLE_CUT = {"samples": 2, "sample_seconds": 2.0, "in_between": False, "refine_rounds": 0}


def longtail_pertitle_ladder(clip: Clip, work: Path) -> Ladder:
    """The per-title ladder (transcoder.per_title) with its analysis cut (PER_TITLE_CUT)."""
    return _longtail_ladder(clip, work, "h264", ffmpeg_graphs.Effort(), "average", per_title=True)


def longtail_popular_ladder(clip: Clip, work: Path) -> Ladder:
    """Longtail's popular-video path, the H.264 every player gets: a codec upgrade
    re-encodes the default ladder's rungs at transcoder.popular_x264_preset."""
    tc = Config().transcoder
    return _longtail_ladder(clip, work, "h264", ffmpeg_graphs.Effort.popular(tc.popular_x264_preset, tc.popular_svtav1_preset),
                            tc.rate_control, recorded=True)


def longtail_popular_av1_ladder(clip: Clip, work: Path) -> Ladder:
    """The popular-video path's added family (transcoder.popular_codecs: AV1), the same rungs,
    at transcoder.popular_svtav1_preset."""
    tc = Config().transcoder
    return _longtail_ladder(clip, work, "av1", ffmpeg_graphs.Effort.popular(tc.popular_x264_preset, tc.popular_svtav1_preset),
                            tc.rate_control, recorded=True)


LADDERS = {"peertube": None, "longtail_default": longtail_default_ladder, "longtail_previous": longtail_previous_ladder,
           "longtail_unchecked": longtail_unchecked_ladder,
           "longtail_popular": longtail_popular_ladder, "longtail_popular_av1": longtail_popular_av1_ladder,
           "longtail_pertitle": longtail_pertitle_ladder}
POPULAR = ("longtail_popular", "longtail_popular_av1")


# --- comparing and reporting -----------------------------------------------------------

ISSUE_29_BD_RATE = {"sintel_1080p": "+24 %", "cockatoo_720p": "+5 to +9 %", "car_detection_432p": "+130 %"}


def _points(ladder: dict, metric: str = "display_vmaf") -> list[tuple[int, float]]:
    return [(r["bitrate_bps"], r[metric]) for r in ladder["rungs"].values()]


def compare(ladder: dict, reference: dict) -> dict:
    """`ladder` against `reference`: BD-rate (bits at equal display VMAF; > 0: more bits),
    kbps and CPU ratios, and each rung's display VMAF less the reference rung's of its height."""
    by_height = {r["height"]: r for r in reference["rungs"].values()}
    # a cropped rung (letterbox removed) stands for the frame's rung of its name's height
    picture = all("picture_vmaf" in r for r in [*ladder["rungs"].values(), *reference["rungs"].values()])
    return {
        "bd_rate_pct": bd_rate(_points(reference), _points(ladder)),
        **({"bd_rate_picture_vmaf_pct": bd_rate(_points(reference, "picture_vmaf"), _points(ladder, "picture_vmaf"))}
           if picture else {}),
        "kbps_ratio": round(ladder["ladder_kbps"] / reference["ladder_kbps"], 3),
        "cpu_ratio": round(ladder["cpu_s"] / reference["cpu_s"], 3),
        "display_vmaf_delta_by_height": {h: round(r["display_vmaf"] - by_height[h]["display_vmaf"], 2)
                                         for h, r in ((r.get("display_height") or r["height"], r)
                                                      for r in ladder["rungs"].values())
                                         if h in by_height},
    }


def run_clip(clip: Clip, work: Path, from_source: bool, names: list[str], cpu_hour_usd: float,
             cpu_repeats: int = 1) -> dict:
    makers = {**LADDERS, "peertube": lambda c, w: peertube_ladder(c, w, from_source)}
    ladders = {}
    for name in names:
        lw = work / name
        lw.mkdir(parents=True)
        ladders[name] = measure(makers[name](clip, lw), clip, lw)
    # On a shared box one encode's CPU time moves with the load (tens of %): every ladder is
    # encoded again, in turn, and its least CPU kept (the encodes are deterministic work).
    for repeat in range(1, cpu_repeats):
        for name in names:
            lw = work / f"{name}_cpu{repeat}"
            lw.mkdir(parents=True)
            cpu = makers[name](clip, lw).cpu_s
            ladders[name].setdefault("cpu_s_runs", [ladders[name]["cpu_s"]]).append(round(cpu, 2))
            ladders[name]["cpu_s"] = min(ladders[name]["cpu_s_runs"])
    out = {"source": f"{clip.width}x{clip.height} @ {float(clip.frame_rate):g} fps, {clip.duration_s:.2f} s",
           "ladders": ladders,
           "vs_peertube": {n: compare(l, ladders["peertube"]) for n, l in ladders.items() if n != "peertube"}}
    default = ladders.get("longtail_default")
    for name in (n for n in POPULAR if n in ladders and default):
        c = compare(ladders[name], default)
        out.setdefault("popular_vs_default", {})[name] = {**c, **popular_economics(default, ladders[name], c,
                                                                                   clip.duration_s, cpu_hour_usd)}
    return out


def popular_economics(default: dict, popular: dict, c: dict, seconds: float, cpu_hour_usd: float) -> dict:
    """What the popular path's encode (its whole CPU: the default ladder was encoded at upload)
    buys: bytes saved per view (the cost model's share of the ladder a view takes, at
    equal VMAF: the BD-rate) per CPU-second, and the views that repay the encode and 30 days
    of storing the new ladder (codec_bench.economics: at the cheapest CDN price and at origin
    egress); at that many views a day it pays for itself within the day."""
    if c["bd_rate_pct"] is None:
        return {}
    out = economics(default, popular, c["bd_rate_pct"], seconds, cpu_hour_usd)
    saved_bytes = out["gb_saved_per_view_per_source_minute"] * 1e9 * seconds / 60
    out["bytes_saved_per_view_per_cpu_s"] = round(saved_bytes / popular["cpu_s"], 1) if popular["cpu_s"] else None
    return out


def summarize(clips: dict) -> dict:
    out = {}
    for name in sorted({n for c in clips.values() for n in c["vs_peertube"]}):
        per = {k: c["vs_peertube"][name] for k, c in clips.items() if name in c["vs_peertube"]}
        bds = [v["bd_rate_pct"] for v in per.values() if v["bd_rate_pct"] is not None]
        cpu = sum(clips[k]["ladders"][name]["cpu_s"] for k in per)
        peer_cpu = sum(clips[k]["ladders"]["peertube"]["cpu_s"] for k in per)
        out[name] = {"bd_rate_pct_by_clip": {k: v["bd_rate_pct"] for k, v in per.items()},
                     "bd_rate_picture_vmaf_pct_by_clip": {k: v["bd_rate_picture_vmaf_pct"] for k, v in per.items()
                                                          if "bd_rate_picture_vmaf_pct" in v},
                     "bd_rate_pct_avg": round(sum(bds) / len(bds), 2) if bds else None,
                     "cpu_s": round(cpu, 1), "peertube_cpu_s": round(peer_cpu, 1),
                     "peertube_cpu_s_as_shipped": round(sum(clips[k]["ladders"]["peertube"]["cpu_s_as_shipped"]
                                                            for k in per), 1),
                     "cpu_ratio": round(cpu / peer_cpu, 3),
                     "worst_rung_display_vmaf_delta": min((d for v in per.values()
                                                           for d in v["display_vmaf_delta_by_height"].values()),
                                                          default=None),
                     "top_rung_display_vmaf_by_clip": {k: _top(clips[k]["ladders"][name])["display_vmaf"] for k in per}}
    for name in sorted({n for c in clips.values() for n in c.get("popular_vs_default", {})}):
        per = {k: c["popular_vs_default"][name] for k, c in clips.items() if name in c.get("popular_vs_default", {})}
        bds = [v["bd_rate_pct"] for v in per.values() if v["bd_rate_pct"] is not None]
        out[name]["vs_default"] = {
            "bd_rate_pct_by_clip": {k: v["bd_rate_pct"] for k, v in per.items()},
            "bd_rate_pct_avg": round(sum(bds) / len(bds), 2) if bds else None,
            "cpu_ratio_by_clip": {k: v["cpu_ratio"] for k, v in per.items()},
            "bytes_saved_per_view_per_cpu_s_by_clip": {k: v.get("bytes_saved_per_view_per_cpu_s") for k, v in per.items()},
            "break_even_views_cdn_cheapest_by_clip": {k: v.get("break_even_views_cdn_cheapest") for k, v in per.items()},
            "break_even_views_origin_by_clip": {k: v.get("break_even_views_origin") for k, v in per.items()}}
    return out


def _top(measured: dict) -> dict:
    return max(measured["rungs"].values(), key=lambda r: r["width"] * r["height"])


def write(args, clips: dict, started: float, final: bool) -> None:
    out = {
        "bench": "peer", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "ffmpeg": ffmpeg_version(),
                    "loadavg_1m_at_write": round(os.getloadavg()[0], 1)},  # the box is shared
        "command": "nice -n 10 python bench/peer_bench.py " + " ".join(sys.argv[1:]),
        "settings": {"clip_seconds": args.seconds or "whole clip", "vmaf_model": "vmaf_v0.6.1",
                     "vmaf_subsample": VMAF_SUBSAMPLE, "vmaf": "display: each rung upscaled (bicubic) to the source size",
                     "peertube_lower_rungs_from": "source" if args.peertube_from_source else "top rung",
                     "peertube_resolutions": "all enabled, up to the source", "peertube_threads": THREADS,
                     "longtail_rate_control": Config().transcoder.rate_control,
                     "longtail_constant_quality": {p: {"crf": c, "cap_bpp": b} for p, (c, b) in ladder.CONSTANT_QUALITY.items()},
                     "longtail_effort": dataclasses.asdict(ffmpeg_graphs.Effort()),
                     "longtail_popular_x264_preset": Config().transcoder.popular_x264_preset,
                     "longtail_popular_svtav1_preset": Config().transcoder.popular_svtav1_preset,
                     "longtail_top_rung_check": dataclasses.asdict(TopRungCheck.from_config(Config().transcoder) or TopRungCheck()),
                     "cpu_hour_usd": args.cpu_hour_usd, "cpu_repeats": args.cpu_repeats},
        "issue_29_reported_bd_rate": ISSUE_29_BD_RATE,
        "complete": final, "summary": summarize(clips), "bench_wall_s": round(time.monotonic() - started, 1),
        "clips": clips,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))


def print_clip(name: str, result: dict) -> None:
    print(f"== {name} ({result['source']})")
    for lname, measured in result["ladders"].items():
        rungs = ", ".join(f"{n} {r['bitrate_bps'] // 1000}k/{r['display_vmaf']:.1f}" for n, r in measured["rungs"].items())
        print(f"   {lname:<17} CPU {measured['cpu_s']:>6.1f} s  {measured['ladder_kbps']:>6} kbps  {rungs}")
    for lname, c in result["vs_peertube"].items():
        picture = f" (picture only: {c['bd_rate_picture_vmaf_pct']} %)" if "bd_rate_picture_vmaf_pct" in c else ""
        print(f"   {lname} vs PeerTube: BD-rate {c['bd_rate_pct']} %{picture}, kbps x{c['kbps_ratio']}, CPU x{c['cpu_ratio']}, "
              f"dVMAF by height {c['display_vmaf_delta_by_height']} (issue 29: {ISSUE_29_BD_RATE.get(name, '-')})",
              flush=True)
    for lname, c in result.get("popular_vs_default", {}).items():
        print(f"   {lname} vs longtail_default: BD-rate {c['bd_rate_pct']} %, CPU x{c['cpu_ratio']}, "
              f"{c.get('bytes_saved_per_view_per_cpu_s')} B saved per view per CPU-s, break-even views "
              f"{c.get('break_even_views_cdn_cheapest')} (cheapest CDN) / {c.get('break_even_views_origin')} (origin)",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default=",".join(MAIN_SET), help=f"comma-separated, from {', '.join(MAIN_SET)}")
    ap.add_argument("--seconds", type=float, default=None, help="excerpt length (default: the whole clip)")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "peer.json"))
    ap.add_argument("--peertube-from-source", action="store_true",
                    help="encode PeerTube's lower rungs from the source, not from its top rung")
    ap.add_argument("--ladders", default="peertube,longtail_default,longtail_popular,longtail_popular_av1",
                    help=f"comma-separated, from {', '.join(LADDERS)} (peertube is always encoded)")
    ap.add_argument("--cpu-hour-usd", type=float, default=CPU_HOUR_USD, help="price of one vCPU-hour")
    ap.add_argument("--cpu-repeats", type=int, default=2,
                    help="encode every ladder this many times, in turn, and keep its least CPU")
    args = ap.parse_args()
    names = ["peertube", *(n for n in args.ladders.split(",") if n and n != "peertube")]
    unknown = [n for n in names if n not in LADDERS]
    if unknown:
        ap.error(f"unknown ladders {unknown}")
    started = time.monotonic()
    clips = {}
    with tempfile.TemporaryDirectory(prefix="peer-bench-") as tmp:
        for name in args.clips.split(","):
            work = Path(tmp) / name
            work.mkdir()
            clips[name] = run_clip(make_clip(name, work, args.seconds), work, args.peertube_from_source, names,
                                   args.cpu_hour_usd, args.cpu_repeats)
            print_clip(name, clips[name])
            write(args, clips, started, final=False)  # partial results survive a stop
    write(args, clips, started, final=True)
    print(json.dumps(summarize(clips), indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
