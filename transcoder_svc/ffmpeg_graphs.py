"""Every ffmpeg graph the transcoder runs, built with ffmpeg-python, and the one helper
that runs them: the only transcoder module that starts ffmpeg.

* `transcode`: ONE ffmpeg process decodes the source once, scales each rung once
  (cascaded: `_scale_tree`) and hands each rung's picture to every codec family's encoder
  (H.264, VP9, AV1) plus the storyboard sprite. Each family is one HLS output writing CMAF
  (fragmented MP4) segments per rung and one stereo audio rendition (AAC-LC or Opus:
  ladder.FAMILY_AUDIO_CODEC); keyframes are forced on segment boundaries so every rung
  switches cleanly. packaging.py then writes the HLS master and the DASH MPD.
* Chunks: `encode_chunk` encodes a time range of every rung (the same cascade);
  `join_chunks` concatenates the chunks without re-encoding, adds the audio and packages
  exactly like `transcode`.
* `remux_rendition`: a packaged rendition back into one MP4 (a codec upgrade's source, and
  a download's progressive MP4); `remux_audio`: the audio alone into an M4A.
* `_preview`: the short looping animated WebP of the video cards, beside the poster.
* `detect_crop`: the black bars of a letterboxed source (cropdetect on its keyframes), so
  the ladder encodes only the picture and the player letterboxes it.
* Per-title analysis (pertitle.py decides, these encode and score): `encode_excerpts`,
  `encode_pictures`, `vmaf_many`.

ffmpeg-python builds each graph (`ffmpeg.input`, `.filter`, `.split`, `ffmpeg.concat`,
`ffmpeg.output`) and its command line (`command`); each stream an output takes becomes
one `-map`. What it has no words for goes in as output keyword arguments, which it writes
as `-key value` (sorted by key: ffmpeg does not mind the order of an output's options):
per-stream options such as `b:v:0`, the HLS muxer's `var_stream_map`, and the encoder
options, which `encoder_args` keeps in command-line form (benches hand them to ffmpeg
directly; `output_options` turns them into keywords).

`run` is the one way a graph runs (longtail_common.ffmpeg_run, shared with the gateway and
the CLI): stderr is captured into the MediaError reason, and the process is killed on
timeout and when the worker dies (PDEATHSIG).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from longtail_common import ffmpeg_run
from longtail_common.ffmpeg_run import command, ffmpeg_exe  # noqa: F401 (ffmpeg_exe: benches, tests)
from transcoder_svc.ladder import (
    CODEC_FAMILIES,
    FAMILY_AUDIO_CODEC,
    MAX_FRAME_RATE,
    SEGMENT_SECONDS,
    Rung,
    Storyboard,
    even_size,
    family_crf,
    storyboard_for,
    top_rung,
)
from transcoder_svc.metrics import encode_step, step
from transcoder_svc.packaging import TranscodeOutput, add_storyboard, package_families
from transcoder_svc.probe import MediaError, MediaInfo, letterbox
from transcoder_svc.top_rung import TopRungCheck

# Speed knobs, sized for a 2-core worker; configurable per deployment.
X264_PRESET = os.environ.get("LONGTAIL_X264_PRESET", "veryfast")
VP9_CPU_USED = int(os.environ.get("LONGTAIL_VP9_CPU_USED", "8"))  # realtime deadline, 5..8 on small boxes
SVTAV1_PRESET = int(os.environ.get("LONGTAIL_SVTAV1_PRESET", "10"))
AUDIO_BITRATE_BPS = 128_000  # AAC-LC stereo
OPUS_BITRATE_BPS = 96_000  # Opus stereo: as good as AAC at 128 kb/s
VMAF_THREADS = max(1, min(2, os.cpu_count() or 1))
# Output options that take no value; every other one takes exactly one.
VALUELESS_OPTIONS = {"an", "vn", "sn", "dn"}


class EncoderKilled(RuntimeError):
    """ffmpeg died of a signal: not the input's fault, so the job is retried (bounded, then
    dead-lettered) instead of failing the video."""


def run(args: list[str], timeout_s: float, what: str) -> None:
    """Runs one ffmpeg command line (longtail_common.ffmpeg_run); MediaError naming `what`
    on timeout or failure (with the last lines of ffmpeg's stderr), EncoderKilled if a
    signal killed it."""
    run_capture(args, timeout_s, what, capture=False)


def run_capture(args: list[str], timeout_s: float, what: str, capture: bool = True) -> bytes:
    """Runs one ffmpeg command line writing to its standard output ("pipe:") and returns
    what it wrote; failures as `run`."""
    try:
        return ffmpeg_run.run(args, timeout_s, what, capture=capture)
    except ffmpeg_run.FfmpegKilled as exc:  # a crash, the OOM killer: our fault, so retried
        raise EncoderKilled(str(exc)) from None
    except ffmpeg_run.FfmpegFailed as exc:
        raise MediaError(str(exc)) from None


def output_options(args: list[str]) -> dict[str, str | None]:
    """Output options in command-line form (["-c:v", "libx264", "-an"]) as ffmpeg-python
    keyword arguments ({"c:v": "libx264", "an": None})."""
    options: dict[str, str | None] = {}
    tokens = iter(args)
    for token in tokens:
        if not token.startswith("-") or token[1:] in options:
            raise ValueError(f"not an option, or given twice: {token!r} in {args}")
        options[token[1:]] = None if token[1:] in VALUELESS_OPTIONS else next(tokens)
    return options


def _fan_out(stream, count: int) -> list:
    """`count` copies of `stream` (a split filter when more than one)."""
    if count == 1:
        return [stream]
    copies = stream.split()
    return [copies[k] for k in range(count)]


# ---------------------------------------------------------------------------------------
# the ladder: encoder options, the cascade of scales, HLS outputs


@dataclass(frozen=True)
class Effort:
    """How hard each family's encoder works (speed presets): cheap for the long tail, slower
    where many views share the saving (a codec upgrade of a video expected to be popular)."""
    x264_preset: str = X264_PRESET
    # Rungs with a short side up to N get x264 preset P instead, first match of (N, P): a
    # small rung costs a fraction of the top one's CPU, so a slower preset there is cheap
    # (BENCHMARKS.md "Fewer bits than PeerTube": -5 points of BD-rate for +5-20 % CPU).
    # (240p and under at slow, 360p at medium: -7 points of BD-rate on a still camera, whose
    # ladder is mostly small rungs; bench/results/HISTORY.md.) 480p stays at veryfast: `faster`
    # there bought nothing at equal VMAF (BD-rate -34.1 % with it, -34.7 % without, ten clips)
    # for 7 % of the ladder's CPU (bench/results/peer_gate.json, "longtail_lean").
    x264_small_presets: tuple[tuple[int, str], ...] = ((240, "slow"), (360, "medium"))
    # Extra x264 options ("key=value:..."). psy=0: no psycho-visual rate-distortion on the
    # small rungs' medium preset either (x264 turns it on from subme 6; veryfast and faster
    # never use it), so every rung makes the same trade as PeerTube's veryfast. (bframes=8
    # was tried: fewer bits on static cameras, but at the same CRF the top rung of an
    # animation lost 1.8 VMAF, 1.5 under PeerTube's: bench/results/HISTORY.md.)
    x264_params: str = "psy=0"
    vp9_cpu_used: int = VP9_CPU_USED
    svtav1_preset: int = SVTAV1_PRESET

    def x264_preset_for(self, rung: Rung) -> str:
        short = min(rung.width, rung.height)
        return next((p for n, p in self.x264_small_presets if short <= n), self.x264_preset)

    @classmethod
    def popular(cls, x264_preset: str, svtav1_preset: int = SVTAV1_PRESET) -> Effort:
        """A codec upgrade's: every H.264 rung at `x264_preset` (psy=0 as every rung of the
        default ladder: with it, slow measured 8 points of BD-rate worse on VMAF), AV1 at
        `svtav1_preset` (transcoder.popular_svtav1_preset)."""
        return cls(x264_preset=x264_preset, x264_small_presets=(), x264_params="psy=0", svtav1_preset=svtav1_preset)


def encoder_args(family: str, rungs: list[Rung], fps: float, top: Rung | None = None,
                 effort: Effort = Effort(), top_psnr: bool = False) -> list[str]:
    """Encoder options for `rungs` (stream i = rungs[i]); `top`: the ladder's top rung
    (default: the top of `rungs`); `top_psnr`: the encoder reports the PSNR of the top rung
    (AV_CODEC_FLAG_PSNR, read back by `top_rung_psnr`)."""
    top = top or top_rung(rungs)
    gop = str(max(1, round(fps * SEGMENT_SECONDS)))  # a keyframe on every segment boundary, none between
    args: list[str] = []
    if family == "h264":
        args += ["-c:v", "libx264", "-profile:v", "high", "-sc_threshold", "0"]
        if effort.x264_params:
            args += ["-x264-params", effort.x264_params]
        for i, r in enumerate(rungs):
            args += [f"-preset:v:{i}", effort.x264_preset_for(r), f"-level:v:{i}", r.h264_level]
    elif family == "vp9":
        args += ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", str(effort.vp9_cpu_used),
                 "-row-mt", "1", "-lag-in-frames", "0"]
    elif family == "av1":
        args += ["-c:v", "libsvtav1", "-preset", str(effort.svtav1_preset), "-svtav1-params", "scd=0"]
    else:
        raise ValueError(f"unknown codec family {family!r}; one of {CODEC_FAMILIES}")
    args += ["-g", gop, "-keyint_min", gop, "-force_key_frames", f"expr:gte(t,n_forced*{SEGMENT_SECONDS})"]
    for i, r in enumerate(rungs):
        args += _rate_args(family, r, i, r == top)
        if top_psnr and r == top:
            args += [f"-flags:v:{i}", "+psnr"]
    return args


def psnr_log_args(log: str) -> tuple[str, ...]:
    """Global options writing each encoded frame's statistics to `log` (ffmpeg's -vstats):
    with an encoder's PSNR flag set, they carry that stream's PSNR."""
    return ("-vstats_file", log, "-vstats_version", "2")


def top_rung_psnr(log: str) -> float | None:
    """The mean luma PSNR (dB) over the frames of the one stream `log` (`psnr_log_args`)
    reports a PSNR for, as x264 prints it ("PSNR Mean Y"); None without any. The log is
    removed: it is not an output."""
    total, frames = 0.0, 0
    try:
        with open(log) as fh:
            for line in fh:
                _, marker, rest = line.partition(" PSNR=")
                if marker:
                    total += float(rest.split()[0])
                    frames += 1
    except (OSError, ValueError, IndexError):
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(log)  # read or not, never left among the outputs
    return total / frames if frames else None


def _rate_args(family: str, rung: Rung, i: int, top: bool) -> list[str]:
    """Rate control of stream i: constant quality under a peak cap (`rung.crf`), or an
    average bitrate."""
    b = rung.bitrate_for(family, top=top)
    if rung.crf > 0:
        crf = family_crf(family, rung.crf, top)
        if family == "vp9":  # libvpx's constrained quality: -b:v is the cap
            return [f"-crf:v:{i}", f"{crf:g}", f"-b:v:{i}", str(b)]
        return [f"-crf:v:{i}", f"{crf:g}", f"-maxrate:v:{i}", str(b), f"-bufsize:v:{i}", str(b * 2)]
    args = [f"-b:v:{i}", str(b)]
    if family != "av1":  # SVT-AV1 takes a peak cap only in CRF mode; its VBR stays near target
        args += [f"-maxrate:v:{i}", str(int(b * 1.5)), f"-bufsize:v:{i}", str(b * 2)]
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


def _ladder_pictures(video, info: MediaInfo, rungs: list[Rung], families, storyboard: Storyboard | None):
    """The decoded `video` scaled once per rung (`_scale_tree`), each rung's picture split
    to every family: ({(family, rung index): stream}, the storyboard sprite or None)."""
    parent = _scale_tree(info, rungs)
    children = {i: [k for k in range(len(rungs)) if parent[k] == i] for i in range(len(rungs))}
    if info.frame_rate > MAX_FRAME_RATE:
        video = video.filter("fps", MAX_FRAME_RATE)
    from_source = [i for i in range(len(rungs)) if parent[i] is None]
    copies = _fan_out(video, len(from_source) + (1 if storyboard else 0))
    if info.crop:  # the rungs get the picture inside the bars; the storyboard the whole frame
        w, h, x, y = info.crop
        copies[:len(from_source)] = [c.filter("crop", w, h, x, y) for c in copies[:len(from_source)]]
    feeds = dict(zip(from_source, copies))  # rung index -> the picture it is scaled from
    pictures = {}
    for i in sorted(range(len(rungs)), key=lambda i: rungs[i].width * rungs[i].height, reverse=True):
        r = rungs[i]
        scaled = (feeds[i].filter("scale", r.width, r.height, flags="bicubic").filter("setsar", 1)
                  .filter("format", "yuv420p"))
        outs = _fan_out(scaled, len(families) + len(children[i]))
        pictures.update({(family, i): out for family, out in zip(families, outs)})
        feeds.update(zip(children[i], outs[len(families):]))
    return pictures, (_storyboard_tiles(copies[-1], storyboard) if storyboard else None)


def _storyboard_tiles(video, sb: Storyboard):
    return (video.filter("fps", f"1/{sb.interval_s:.6f}").filter("scale", sb.tile_width, sb.tile_height)
            .filter("tile", f"{sb.columns}x{sb.rows}"))


def _sprite_output(tiles, path: str):
    """The one sprite frame, as a JPEG."""
    return tiles.output(path, **{"frames:v": 1, "q:v": 4, "update": 1})


def _audio_options(codec: str) -> dict:
    if codec == "aac":
        options = {"c:a": "aac", "profile:a": "aac_low", "b:a": AUDIO_BITRATE_BPS}
    elif codec == "opus":  # 20 ms frames; Opus in ISO-BMFF ('Opus' sample entry + dOps)
        options = {"c:a": "libopus", "b:a": OPUS_BITRATE_BPS, "vbr": "on", "application": "audio"}
    else:
        raise ValueError(f"unknown audio codec {codec!r}")
    return {**options, "ac": 2, "ar": 48000}


def _hls_output(family: str, rungs: list[Rung], video: list, audio, fam_dir: str, video_options: dict):
    """One family's HLS output of CMAF segments: <fam_dir>/<rung>/{init.mp4,
    segment_NNNNN.m4s, playlist.m3u8} from `video` (stream j = rungs[j]), plus
    <fam_dir>/audio/ from `audio` (None: no audio). `-var_stream_map` names each stream's
    folder and puts the audio in every rung's group."""
    var_map = [f"v:{j},agroup:aud,name:{r.name}" if audio else f"v:{j},name:{r.name}" for j, r in enumerate(rungs)]
    options = dict(video_options)
    if audio is not None:
        options.update(_audio_options(FAMILY_AUDIO_CODEC[family]))
        var_map.append("a:0,agroup:aud,name:audio")
    options.update({
        "format": "hls", "hls_time": SEGMENT_SECONDS, "hls_playlist_type": "vod", "hls_segment_type": "fmp4",
        "hls_fmp4_init_filename": "init.mp4", "hls_flags": "independent_segments",
        "hls_segment_filename": os.path.join(fam_dir, "%v", "segment_%05d.m4s"),
        "var_stream_map": " ".join(var_map), "max_muxing_queue_size": 4096,
    })
    streams = [*video, audio] if audio is not None else list(video)
    return ffmpeg.output(*streams, os.path.join(fam_dir, "%v", "playlist.m3u8"), **options)


