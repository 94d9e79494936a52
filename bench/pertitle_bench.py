"""Per-title encoding against Apple's fixed HLS ladder: BD-rate at equal VMAF (issue 4).

    nice -n 10 python bench/pertitle_bench.py            # 7 clips x 6 s, ~30 min on 2 cores
    nice -n 10 python bench/pertitle_bench.py --top 720  # Apple's rungs up to 720p only: quicker
    nice -n 10 python bench/pertitle_bench.py --quick    # 2 clips, shorter: a smoke run
    # also VP9 and AV1 per title (pertitle step 8): VMAF against H.264's, bits against the factor's:
    nice -n 10 python bench/pertitle_bench.py --families h264,vp9,av1 --out bench/results/pertitle_families.json
    # whole longer real clips, the sample a small part of each (sample-to-video error):
    nice -n 10 python bench/pertitle_bench.py --seconds 140 --out bench/results/pertitle_long.json \
        --clips cockatoo_camera_720p,sintel_film_1080p,car_road_432p,bottles_still_360p,office_people_432p

For each clip (generated with ffmpeg's own lavfi sources at the top rung's size,
reproducibly, plus real clips from ../shared/media when present): encode Apple's H.264
ladder (HLS Authoring Spec, 16:9 rungs up to the source's size and at most 1080p:
145/365/730/1100/2000/3000/4500/6000/7800 kbps) and the per-title ladder chosen by
transcoder_svc.pertitle with Apple's bitrates as ceilings.
Both with the platform's x264 settings. Then, on the whole clip:
* rung VMAF: each rendition against the source scaled to the rung size (what the
  metadata stores), compared rung by rung;
* display VMAF: each rendition upscaled to the top rung size against the source at that
  size; the ladder's (bitrate, display VMAF) curve gives the Bjontegaard delta rate
  (pchip in log-rate over the common VMAF range) of per-title against fixed.
VMAF is scored on every 2nd frame (n_subsample=2) to fit the time budget.
Writes bench/results/pertitle.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transcoder_svc import ffmpeg_graphs, ladder, probe  # noqa: E402
from transcoder_svc import pertitle as pt  # noqa: E402

SHARED = ROOT.parent / "shared" / "media"
# Apple HLS Authoring Spec, H.264 16:9 (kbps), from ../shared/notes/placement-and-encoding-figures.md
APPLE = [(234, 145), (360, 365), (432, 730), (432, 1100), (540, 2000), (720, 3000), (720, 4500),
         (1080, 6000), (1080, 7800)]
TOP = 1080  # Apple's whole ladder, up to its two 1080p rungs (--top 720 for a quicker run)
VMAF_SUBSAMPLE = 2
SECONDS = 6
DEFAULT_CLIPS = ["slide", "lowmotion", "mandelbrot", "sintel_film_1080p", "bbb_animation", "cockatoo_camera_720p",
                 "friday_talking_480p"]

SYNTHETIC = {
    # A still slide: one test-card frame held for the whole clip.
    "slide": "testsrc=s={size}:r=30:d=0.04,tpad=stop_mode=clone:stop_duration={d}",
    # Low motion, mostly still picture with small moving parts (talking-head-like).
    "lowmotion": "testsrc2=s={size}:r=30:d={d}",
    # High motion: a zoom into the Mandelbrot set, detail everywhere, every frame changes.
    "mandelbrot": "mandelbrot=s={size}:r=30,trim=duration={d}",
    # Film grain: moving pattern under heavy temporal noise (the hardest case for x264).
    "grain": "testsrc2=s={size}:r=30:d={d},noise=alls=20:allf=t+u",
}
REAL = {
    "bbb_animation": "bbb_720p_h264_aac51.mp4",
    "friday_talking_480p": "friday_480p_h264_aac.mp4",
    "sintel_film_1080p": "sintel_1080p_h264_letterbox.mp4",
    "cockatoo_camera_720p": "cockatoo_720p_h264.mp4",
    # Longer real camera clips (30-139 s), where the 3 x 2 s sample is a small part of the
    # video: they show the sample-to-video error (run with --seconds 140 to keep them whole).
    "car_road_432p": "car-detection_432p_h264_aac.mp4",
    "bottles_still_360p": "bottle-detection_360p_h264.mp4",
    "office_people_432p": "extras/one-by-one-person-detection_432p_h264.mp4",
}


def _ff(*args: str) -> None:
    subprocess.run([ffmpeg_graphs.ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_clips(work: Path, names: list[str], seconds: float, top: int) -> dict[str, str]:
    """Synthetic clips are made at the top rung's 16:9 size; real clips keep their own."""
    size = f"{top * 16 // 9}x{top}"
    clips = {}
    for name in names:
        path = work / f"{name}.mp4"
        if name in SYNTHETIC:
            src = SYNTHETIC[name].format(d=seconds, size=size)
            _ff("-f", "lavfi", "-i", src, "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
                "-qp", "0", "-pix_fmt", "yuv420p", str(path))
        else:
            shared = SHARED / REAL[name]
            if not shared.exists():
                continue
            # Lossless copy of the first seconds, video only: the reference for VMAF.
            _ff("-i", str(shared), "-t", str(seconds), "-map", "0:v:0", "-c:v", "libx264", "-preset",
                "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", str(path))
        clips[name] = str(path)
    return clips


