"""What in-between picture sizes cost the per-title analysis: time with and without, in one run.

    nice -n 5 python bench/pertitle_cost.py                  # the per-title bench's 7 clips, ~30 min
    nice -n 5 python bench/pertitle_cost.py --clips slide,friday_talking_480p --repeats 1

For each clip (the per-title bench's, 6 s) `pertitle.per_title_ladder` runs with
`in_between=False` and `in_between=True`, in alternating order (off/on, then on/off, ...),
so both see the same machine. Only the analysis is timed (no ladder encodes, no BD-rate:
bench/pertitle_bench.py measures what the sizes save). Wall and CPU (this process and its
ffmpeg children) per run; the figure to read is the on/off ratio.
Writes bench/results/pertitle_cost.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import cpu_model  # noqa: E402
from pertitle_bench import DEFAULT_CLIPS, SECONDS, TOP, apple_rungs, make_clips  # noqa: E402
from transcoder_svc import probe  # noqa: E402
from transcoder_svc import pertitle as pt  # noqa: E402


def _cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _totals(runs: list[dict]) -> dict[str, float]:
    return {k: round(sum(r[k] for r in runs), 1) for k in ("wall_s", "cpu_s")}


def _ratios(off: dict[str, float], on: dict[str, float]) -> dict[str, float]:
    return {"ratio_wall": round(on["wall_s"] / off["wall_s"], 2), "ratio_cpu": round(on["cpu_s"] / off["cpu_s"], 2)}


def analyse(src: str, in_between: bool, work: Path) -> dict:
    info = probe.probe(src)
    wall0, cpu0 = time.monotonic(), _cpu_s()
    res = pt.per_title_ladder(src, info, apple_rungs(info, TOP), in_between=in_between, workdir=str(work))
    return {"wall_s": round(time.monotonic() - wall0, 1), "cpu_s": round(_cpu_s() - cpu0, 1),
            "rungs": [f"{r.name}@{r.video_bitrate_bps // 1000}k" for r in res.rungs]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", default=",".join(DEFAULT_CLIPS))
    ap.add_argument("--repeats", type=int, default=1, help="off/on pairs per clip (order alternates)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pertitle_cost.json"))
    args = ap.parse_args()
    started = time.monotonic()
    clips_out: dict[str, dict] = {}
    flip = False
    with tempfile.TemporaryDirectory(prefix="pertitle-cost-") as tmp:
        work = Path(tmp)
        clips = make_clips(work, args.clips.split(","), SECONDS, TOP)
        for name, src in clips.items():
            runs: dict[str, list[dict]] = {"off": [], "on": []}
            for rep in range(args.repeats):
                for mode in (("on", "off") if flip else ("off", "on")):
                    runs[mode].append(analyse(src, mode == "on", work / f"{name}_{mode}_{rep}"))
                flip = not flip
            off, on = _totals(runs["off"]), _totals(runs["on"])
            clips_out[name] = {**runs, **_ratios(off, on)}
            print(f"{name:24s} wall off {off['wall_s']:7.1f} s  on {on['wall_s']:7.1f} s  x{clips_out[name]['ratio_wall']:.2f}"
                  f"   cpu off {off['cpu_s']:7.1f} s  on {on['cpu_s']:7.1f} s  x{clips_out[name]['ratio_cpu']:.2f}",
                  flush=True)
    total = {m: _totals([r for c in clips_out.values() for r in c[m]]) for m in ("off", "on")}
    summary = {"totals": total, **_ratios(total["off"], total["on"]),
               "bench_wall_s": round(time.monotonic() - started, 1)}
    print(f"all clips: wall x{summary['ratio_wall']:.2f}, CPU x{summary['ratio_cpu']:.2f} with in-between sizes")
    out = {"bench": "pertitle_cost", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(),
                       "loadavg_1m_at_write": round(os.getloadavg()[0], 1)},
           "command": "nice -n 5 python bench/pertitle_cost.py " + " ".join(sys.argv[1:]),
           "summary": summary, "clips": clips_out}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
