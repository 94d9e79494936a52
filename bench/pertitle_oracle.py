"""What per-title could reach with perfect knowledge of each clip's curves (issue 4): a bound.

    nice -n 10 python bench/pertitle_oracle.py        # 7 clips x 6 s, ~30 min on 2 cores

The per-title analysis sees 4 test encodes per picture size (plus its verification and
refinement encodes). This bench encodes the same sample at every picture size of Apple's
ladder, and at the in-between sizes `pertitle.in_between_sizes` would add, at ~13 rates
each (1.4x apart, from 1/40 of the size's highest ladder bitrate to twice it) and at every
fixed rung's own rate, with the analysis's own encoder settings (`pt.h264_sample_args`),
and scores display VMAF as the bench does. From those dense curves (Pareto frontier of bits
produced vs display VMAF, PCHIP in log-rate: `pt.smooth`), for each allowed loss L:

* slot matching, loss L: every fixed slot at the fewest bits any measured size needs for
  the fixed rung's display VMAF less L (never more than the fixed rung's bits). This is the
  best any per-title choice of size and bitrate per slot can do with this encoder, these
  sizes and a per-slot loss of L: the issue's limit is L = 1, the analysis aims at
  L = 0.5 (`pt.DEFAULT_MAX_VMAF_LOSS`; the other half is for the sample-to-video error).
  `slot_matching_loss_0_ladder_sizes`: the same with the ladder's own sizes only, so the
  difference is what in-between sizes can add.
* convex hull: the upper convex hull of every dense encode across sizes (Netflix's per-title
  curve), against the fixed ladder: rungs anywhere, no slots. Optimistic: a hull segment is
  a straight line in (bits, VMAF), i.e. time-sharing two encodes, and it spans gaps no single
  encode reaches (e.g. from a 20 kbps encode scoring 0 to one at 900 kbps).

BD-rate as in `pertitle_bench.py`, against the fixed ladder encoded on the same sample.
Writes bench/results/pertitle_oracle.json. `--rescore JSON` recomputes the figures from a
previous run's stored encodes (seconds, no encoding).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import cpu_model  # noqa: E402
from pertitle_bench import DEFAULT_CLIPS, SECONDS, TOP, VMAF_SUBSAMPLE, apple_rungs, bd_rate, make_clips  # noqa: E402
from pertitle_headroom import slot_matching  # noqa: E402
from transcoder_svc import ffmpeg_graphs, probe  # noqa: E402
from transcoder_svc import pertitle as pt  # noqa: E402

GRID_STEP = 1.4  # rate ratio between adjacent dense encodes
GRID_LOW = 1 / 40  # of a size's highest ladder bitrate
GRID_HIGH = 2.0  # a smaller size may serve a slot above its own ceiling
LOSSES = (0.0, 0.5, 1.0)


def dense_rates(ceiling: int, fixed_rates: list[int], top: int) -> list[int]:
    low, high = max(20_000, ceiling * GRID_LOW), min(top, ceiling * GRID_HIGH)
    n = int(math.floor(math.log(high / low) / math.log(GRID_STEP))) + 1
    grid = {int(round(low * GRID_STEP ** k / 1000)) * 1000 for k in range(n)}
    return sorted(grid | set(fixed_rates))


def run_clip(name: str, src: str, work: str, in_between: bool) -> dict:
    info = probe.probe(src)
    fixed = apple_rungs(info, TOP)
    ordered = sorted(fixed, key=lambda r: (r.width * r.height, r.video_bitrate_bps))
    display = (ordered[-1].width, ordered[-1].height)
    top_rate = max(r.video_bitrate_bps for r in fixed)
    sample = os.path.join(work, "sample.mp4")
    fps = pt.sample_fps(info)
    length = pt.make_sample(src, info, 3, 2.0, sample, 3600)
    ladder_sizes = list(pt._highest_by_size(ordered).values())
    sizes = list(ladder_sizes)
    if in_between:
        sizes += pt.in_between_sizes(ordered)
    t0 = time.monotonic()
    points = {}
    for rung in sizes:
        key = f"{rung.width}x{rung.height}"
        own_fixed = [r.video_bitrate_bps for r in fixed if (r.width, r.height) == (rung.width, rung.height)]
        rates = dense_rates(rung.video_bitrate_bps, own_fixed, top_rate)
        measured = pt.measure_rung(sample, length, rung, rates, work, 3600, VMAF_SUBSAMPLE, display, fps=fps)
        points[key] = [(asked, produced, round(shown, 3)) for asked, produced, _, shown in measured]
    fixed_points = []
    for r in fixed:
        key = f"{r.width}x{r.height}"
        produced, shown = next((p, s) for a, p, s in points[key] if a == r.video_bitrate_bps)
        fixed_points.append((produced, shown))
    out = {"source": f"{info.width}x{info.height} @ {info.frame_rate:g} fps, {info.duration_s:.1f} s",
           "sizes": list(points), "ladder_sizes": [f"{r.width}x{r.height}" for r in ladder_sizes],
           "encodes": sum(len(v) for v in points.values()),
           "fixed": {r.name: {"bits": b, "display_vmaf": q} for r, (b, q) in zip(fixed, fixed_points)}}
    out.update(figures(points, fixed_points, out["ladder_sizes"]))
    out["dense_points"] = points
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def figures(points: dict, fixed_points: list[tuple[float, float]], ladder_sizes: list[str]) -> dict:
    """The bounds from a clip's dense encodes (`points`: size -> [(rate asked, bits
    produced, display VMAF)]) against its fixed ladder (`fixed_points`: (bits, display VMAF))."""
    def curve(size):
        return pt.smooth(pt.pareto_frontier([(produced, shown) for _, produced, shown in points[size]]))

    curves = {k: curve(k) for k in points}
    out = {}
    for loss in LOSSES:
        ladder = slot_matching(fixed_points, list(curves.values()), loss)
        out[f"slot_matching_loss_{loss:g}"] = bd_rate(fixed_points, ladder)
        out[f"slot_matching_loss_{loss:g}_ladder"] = [(round(b), round(q, 2)) for b, q in ladder]
    # The same bound with the ladder's own sizes only: what in-between sizes add.
    out["slot_matching_loss_0_ladder_sizes"] = bd_rate(fixed_points, slot_matching(fixed_points, [curves[k] for k in ladder_sizes]))
    everything = [(p, s) for pts in points.values() for _, p, s in pts]
    out["convex_hull"] = bd_rate(fixed_points, pt.upper_hull(everything))
    return out


def rescore(path: str) -> dict:
    """Recompute every clip's figures from a previous run's dense encodes (no encoding)."""
    previous = json.loads(Path(path).read_text())
    for clip in previous["clips"].values():
        fixed_points = [(f["bits"], f["display_vmaf"]) for f in clip["fixed"].values()]
        clip.update(figures(clip["dense_points"], fixed_points, clip["ladder_sizes"]))
    return previous


def _job(job):
    name, src, work, in_between = job
    os.makedirs(work, exist_ok=True)
    return name, run_clip(name, src, work, in_between)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", default=",".join(DEFAULT_CLIPS))
    ap.add_argument("--no-in-between", action="store_true", help="only the ladder's own picture sizes")
    ap.add_argument("--jobs", type=int, default=2, help="clips measured at once")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pertitle_oracle.json"))
    ap.add_argument("--rescore", metavar="JSON", help="recompute the figures of a previous run's encodes (seconds)")
    args = ap.parse_args()
    keys = [f"slot_matching_loss_{loss:g}" for loss in LOSSES] + ["slot_matching_loss_0_ladder_sizes", "convex_hull"]
    if args.rescore:
        out = rescore(args.rescore)
        out["rescored"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        results = out["clips"]
        out["average_bd_rate_pct"] = _average(results, keys)
        _print(results, out["average_bd_rate_pct"], keys)
        Path(args.out).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.out}")
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pertitle-oracle-") as tmp:
        clips = make_clips(Path(tmp), args.clips.split(","), SECONDS, TOP)
        jobs = [(n, s, os.path.join(tmp, n), not args.no_in_between) for n, s in clips.items()]
        with multiprocessing.Pool(args.jobs) as pool:
            results = dict(pool.imap(_job, jobs))
    average = _average(results, keys)
    _print(results, average, keys)
    out = {
        "bench": "pertitle_oracle", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(),
                    "loadavg_1m_at_write": round(os.getloadavg()[0], 1)},
        "command": "nice -n 10 python bench/pertitle_oracle.py " + " ".join(sys.argv[1:]),
        "settings": {"clip_seconds": SECONDS, "grid_step": GRID_STEP, "grid": [GRID_LOW, GRID_HIGH],
                     "in_between": not args.no_in_between, "vmaf_subsample": VMAF_SUBSAMPLE,
                     "x264_preset": ffmpeg_graphs.X264_PRESET},
        "wall_s": round(time.monotonic() - started, 1),
        "average_bd_rate_pct": average, "clips": results,
    }
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


def _average(results: dict, keys: list[str]) -> dict:
    return {k: round(sum(r[k] for r in results.values()) / len(results), 2) for k in keys}


def _print(results: dict, average: dict, keys: list[str]) -> None:
    print(f"{'clip':<24}" + "".join(f"{k.replace('slot_matching_', 'slots_'):>26}" for k in keys))
    for name, r in [*results.items(), ("average", average)]:
        print(f"{name:<24}" + "".join(f"{r[k]:>25.2f}%" for k in keys))


if __name__ == "__main__":
    main()
