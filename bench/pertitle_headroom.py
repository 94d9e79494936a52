"""How far per-title can go with the measured encodes, and how much BD-rate depends on which
points a ladder has (issue 4). Reads a `pertitle_bench.py` result, encodes nothing:

    python bench/pertitle_headroom.py                         # bench/results/pertitle.json
    python bench/pertitle_headroom.py bench/results/pertitle_repeat.json --out /tmp/c.json

Every figure is a BD-rate against the same measured fixed ladder, as in the bench. Each
candidate ladder is built from the test encodes the per-title analysis made for the clip:
each measured picture size gives a curve of (bits actually produced, display VMAF), a PCHIP
in log-rate through its Pareto frontier, like `pertitle.smooth`.

* measured: the per-title ladder as the bench encoded and scored it.
* slot matching: every slot of the fixed ladder at the fewest bits any measured size needs to
  reach that slot's display VMAF (no loss allowed). This is what choosing each slot's size and
  bitrate gets, from these sizes and this encoder, within the curves' prediction error. When
  the measured ladder beats it, it does so by dropping slots and by the top rungs' allowed
  loss, not by better choices: the headroom left in size and bitrate choice is spent.
* Apple spacing: the measured per-title ladder plus, in every gap wider than 2x in bitrate,
  rungs at even log steps (best measured size at that rate) so adjacent rungs are at most 2x
  apart, as Apple's spec advises. Added rungs are predicted, not encoded.
* all test points, Pareto / convex hull: every test encode on the "ladder", then only those on
  the upper convex hull in log-rate. The same encodes, sampled differently.
The last two show that BD-rate on a ladder's few points moves by several points with the
points chosen. Between far-apart points its interpolation runs over the curve's convex foot,
and that flatters a sparse ladder.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import cpu_model  # noqa: E402
from pertitle_bench import bd_rate  # noqa: E402
from transcoder_svc import pertitle as pt  # noqa: E402

APPLE_MAX_STEP = 2.0  # HLS Authoring Spec: adjacent bit rates a factor of 1.5 to 2 apart


def size_curves(clip: dict) -> list[list[tuple[float, float]]]:
    """One (actual bits, display VMAF) curve per measured picture size. Slots of one size
    share their measured points, so identical point sets are one size."""
    seen, out = set(), []
    for c in clip["curves"].values():
        points = tuple((a, v) for a, (_, v) in zip(c["actual_bps"], c["display_vmaf"]))
        if points not in seen:
            seen.add(points)
            out.append(pt.smooth(pt.pareto_frontier(list(points))))
    return out


def cheapest_reaching(curves, vmaf: float) -> float | None:
    """Fewest bits any size needs for `vmaf` (never below a curve's cheapest encode)."""
    rates = [pt.rate_for(c, vmaf) for c in curves if c[-1][1] >= vmaf]
    return min(rates) if rates else None


def best_at(curves, rate: float) -> float | None:
    """Most display VMAF any size gives at `rate`, among sizes measured that low."""
    values = [pt.vmaf_at(c, rate) for c in curves if c[0][0] <= rate]
    return max(values) if values else None


def slot_matching(fixed: list[tuple[float, float]], curves, loss: float = 0.0) -> list[tuple[float, float]]:
    """Each fixed (bits, display VMAF) slot at the fewest bits any curve needs for its VMAF
    less `loss`; a slot no curve serves more cheaply keeps its fixed point."""
    out = []
    for bits, vmaf in fixed:
        rate = cheapest_reaching(curves, vmaf - loss)
        out.append((rate, vmaf - loss) if rate is not None and rate < bits else (bits, vmaf))
    return out


def apple_spaced(clip: dict, curves, max_step: float = APPLE_MAX_STEP) -> tuple[list[tuple[float, float]], int]:
    ladder = sorted((p["bitrate_bps"], p["display_vmaf"]) for p in clip["per_title"].values())
    added = []
    for (lo, _), (hi, _) in zip(ladder, ladder[1:]):
        parts = math.ceil(math.log(hi / lo) / math.log(max_step) - 1e-9)
        for k in range(1, parts):
            rate = lo * (hi / lo) ** (k / parts)
            vmaf = best_at(curves, rate)
            if vmaf is not None:
                added.append((rate, vmaf))
    return ladder + added, len(added)


def analyse(clip: dict) -> dict:
    fixed = [(f["bitrate_bps"], f["display_vmaf"]) for f in clip["fixed"].values()]
    curves = size_curves(clip)
    everything = [p for c in clip["curves"].values()
                  for p in zip(c["actual_bps"], (v for _, v in c["display_vmaf"]))]
    spaced, added = apple_spaced(clip, curves)
    return {
        "measured": clip["bd_rate_pct"],
        "slot_matching": bd_rate(fixed, slot_matching(fixed, curves)),
        "apple_spacing": bd_rate(fixed, spaced),
        "apple_spacing_rungs_added": added,
        "all_test_points_pareto": bd_rate(fixed, everything),
        "all_test_points_convex_hull": bd_rate(fixed, pt.upper_hull(everything)),
    }


COLUMNS = ["measured", "slot_matching", "apple_spacing", "all_test_points_pareto", "all_test_points_convex_hull"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="?", default=str(ROOT / "bench" / "results" / "pertitle.json"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pertitle_headroom.json"))
    args = ap.parse_args()
    source = json.loads(Path(args.results).read_text())
    clips = {name: analyse(c) for name, c in source["clips"].items()}
    average = {k: round(sum(vs) / len(vs), 2) if (vs := [c[k] for c in clips.values() if c[k] is not None])
               else None for k in COLUMNS}
    print(f"{'clip':<24}" + "".join(f"{k:>29}" for k in COLUMNS))
    for name, c in [*clips.items(), ("average", average)]:
        print(f"{name:<24}" + "".join(f"{c[k]:>28.2f}%" if c[k] is not None else f"{'-':>29}" for k in COLUMNS))
    out = {
        "bench": "pertitle_headroom", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count()},
        "command": "python bench/pertitle_headroom.py " + " ".join(sys.argv[1:]),
        "from": {"results": os.path.relpath(args.results, ROOT), "date": source["date"]},
        "average_bd_rate_pct": average, "clips": clips,
    }
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
