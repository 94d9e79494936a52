"""Transcode benchmark: the H.264 ladder from ONE decode (split filter graph) against one
ffmpeg run per rendition (a decode per rung, the way many platforms do it).

Run from the repo root:  .venv/bin/python bench/transcode_bench.py [--seconds 60] [--sources a,b]
Writes bench/results/transcode.json. Target: single-decode >= 1.5x faster (wall time).

What one decode saves depends on what a decode costs, and that grows with the upload's
bitrate and codec, so the 60 s 1080p30 source is made in three kinds, reproducibly, from the
10 s Sintel clip in ../shared/media looped six times plus a tone (ffmpeg's testsrc2 +
mandelbrot without ../shared):
* camera_h264: H.264 High at 17.3 Mbps, what a phone records (an iPhone's camera settings
  list 130 MB per minute for 1080p30 "Most Compatible"): the common upload;
* camera_hevc: HEVC at 8 Mbps (60 MB per minute, the iPhone's default "High Efficiency");
* web_h264: H.264 at CRF 18 (about 4 Mbps): a file already compressed for the web, the
  cheapest kind to decode (the only source of earlier runs).
Both methods produce the same rungs, segments and audio, with the same x264 settings; the
single-decode graph also scales each rung from the next bigger one (the per-rendition runs
can only scale from the source). Also measured: CPU of the decode alone and of decode +
all scales (no encode), which bound what one decode can save.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transcoder_svc import ffmpeg_graphs, ladder, packaging, probe  # noqa: E402
from machine import cpu_model, ffmpeg_version  # noqa: E402  (bench/machine.py)

SINTEL = ROOT.parent / "shared" / "media" / "sintel_1080p_h264_letterbox.mp4"
TARGET_SPEEDUP = 1.5
# kind -> (video encoder args, what it stands for)
SOURCES = {
    "camera_h264": (["-c:v", "libx264", "-preset", "veryfast", "-b:v", "17300k", "-maxrate", "17300k",
                     "-bufsize", "34600k"], "H.264 High 17.3 Mbps, as a phone records 1080p30 (130 MB/min)"),
    "camera_hevc": (["-c:v", "libx265", "-preset", "ultrafast", "-b:v", "8000k", "-tag:v", "hvc1",
                     "-x265-params", "log-level=error"], "HEVC 8 Mbps, a phone's default 1080p30 (60 MB/min)"),
    "web_h264": (["-c:v", "libx264", "-preset", "veryfast", "-crf", "18"],
                 "H.264 CRF 18 (about 4 Mbps), already compressed for the web"),
}
# Uploads come as camera originals: the target is judged on those kinds.
TARGET_SOURCES = ("camera_h264", "camera_hevc")


def make_source(path: pathlib.Path, seconds: int, kind: str) -> str:
    ff = ffmpeg_graphs.ffmpeg_exe()
    tone = ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    if SINTEL.exists():
        video = ["-stream_loop", "-1", "-i", str(SINTEL)]
        desc = f"{SINTEL.name} looped to {seconds} s, 1920x1080 30 fps, + 440 Hz tone"
        vf = ["-map", "0:v:0", "-map", "1:a:0"]
    else:
        video = ["-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=30:duration={seconds}",
                 "-f", "lavfi", "-i", f"mandelbrot=size=1920x1080:rate=30"]
        desc = f"testsrc2 blended with mandelbrot, {seconds} s 1920x1080 30 fps, + 440 Hz tone"
        vf = ["-filter_complex", "[0:v][1:v]blend=all_mode=average[v]", "-map", "[v]", "-map", "2:a:0"]
    encoder, what = SOURCES[kind]
    subprocess.run([ff, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *video, *tone, *vf,
                    "-t", str(seconds), *encoder, "-g", "60", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "192k", str(path)], check=True)
    return f"{desc}; {what}"


def timed(args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the child) for one ffmpeg run."""
    start = time.monotonic()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    if status != 0:
        raise RuntimeError(f"ffmpeg failed: {proc.stderr.read().decode(errors='replace')[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime


def _null_outputs(cmd: list[str], n: int) -> list[str]:
    """The command's decode + filter graph with every rung sent to the null muxer (no encode)."""
    i = cmd.index("-filter_complex")
    args = cmd[:i + 2]
    for label in [cmd[k + 1] for k in range(i + 2, len(cmd) - 1) if cmd[k] == "-map" and cmd[k + 1].startswith("[")][:n]:
        args += ["-map", label, "-f", "null", "-"]
    return args


def segments(out: pathlib.Path) -> dict[str, int]:
    return {p.parent.name: len(packaging.read_media_playlist(p).segments) for p in sorted(out.rglob("playlist.m3u8"))}


def compare(src: pathlib.Path, work: pathlib.Path) -> dict:
    """Single decode against one run per rendition, on one source."""
    info = probe.probe(str(src))
    rungs = ladder.ladder_for(info)
    load_start = os.getloadavg()
    single_dir = work / "single"
    single_wall, single_cpu = timed(ffmpeg_graphs.build_command(str(src), str(single_dir), info, rungs, ("h264",)))
    print(f"  single decode, one process: wall {single_wall:.1f} s, CPU {single_cpu:.1f} s", flush=True)

    per_wall = per_cpu = 0.0
    per_runs = []
    for j, rung in enumerate(rungs):
        # the audio rendition is encoded once in both methods (with the first rung here)
        w, c = timed(ffmpeg_graphs.build_command(str(src), str(work / "per" / rung.name), info, [rung], ("h264",),
                                         audio=(j == 0)))
        per_runs.append({"rung": rung.name, "wall_s": round(w, 2), "cpu_s": round(c, 2)})
        per_wall, per_cpu = per_wall + w, per_cpu + c
    print(f"  one run per rendition ({len(rungs)} runs): wall {per_wall:.1f} s, CPU {per_cpu:.1f} s", flush=True)

    ff = ffmpeg_graphs.ffmpeg_exe()
    _, decode_cpu = timed([ff, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(src),
                           "-map", f"0:{info.video_stream_index}", "-f", "null", "-"])
    single_cmd = ffmpeg_graphs.build_command(str(src), str(work / "null"), info, rungs, ("h264",))
    _, scale_cpu = timed(_null_outputs(single_cmd, len(rungs)))
    scale_cpu -= decode_cpu
    print(f"  decode alone: CPU {decode_cpu:.1f} s; the single graph's scales: CPU {scale_cpu:.1f} s", flush=True)

    single_segs = segments(single_dir / "h264")
    per_segs = {}
    for d in (work / "per").iterdir():
        per_segs.update(segments(d / "h264"))
    assert single_segs == per_segs, (single_segs, per_segs)  # same work was done

    speedup_wall, speedup_cpu = per_wall / single_wall, per_cpu / single_cpu
    print(f"  single-decode speedup: wall {speedup_wall:.2f}x, CPU {speedup_cpu:.2f}x", flush=True)
    return {
        "bitrate_bps": int(src.stat().st_size * 8 / info.duration_s),
        "video_codec": info.video_codec, "duration_s": info.duration_s, "width": info.width,
        "height": info.height, "frame_rate": info.frame_rate,
        "ladder": [{"rung": r.name, "size": f"{r.width}x{r.height}", "video_bitrate_bps": r.video_bitrate_bps}
                   for r in rungs],
        "loadavg_at_start": load_start, "loadavg_at_end": os.getloadavg(),
        "single_decode": {"wall_s": round(single_wall, 2), "cpu_s": round(single_cpu, 2)},
        "per_rendition": {"wall_s": round(per_wall, 2), "cpu_s": round(per_cpu, 2), "runs": per_runs},
        "cpu_breakdown": {
            "decode_s": round(decode_cpu, 2),  # one 1080p decode, no filter or encode
            "single_graph_scales_s": round(scale_cpu, 2),  # decode + all scales to null, minus decode
            "decode_share_of_per_rendition_cpu": round(len(rungs) * decode_cpu / per_cpu, 3),
            # if the single path cost only its encodes, the CPU ratio could reach at most:
            "cpu_ratio_bound": round(per_cpu / max(single_cpu - decode_cpu - scale_cpu, 1e-9), 2),
        },
        "speedup_wall": round(speedup_wall, 2),
        "speedup_cpu": round(speedup_cpu, 2),
        "realtime_factor_single": round(info.duration_s / single_wall, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--sources", default=",".join(SOURCES), help=f"comma-separated, from {', '.join(SOURCES)}")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "transcode.json"))
    args = ap.parse_args()
    kinds = args.sources.split(",")
    unknown = sorted(set(kinds) - set(SOURCES))
    if unknown:
        ap.error(f"unknown source kind(s) {unknown}; one of {list(SOURCES)}")
    work = pathlib.Path(tempfile.mkdtemp(prefix="transcode-bench-"))
    try:
        results = {}
        for kind in kinds:
            src = work / kind / "source.mp4"
            src.parent.mkdir(parents=True)
            desc = make_source(src, args.seconds, kind)
            print(f"{kind}: {desc}; preset {ffmpeg_graphs.X264_PRESET}", flush=True)
            results[kind] = {"description": desc, **compare(src, work / kind)}
            shutil.rmtree(work / kind, ignore_errors=True)
        judged = [k for k in kinds if k in TARGET_SOURCES]
        met = bool(judged) and all(results[k]["speedup_wall"] >= TARGET_SPEEDUP for k in judged)
        print("speedup (wall / CPU): " + "; ".join(
            f"{k} {r['speedup_wall']:.2f}x / {r['speedup_cpu']:.2f}x" for k, r in results.items())
            + f" (target >= {TARGET_SPEEDUP}x wall on {', '.join(judged) or 'no camera source'}: {met})")
        result = {
            "benchmark": "transcode_h264_ladder_single_decode_vs_per_rendition",
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(),
                        "ffmpeg": ffmpeg_version()},
            "command": "python bench/transcode_bench.py" + "".join(f" {a}" for a in sys.argv[1:]),
            "x264_preset": ffmpeg_graphs.X264_PRESET,
            "sources": results,
            "target_speedup_wall": TARGET_SPEEDUP,
            "target_judged_on": judged,
            "target_met": met,
        }
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
        return 0 if met else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