def apple_rungs(info: probe.MediaInfo, top: int = TOP) -> list[ladder.Rung]:
    """Apple's rungs that fit the source (never upscaled), its aspect ratio kept."""
    short = min(info.width, info.height)
    out = []
    for h, kbps in APPLE:
        if h > min(short, top):
            break
        w = int(round(h * info.width / info.height / 2)) * 2
        level = "3.0" if h <= 360 else "3.1" if h <= 720 else "4.0"
        out.append(pt.make_rung(f"{h}p_{kbps}k", w, h, kbps * 1000, level))
    return out


def encode_ladder(src: str, rungs: list[ladder.Rung], work: Path, tag: str, fps: float
                  ) -> tuple[dict[str, str], float]:
    """One ffmpeg run per ladder (decode once, split), the platform's x264 settings, as the
    analysis encodes them (`pt.h264_sample_args`: one thread each, so a rerun of the bench
    encodes the same files)."""
    n = len(rungs)
    graph = f"[0:v]split={n}" + "".join(f"[s{i}]" for i in range(n))
    for i, r in enumerate(rungs):
        graph += f";[s{i}]scale={r.width}:{r.height}:flags=bicubic,format=yuv420p[e{i}]"
    args = ["-i", src, "-filter_complex", graph]
    paths = {}
    for i, r in enumerate(rungs):
        paths[r.name] = str(work / f"{tag}_{r.name}.h264")
        args += ["-map", f"[e{i}]", *pt.h264_sample_args(r, r.video_bitrate_bps, fps), paths[r.name]]
    t0 = time.monotonic()
    _ff(*args)
    return paths, time.monotonic() - t0


def measure(src: str, duration: float, rungs: list[ladder.Rung], paths: dict[str, str], top: ladder.Rung,
            work: Path) -> dict[str, dict]:
    out = {}
    for r in rungs:
        rung_vmaf = ffmpeg_graphs.vmaf_many([paths[r.name]], src, r.width, r.height, str(work), VMAF_SUBSAMPLE)[0]
        if (r.width, r.height) == (top.width, top.height):
            display = rung_vmaf
        else:
            display = ffmpeg_graphs.vmaf_many([paths[r.name]], src, top.width, top.height, str(work), VMAF_SUBSAMPLE,
                                   upscale=True)[0]
        out[r.name] = {"width": r.width, "height": r.height, "target_bps": r.video_bitrate_bps,
                       "bitrate_bps": int(os.path.getsize(paths[r.name]) * 8 / duration),
                       "vmaf": round(rung_vmaf, 2), "display_vmaf": round(display, 2)}
    return out


def bd_rate(ref: list[tuple[float, float]], test: list[tuple[float, float]]) -> float | None:
    """Bjontegaard delta rate (%) of `test` against `ref`, points (bitrate, quality): the
    average log-rate difference at equal quality over the common quality range, each curve
    a monotone pchip (scipy) or linear (numpy) interpolation of log-rate over quality."""
    def prep(points):
        frontier = pt.pareto_frontier([(b, q) for b, q in points])
        return np.array([q for _, q in frontier]), np.log10([b for b, _ in frontier])
    qa, ra = prep(ref)
    qb, rb = prep(test)
    lo, hi = max(qa.min(), qb.min()), min(qa.max(), qb.max())
    if len(qa) < 2 or len(qb) < 2 or hi - lo < 0.5:
        return None
    grid = np.linspace(lo, hi, 200)
    try:
        from scipy.interpolate import PchipInterpolator

        ia, ib = PchipInterpolator(qa, ra)(grid), PchipInterpolator(qb, rb)(grid)
    except ImportError:
        ia, ib = np.interp(grid, qa, ra), np.interp(grid, qb, rb)
    avg = float(np.trapezoid(ib - ia, grid) / (hi - lo))
    return round((10 ** avg - 1) * 100, 2)