def build_command(src: str, out_dir: str, info: MediaInfo, rungs: list[Rung], families=("h264",),
                  audio: bool = True, storyboard: Storyboard | None = None, effort: Effort = Effort(),
                  top_psnr_log: str | None = None) -> list[str]:
    """One ffmpeg process: decode once, scale every rung once and hand each rung's picture
    to every family's encoder (`_ladder_pictures`), one HLS output per family
    (<out>/<family>/...); the storyboard taps the source (<out>/thumbs/storyboard.jpg).
    `top_psnr_log`: x264 measures its top rung's PSNR into this file (`top_rung_psnr`)."""
    if not rungs or not families:
        raise MediaError("no rendition fits this video's size")
    fps = min(info.frame_rate or 30.0, MAX_FRAME_RATE)
    source = ffmpeg.input(src)
    pictures, tiles = _ladder_pictures(source[str(info.video_stream_index)], info, rungs, families, storyboard)
    sound = source[str(info.audio_stream_index)] if audio and info.has_audio else None
    outputs = [_hls_output(family, rungs, [pictures[family, j] for j in range(len(rungs))], sound,
                           os.path.join(out_dir, family),
                           output_options(encoder_args(family, rungs, fps, effort=effort,
                                                       top_psnr=top_psnr_log is not None and family == "h264")))
               for family in families]
    if tiles is not None:
        outputs.append(_sprite_output(tiles, os.path.join(out_dir, "thumbs", "storyboard.jpg")))
    return command(*outputs, global_args=psnr_log_args(top_psnr_log) if top_psnr_log else ())


def transcode(src: str, out_dir: str, info: MediaInfo, rungs: list[Rung], families=("h264",),
              timeout_s: float = 3600, storyboard: bool = True, poster: bool = True,
              effort: Effort = Effort(), top_check: TopRungCheck | None = None) -> TranscodeOutput:
    """The ladder (`build_command`), packaged, with storyboard, poster and preview.
    `top_check`: the top H.264 rung is scored and, short of its goal, encoded again before
    packaging (`_check_top_rung`); the result's `rungs` are the rungs as encoded."""
    for family in families:
        if family not in CODEC_FAMILIES:
            raise ValueError(f"unknown codec family {family!r}; one of {CODEC_FAMILIES}")
    if not rungs:
        raise MediaError("no rendition fits this video's size")
    out = Path(out_dir)
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    sb = storyboard_for(info) if storyboard else None
    checked = top_check is not None and "h264" in families
    psnr_log = str(out / ".top_rung_psnr.vstats") if checked else None
    with encode_step("encode", out_dir, families, rungs):
        run(build_command(src, out_dir, info, rungs, families, storyboard=sb, effort=effort, top_psnr_log=psnr_log),
            timeout_s, "transcoding")
    if checked:
        def encoded(rung: Rung) -> tuple[str, float]:
            folder = out / "h264" / rung.name
            size = sum(p.stat().st_size for p in folder.iterdir() if p.suffix == ".m4s")
            return str(folder / "playlist.m3u8"), size * 8 / max(info.duration_s, 1e-3)

        def reencode(new_top: Rung) -> None:  # every family's top rung, into the place of the first
            redo = out / ".top_rung"
            run(build_command(src, str(redo), info, [new_top], families, audio=False, effort=effort), timeout_s,
                "re-encoding the top rung")
            for family in families:
                shutil.rmtree(out / family / new_top.name)
                shutil.move(str(redo / family / new_top.name), str(out / family / new_top.name))
            shutil.rmtree(redo)

        rungs = _check_top_rung(src, info, rungs, top_check, encoded, reencode, str(out), timeout_s,
                                psnr_db=top_rung_psnr(psnr_log))
    with step("package"):
        result = package_families(out, info, rungs, families)
    result.rungs = list(rungs)
    if sb and (out / "thumbs" / "storyboard.jpg").exists():
        with step("storyboard", **{"longtail.storyboard.sprite_from": "encode"}):  # its cues; the encode drew it
            add_storyboard(result, out, sb)
    if poster:
        with step("poster"):
            _poster(src, out, info, result, timeout_s)
        with step("preview"):
            _preview(src, out, info, result, timeout_s)
    return result