def run_clip(name: str, src: str, work: Path, choose_resolution: bool = True, top_height: int = TOP,
             in_between: bool = True, samples: int = 3, refine_rounds: int = pt.DEFAULT_REFINE_ROUNDS,
             families: tuple[str, ...] = ("h264",)) -> dict:
    info = probe.probe(src)
    fixed = apple_rungs(info, top_height)
    top = fixed[-1]
    t0 = time.monotonic()
    res = pt.per_title_ladder(src, info, fixed, workdir=str(work), choose_resolution=choose_resolution,
                              in_between=in_between, samples=samples, refine_rounds=refine_rounds,
                              families=families)
    analysis_s = time.monotonic() - t0
    fps = pt.sample_fps(info)
    fixed_paths, fixed_enc_s = encode_ladder(src, fixed, work, "fixed", fps)
    pt_paths, pt_enc_s = encode_ladder(src, res.rungs, work, "pertitle", fps)
    fm = measure(src, info.duration_s, fixed, fixed_paths, top, work)
    pm = measure(src, info.duration_s, res.rungs, pt_paths, top, work)
    for r in res.rungs:
        pm[r.name]["predicted_vmaf"] = res.vmaf_by_rung[r.name]
        pm[r.name]["predicted_display_vmaf"] = res.display_vmaf_by_rung[r.name]
    # Compare slot by slot (a per-title rung may have moved to another picture size): on
    # display VMAF, the one scale where different sizes compare; rung-size VMAF too when
    # the size is unchanged.
    by_slot = {slot: {"rung": n, **pm[n]} for slot, n in res.slots.items()}
    deltas = {s_: round(p["display_vmaf"] - fm[s_]["display_vmaf"], 2) for s_, p in by_slot.items()}
    rung_deltas = {s_: round(p["vmaf"] - fm[s_]["vmaf"], 2) for s_, p in by_slot.items()
                   if (p["width"], p["height"]) == (fm[s_]["width"], fm[s_]["height"])}
    savings = {s_: round(100 * (1 - p["bitrate_bps"] / fm[s_]["bitrate_bps"]), 1) for s_, p in by_slot.items()}
    bd = bd_rate([(v["bitrate_bps"], v["display_vmaf"]) for v in fm.values()],
                 [(v["bitrate_bps"], v["display_vmaf"]) for v in pm.values()])
    # The other families' rungs (pertitle step 8), on the sample at each rung's size: at
    # ladder.FAMILY_BITRATE_FACTOR's rate (the first encode) and at the rate chosen per title,
    # VMAF against the rung's H.264 VMAF and bits against the factor's.
    rung_by_name = {r.name: r for r in res.rungs}
    families_out = {}
    for fam in families:
        if fam == "h264":
            continue
        factor, chosen, factor_bits, chosen_bits = {}, {}, 0, 0
        for slot, n in res.slots.items():
            r, trials = rung_by_name[n], res.family_trials[n][fam]
            pick = next(t for t in trials if t[0] == r.family_bitrate_bps[fam])
            factor[slot] = round(trials[0][2] - r.vmaf, 2)
            chosen[slot] = round(pick[2] - r.vmaf, 2)
            factor_bits += trials[0][1]
            chosen_bits += pick[1]
        families_out[fam] = {"vmaf_vs_h264_at_factor": factor, "vmaf_vs_h264_per_title": chosen,
                             "kbps_at_factor": round(factor_bits / 1000), "kbps_per_title": round(chosen_bits / 1000),
                             "bits_saving_pct": round(100 * (1 - chosen_bits / factor_bits), 1),
                             "retried": sum(len(res.family_trials[n][fam]) > 1 for n in res.slots.values())}
    total_fixed = sum(v["bitrate_bps"] for v in fm.values())
    total_pt = sum(v["bitrate_bps"] for v in pm.values())
    return {
        "source": f"{info.width}x{info.height} @ {info.frame_rate:g} fps, {info.duration_s:.1f} s",
        "fixed": fm, "per_title": by_slot, "dropped": res.dropped, "reverted_by_verification": res.reverted,
        "refined": res.refined,
        "curves": {k: {"rung_vmaf": c.points, "display_vmaf": c.display_points, "actual_bps": c.actual_bps}
                   for k, c in res.curves.items()},
        "display_vmaf_delta_by_rung": deltas, "rung_vmaf_delta_same_size": rung_deltas,
        "bitrate_saving_pct_by_rung": savings,
        "worst_rung_vmaf_delta": min(deltas.values()),
        "bd_rate_pct": bd,
        "ladder_bits_saving_pct": round(100 * (1 - total_pt / total_fixed), 1),
        # Predicted = measured on the sample: on a long video, the sample-to-video error. The
        # mean is of display VMAF (the scale slots are judged on); the max is of either scale.
        "prediction_error_mean": round(sum(abs(p["display_vmaf"] - p["predicted_display_vmaf"])
                                           for p in pm.values()) / len(pm), 2),
        "prediction_error_max": round(max(max(abs(p["vmaf"] - p["predicted_vmaf"]),
                                              abs(p["display_vmaf"] - p["predicted_display_vmaf"]))
                                          for p in pm.values()), 2),
        **({"families": families_out} if families_out else {}),
        "analysis_s": round(analysis_s, 1),
        "families_s": round(res.families_seconds, 1),  # (part of analysis_s)
        "analysis_sample_s": res.sample_seconds,
        "fixed_ladder_encode_s": round(fixed_enc_s, 1),
        "per_title_ladder_encode_s": round(pt_enc_s, 1),
    }