# The hover preview of the video cards: a few silent seconds from a little into the video,
# small and at a low frame rate (an animated WebP of 3 s at 320 px is ~50-100 kB).
PREVIEW_SECONDS = 3.0
PREVIEW_WIDTH = 320
PREVIEW_FPS = 10


def _preview(src: str, out: Path, info: MediaInfo, result: TranscodeOutput, timeout_s: float) -> None:
    at = min(info.duration_s * 0.1, 5.0)
    length = max(0.5, min(PREVIEW_SECONDS, info.duration_s - at))
    width = min(PREVIEW_WIDTH, even_size(info.width))
    height = even_size(width * info.height / info.width)
    picture = (ffmpeg.input(src, ss=f"{at:.3f}", t=f"{length:.3f}")[str(info.video_stream_index)]
               .filter("fps", PREVIEW_FPS).filter("scale", width, height))
    path = out / "thumbs" / "preview.webp"
    run(command(picture.output(str(path), **{"c:v": "libwebp_anim", "loop": 0, "q:v": 50, "an": None})),
        min(timeout_s, 120), "making the preview")
    if path.exists():
        result.preview_path, result.preview_width, result.preview_height = "thumbs/preview.webp", width, height


def _poster(src: str, out: Path, info: MediaInfo, result: TranscodeOutput, timeout_s: float) -> None:
    # A frame a little into the video (the first is often black), at most 720 high.
    at = min(info.duration_s * 0.1, 5.0)
    height = min(720, max(r.height for r in result.renditions))
    width = even_size(height * info.width / info.height)
    picture = ffmpeg.input(src, ss=f"{at:.3f}")[str(info.video_stream_index)].filter("scale", width, height)
    path = out / "thumbs" / "poster.jpg"
    run(command(picture.output(str(path), **{"frames:v": 1, "q:v": 3})), min(timeout_s, 120), "making the poster")
    if path.exists():
        result.poster_path, result.poster_width, result.poster_height = "thumbs/poster.jpg", width, height


# ---------------------------------------------------------------------------------------
# chunked transcoding: chunks encoded anywhere, then one join that packages them


def encode_chunk(src: str, out_dir: str, info: MediaInfo, rungs: list[Rung], families, start_s: float,
                 duration_s: float, timeout_s: float = 3600, effort: Effort = Effort(),
                 top_check: TopRungCheck | None = None) -> dict[str, dict[str, str]]:
    """Encodes [start, start+duration) of the video (duration 0: to the end) into one
    video-only MP4 per (family, rung), from one decode. Returns family -> rung -> path.
    `top_check`: this chunk's top H.264 rung is scored and, short of its goal, encoded
    again (`_check_top_rung`), so each chunk's top rung gets the CRF its own content needs."""
    if not rungs:
        raise MediaError("no rendition fits this video's size")
    fps = min(info.frame_rate or 30.0, MAX_FRAME_RATE)
    # input seeking decodes from the keyframe before `start` and drops frames up to it: exact cut
    window = {"ss": f"{start_s:.6f}"}
    if duration_s > 0:
        window["t"] = f"{duration_s:.6f}"
    source = ffmpeg.input(src, **window)[str(info.video_stream_index)]
    pictures, _ = _ladder_pictures(source, info, rungs, families, None)  # the same cascade as a whole-file encode
    paths: dict[str, dict[str, str]] = {}
    outputs = []
    top = top_rung(rungs)
    checked = top_check is not None and "h264" in families
    psnr_log = os.path.join(out_dir, ".top_rung_psnr.vstats") if checked else None
    for family in families:
        os.makedirs(os.path.join(out_dir, family), exist_ok=True)
        for j, r in enumerate(rungs):
            path = os.path.join(out_dir, family, f"{r.name}.mp4")
            options = output_options([*encoder_args(family, [r], fps, top, effort, top_psnr=checked and family == "h264"),
                                      "-an", "-f", "mp4"])
            outputs.append(ffmpeg.output(pictures[family, j], path, **options))
            paths.setdefault(family, {})[r.name] = path
    with encode_step("encode chunk", out_dir, families, rungs):
        run(command(*outputs, global_args=psnr_log_args(psnr_log) if psnr_log else ()), timeout_s, "transcoding a chunk")
    if checked:
        length = duration_s if duration_s > 0 else max(info.duration_s - start_s, 1e-3)

        def encoded(rung: Rung) -> tuple[str, float]:
            path = paths["h264"][rung.name]
            return path, os.path.getsize(path) * 8 / length

        def reencode(new_top: Rung) -> None:
            redo = os.path.join(out_dir, ".top_rung")
            again = encode_chunk(src, redo, info, [new_top], families, start_s, duration_s, timeout_s, effort)
            for family in families:
                os.replace(again[family][new_top.name], paths[family][new_top.name])
            shutil.rmtree(redo)

        _check_top_rung(src, info, rungs, top_check, encoded, reencode, out_dir, timeout_s,
                        window=(start_s, duration_s), psnr_db=top_rung_psnr(psnr_log))
    return paths