def write(args, seconds, clips_out, started, final: bool) -> None:
    bds = [c["bd_rate_pct"] for c in clips_out.values() if c["bd_rate_pct"] is not None]
    avg_bd = round(sum(bds) / len(bds), 2) if bds else None
    worst = min(c["worst_rung_vmaf_delta"] for c in clips_out.values())
    avg_analysis = sum(c["analysis_s"] for c in clips_out.values()) / len(clips_out)
    summary = {
        "average_bd_rate_pct": avg_bd,
        "average_ladder_bits_saving_pct": round(sum(c["ladder_bits_saving_pct"] for c in clips_out.values())
                                                / len(clips_out), 1),
        "worst_rung_vmaf_delta": worst,
        "target_bd_rate_met": avg_bd is not None and avg_bd <= -20.0,
        "target_rung_vmaf_met": worst >= -1.0,
        "analysis_s_per_clip_avg": round(avg_analysis, 1),
        # The sample is fixed-length (3 x 2 s), so analysis cost per video is ~constant:
        "analysis_s_per_source_minute_for_10min_video": round(avg_analysis / 10, 1),
        "bench_wall_s": round(time.monotonic() - started, 1),
    }
    for fam in args.families.split(","):
        per_clip = [c["families"][fam] for c in clips_out.values() if fam in c.get("families", {})]
        if per_clip:  # per slot: the family's VMAF less H.264's, same rung, same sample
            at_factor = [d for c in per_clip for d in c["vmaf_vs_h264_at_factor"].values()]
            per_title = [d for c in per_clip for d in c["vmaf_vs_h264_per_title"].values()]
            summary[fam] = {
                "vmaf_vs_h264_at_factor": {"mean": round(sum(at_factor) / len(at_factor), 2), "min": min(at_factor),
                                           "max": max(at_factor)},
                "vmaf_vs_h264_per_title": {"mean": round(sum(per_title) / len(per_title), 2), "min": min(per_title),
                                           "max": max(per_title)},
                "slots_under_h264_by_more_than_0.5": {"at_factor": sum(d < -0.5 for d in at_factor),
                                                      "per_title": sum(d < -0.5 for d in per_title),
                                                      "of": len(at_factor)},
                "average_bits_saving_pct": round(sum(c["bits_saving_pct"] for c in per_clip) / len(per_clip), 1),
                "slots_retried": sum(c["retried"] for c in per_clip),
            }
    if final:
        print(f"\nAverage BD-rate {avg_bd}% (target <= -20%: {summary['target_bd_rate_met']}); worst rung "
              f"dVMAF {worst:+.2f} (target >= -1: {summary['target_rung_vmaf_met']}); analysis "
              f"{avg_analysis:.0f} s per clip = {avg_analysis / 10:.1f} s per source minute for a 10-min video")
    out = {
        "bench": "pertitle", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1m_at_write": round(os.getloadavg()[0], 1)},  # the box is shared
        "command": "nice -n 10 python bench/pertitle_bench.py " + " ".join(sys.argv[1:]),
        "settings": {"top_rung": f"{args.top}p", "clip_seconds": seconds, "x264_preset": ffmpeg_graphs.X264_PRESET,
                     "x264_options": "ffmpeg_graphs.encoder_args (keyframe every segment), one thread per encode",
                     "vmaf_model": "vmaf_v0.6.1 (built into libvmaf)", "vmaf_subsample": VMAF_SUBSAMPLE,
                     "max_vmaf_loss": pt.DEFAULT_MAX_VMAF_LOSS, "min_step": pt.DEFAULT_MIN_STEP,
                     "points": pt.DEFAULT_POINTS, "apple_ladder_kbps": APPLE,
                     "choose_resolution": not args.bitrate_only, "in_between": not args.no_in_between,
                     "samples": f"{args.samples} x 2 s", "refine_rounds": args.refine_rounds,
                     "families": args.families, "family_bitrate_factor": ladder.FAMILY_BITRATE_FACTOR},
        "complete": final, "summary": summary, "clips": clips_out,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="two synthetic clips of 4 s (smoke run)")
    ap.add_argument("--clips", default=",".join(DEFAULT_CLIPS),
                    help=f"comma-separated, from {', '.join([*SYNTHETIC, *REAL])}")
    ap.add_argument("--no-in-between", action="store_true",
                    help="only the ladder's own picture sizes, none in its wide gaps (pertitle in_between=False; "
                         "the default before 2026-11-29)")
    ap.add_argument("--bitrate-only", action="store_true",
                    help="keep every rung's size, only lower bitrates (pertitle choose_resolution=False)")
    ap.add_argument("--seconds", type=float, default=SECONDS, help="clip length (real clips: at most theirs)")
    ap.add_argument("--samples", type=int, default=3, help="2 s excerpts the per-title analysis measures")
    ap.add_argument("--refine-rounds", type=int, default=pt.DEFAULT_REFINE_ROUNDS,
                    help="per-title refinement rounds (pertitle step 7; 0 = off, as before 2026-11-27 17:00)")
    ap.add_argument("--families", default="h264",
                    help="codec families to encode the per-title rungs in, e.g. h264,vp9,av1: each "
                         "rung's VMAF in the others is measured on the sample and set against H.264's")
    ap.add_argument("--top", type=int, default=TOP, choices=(720, 1080), help="the ladder's top rung height")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pertitle.json"))
    args = ap.parse_args()
    names = ["slide", "lowmotion"] if args.quick else args.clips.split(",")
    seconds = 4 if args.quick else args.seconds
    started = time.monotonic()
    clips_out = {}
    with tempfile.TemporaryDirectory(prefix="pertitle-bench-") as tmp:
        work = Path(tmp)
        clips = make_clips(work, names, seconds, args.top)
        for name, src in clips.items():
            cw = work / name
            cw.mkdir()
            r = run_clip(name, src, cw, choose_resolution=not args.bitrate_only, top_height=args.top,
                         in_between=not args.no_in_between, samples=args.samples, refine_rounds=args.refine_rounds,
                         families=tuple(args.families.split(",")))
            clips_out[name] = r
            write(args, seconds, clips_out, started, final=False)  # partial results survive a stop
            print(f"\n== {name} ({r['source']}): BD-rate {r['bd_rate_pct']}%, ladder bits "
                  f"-{r['ladder_bits_saving_pct']}%, worst slot display dVMAF {r['worst_rung_vmaf_delta']:+.2f}, "
                  f"analysis {r['analysis_s']} s, dropped {list(r['dropped'])}, reverted {list(r['reverted_by_verification'])}, "
                  f"refined {list(r['refined'])}")
            for fam, f in r.get("families", {}).items():
                print(f"   {fam} VMAF less H.264's by slot, at the factor's rate -> per title: " + ", ".join(
                    f"{k} {v:+.2f}->{f['vmaf_vs_h264_per_title'][k]:+.2f}" for k, v in f["vmaf_vs_h264_at_factor"].items())
                    + f"; {f['kbps_at_factor']} -> {f['kbps_per_title']} kbps ({-f['bits_saving_pct']:+.1f} %)")
            print(f"   {'slot':<12}{'fixed kbps':>11}{'dispVMAF':>9}{'per-title':>16}{'kbps':>7}{'dispVMAF':>9}"
                  f"{'pred':>7}{'dVMAF':>7}{'saved':>7}")
            for n, f in r["fixed"].items():
                p = r["per_title"].get(n)
                tail = (f"{p['rung']:>16}{p['bitrate_bps'] / 1000:>7.0f}{p['display_vmaf']:>9.2f}"
                        f"{p['predicted_display_vmaf']:>7.2f}{r['display_vmaf_delta_by_rung'][n]:>+7.2f}"
                        f"{r['bitrate_saving_pct_by_rung'][n]:>6.1f}%" if p else f"{'(dropped)':>16}")
                print(f"   {n:<12}{f['bitrate_bps'] / 1000:>11.0f}{f['display_vmaf']:>9.2f}{tail}", flush=True)
    write(args, seconds, clips_out, started, final=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