def _check_top_rung(src: str, info: MediaInfo, rungs: list[Rung], check: TopRungCheck, encoded, reencode,
                    workdir: str, timeout_s: float, window: tuple[float, float] = (0.0, 0.0),
                    psnr_db: float | None = None) -> list[Rung]:
    """The "top rung check" step: scores the top H.264 rung (`encoded(rung)` -> its file and
    average bits per second) against the source, unless the encoder's `psnr_db` of it says
    it need not be (`check.wants_score`), and where `check.retry_crf` asks for a lower CRF
    calls `reencode(rung at that CRF)`. Returns the rungs as encoded."""
    top = top_rung(rungs)
    if top.crf <= 0:
        return rungs  # an average-bitrate (per-title) ladder: its rates were chosen by VMAF already
    with step("top rung check", **{"longtail.rung": top.name, "longtail.crf": top.crf}) as span:
        path, average_bps = encoded(top)
        cap_bps = top.bitrate_for("h264", top=True)
        span.set_attributes({"longtail.psnr_db": round(psnr_db, 2) if psnr_db is not None else -1.0,
                             "longtail.bitrate_bps": int(average_bps)})
        if not check.wants_score(psnr_db, average_bps, cap_bps):
            return rungs
        vmaf = rung_vmaf(path, src, info, top, workdir, subsample=check.subsample, window=window,
                         timeout_s=timeout_s)
        crf = check.retry_crf(top.crf, vmaf, average_bps, cap_bps)
        span.set_attributes({"longtail.vmaf": round(vmaf, 2), "longtail.retry_crf": crf or 0.0})
        if crf is None:
            return rungs
        new_top = dataclasses.replace(top, crf=crf)
        reencode(new_top)
    return [new_top if r is top else r for r in rungs]


def detect_crop(src: str, info: MediaInfo, workdir: str, timeout_s: float = 600) -> MediaInfo:
    """`info` with `crop` set when the source has black bars (probe.letterbox decides), found
    by cropdetect over the source's keyframes only (decoding one frame a GOP: a fraction of
    a second for a 1080p minute). cropdetect keeps the union of the picture over the frames
    it saw (reset=0), so one dark keyframe cannot shrink it."""
    log = os.path.join(workdir, "cropdetect.txt")
    frames = (ffmpeg.input(src, skip_frame="nokey")[str(info.video_stream_index)]
              .filter("cropdetect", limit=24, round=2, skip=0, reset=0)
              .filter("metadata", mode="print", file=log))
    run(command(frames.output("-", format="null", fps_mode="passthrough")), timeout_s, "finding black bars")
    last: dict[str, int] = {}
    if os.path.exists(log):
        with open(log) as fh:
            for line in fh:
                key, _, value = line.strip().partition("=")
                if key.startswith("lavfi.cropdetect.") and key[17:] in ("w", "h", "x", "y"):
                    last[key[17:]] = int(float(value))
        os.unlink(log)
    if len(last) < 4:
        return info
    crop = letterbox(info.width, info.height, (last["w"], last["h"], last["x"], last["y"]))
    return dataclasses.replace(info, crop=crop)


def remux_rendition(video_playlist: str, audio_playlist: str | None, out: str, timeout_s: float = 3600) -> None:
    """One MP4 from a packaged rendition (its CMAF media playlist, plus the family's audio
    playlist if any), streams copied: the source of a codec upgrade once the original
    upload is gone (raw uploads are temporary)."""
    video = ffmpeg.input(video_playlist)
    streams = [video["v:0"], ffmpeg.input(audio_playlist)["a:0"]] if audio_playlist else [video]
    run(command(ffmpeg.output(*streams, out, c="copy", movflags="+faststart")), timeout_s,
        "reading the top rendition back")


def remux_audio(audio_playlist: str, out: str, timeout_s: float = 3600) -> None:
    """The family's packaged audio (its CMAF media playlist) as one M4A, copied, moov first."""
    sound = ffmpeg.input(audio_playlist)["a:0"]
    run(command(ffmpeg.output(sound, out, c="copy", movflags="+faststart", format="ipod")), timeout_s,
        "reading the audio back")


def join_chunks(chunks: list[dict[str, dict[str, str]]], src: str, out_dir: str, info: MediaInfo,
                rungs: list[Rung], families, timeout_s: float = 3600, storyboard: bool = True,
                poster: bool = True) -> TranscodeOutput:
    """Concatenates the chunks' encoded video (no re-encode), adds the audio (encoded once
    here: cheap) and packages exactly like `transcode`: CMAF segments, HLS master, DASH MPD."""
    out = Path(out_dir)
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    sound = ffmpeg.input(src, vn=None)[str(info.audio_stream_index)] if info.has_audio else None
    outputs = []
    for family in families:
        joined = []
        for r in rungs:
            listing = out / f"concat_{family}_{r.name}.txt"
            listing.write_text("".join(f"file '{Path(c[family][r.name]).resolve()}'\n" for c in chunks))
            joined.append(ffmpeg.input(str(listing), f="concat", safe=0)["v:0"])
        outputs.append(_hls_output(family, rungs, joined, sound, os.path.join(out_dir, family), {"c:v": "copy"}))
    with encode_step("join", out_dir, families, rungs):
        run(command(*outputs), timeout_s, "joining chunks")
    for listing in out.glob("concat_*.txt"):
        listing.unlink()
    with step("package"):
        result = package_families(out, info, rungs, families)
    if storyboard:
        with step("storyboard", **{"longtail.storyboard.sprite_from": "source"}):
            sb = storyboard_for(info)
            tiles = _storyboard_tiles(ffmpeg.input(src)[str(info.video_stream_index)], sb)
            run(command(_sprite_output(tiles, str(out / "thumbs" / "storyboard.jpg"))), timeout_s,
                "making the storyboard")
            add_storyboard(result, out, sb)
    if poster:
        with step("poster"):
            _poster(src, out, info, result, timeout_s)
        with step("preview"):
            _preview(src, out, info, result, timeout_s)
    return result


# ---------------------------------------------------------------------------------------
# per-title analysis: the sample, its encodes, their VMAF


def encode_excerpts(src: str, info: MediaInfo, windows: list[tuple[float, float]], fps: float, out: str,
                    timeout_s: float) -> None:
    """The (start, length) `windows` of `src` joined into `out` at `fps`: a lossless x264
    intermediate (ultrafast), small and fast to decode for every rung."""
    parts = [ffmpeg.input(src, ss=f"{start:.3f}", t=f"{length:.3f}")[str(info.video_stream_index)]
             .filter("fps", fps).filter("format", "yuv420p").filter("setsar", 1) for start, length in windows]
    joined = ffmpeg.concat(*parts, v=1, a=0)
    run(command(joined.output(out, **{"c:v": "libx264", "preset": "ultrafast", "qp": 0})), timeout_s,
        "per-title sampling")


def encode_pictures(sample: str, encodes: list[tuple[tuple[int, int], list[str], str]], timeout_s: float,
                    what: str) -> None:
    """Each (picture size, encoder options, output path) of `encodes`, all in one ffmpeg run
    from one decode of `sample`: each size scaled once and split to its encoders (as the
    ladder is)."""
    sizes: dict[tuple[int, int], list[int]] = {}
    for i, (size, _, _) in enumerate(encodes):
        sizes.setdefault(size, []).append(i)
    per_size = _fan_out(ffmpeg.input(sample)["v"], len(sizes))
    pictures: dict[int, object] = {}
    for copy, ((w, h), idx) in zip(per_size, sizes.items()):
        scaled = copy.filter("scale", w, h, flags="bicubic").filter("format", "yuv420p")
        pictures.update(zip(idx, _fan_out(scaled, len(idx))))
    # Every sample frame encoded once: VMAF pairs frames by index, and ffmpeg's default for
    # raw outputs (constant frame rate) duplicates a frame where timestamps leave a gap,
    # which shifts every frame after it (a 14 s clip's sample scored 29 points low).
    outputs = [ffmpeg.output(pictures[i], path, **output_options(["-fps_mode", "passthrough", *options]))
               for i, (_, options, path) in enumerate(encodes)]
    run(command(*outputs), timeout_s, what)


def _frames_by_index(stream):
    """`stream` in yuv420p with frame n at time n: libvmaf pairs frames by time, and a
    container that rounds timestamps (WebM's milliseconds, a remuxed fMP4) would pair a
    frame with its neighbour and cost many points."""
    return stream.filter("format", "yuv420p").filter("settb", "AVTB").filter("setpts", "N")


def rung_vmaf(encoded: str, src: str, info: MediaInfo, rung: Rung, workdir: str, subsample: int = 1,
              window: tuple[float, float] = (0.0, 0.0), timeout_s: float = 1800) -> float:
    """Mean VMAF (vmaf_v0.6.1) of an encoded rung against the source picture it was made
    from: the source (its `window` (start, length; 0: to the end) as `encode_chunk` cuts
    it) at the ladder's frame rate, inside its black bars, scaled to the rung's size as the
    ladder scales it. Frames are paired by index (`_frames_by_index`)."""
    start, length = window
    cut = {"ss": f"{start:.6f}"} if start > 0 else {}
    if length > 0:
        cut["t"] = f"{length:.6f}"
    ref = ffmpeg.input(src, **cut)[str(info.video_stream_index)]
    if info.frame_rate > MAX_FRAME_RATE:
        ref = ref.filter("fps", MAX_FRAME_RATE)
    if info.crop:
        ref = ref.filter("crop", *info.crop)
    ref = ref.filter("scale", rung.width, rung.height, flags="bicubic")
    log = os.path.join(workdir, f"vmaf_top_{rung.name}.json")
    scores = ffmpeg.filter([_frames_by_index(ffmpeg.input(encoded)["v"]), _frames_by_index(ref)], "libvmaf",
                           n_threads=VMAF_THREADS, n_subsample=subsample, log_fmt="json", log_path=log)
    run(command(scores.output("-", format="null")), timeout_s, "scoring the top rung")
    with open(log) as fh:
        vmaf = float(json.load(fh)["pooled_metrics"]["vmaf"]["mean"])
    os.unlink(log)  # not an output: the store uploads every file of the output folder
    return vmaf


def vmaf_many(distorted: list[str], reference: str, width: int, height: int, workdir: str,
              subsample: int = 1, timeout_s: float = 1800, upscale: bool = False) -> list[float]:
    """Mean VMAF (libvmaf, its built-in vmaf_v0.6.1 model) of each distorted file against
    `reference` scaled to width x height, in one ffmpeg run (the reference is decoded once).
    `upscale`: distorted files are scaled to width x height first (display-size VMAF of a
    smaller rung). Frames are paired by index (`_frames_by_index`)."""
    n = len(distorted)
    reference_frames = _fan_out(
        _frames_by_index(ffmpeg.input(reference)["v"].filter("scale", width, height, flags="bicubic")), n)
    logs, outputs = [], []
    for path, ref in zip(distorted, reference_frames):
        log = os.path.join(workdir, f"vmaf_{os.path.basename(path)}_{width}x{height}.json")
        frames = ffmpeg.input(path)["v"]
        if upscale:
            frames = frames.filter("scale", width, height, flags="bicubic")
        scores = ffmpeg.filter([_frames_by_index(frames), ref], "libvmaf", n_threads=VMAF_THREADS,
                               n_subsample=subsample, log_fmt="json", log_path=log)
        outputs.append(scores.output("-", format="null"))
        logs.append(log)
    run(command(*outputs), timeout_s, "VMAF measurement")
    out = []
    for log in logs:
        with open(log) as fh:
            out.append(float(json.load(fh)["pooled_metrics"]["vmaf"]["mean"]))
    return out


def encode_audio_track(src: str, stream_index: int, out_dir: str, codec: str, duration_s: float,
                       timeout_s: float = 3600) -> None:
    """An alternate audio track as the ladder's audio is packaged (same codec settings,
    CMAF segments of SEGMENT_SECONDS, <out_dir>/{init.mp4, segment_NNNNN.m4s,
    playlist.m3u8}), padded with silence or cut to the video's duration so its segments
    fall where the video's do."""
    sound = ffmpeg.input(src)[str(stream_index)].filter("apad", whole_dur=f"{duration_s:.3f}")
    options = {**_audio_options(codec), "t": f"{duration_s:.3f}", "vn": None, "sn": None, "dn": None,
               "format": "hls", "hls_time": SEGMENT_SECONDS, "hls_playlist_type": "vod",
               "hls_segment_type": "fmp4", "hls_fmp4_init_filename": "init.mp4",
               "hls_flags": "independent_segments",
               "hls_segment_filename": os.path.join(out_dir, "segment_%05d.m4s")}
    os.makedirs(out_dir, exist_ok=True)
    run(command(ffmpeg.output(sound, os.path.join(out_dir, "playlist.m3u8"), **options)), timeout_s,
        "encoding the audio track")
