"""What an AV1 (or VP9) ladder costs to make and saves to deliver, against H.264: the
figures behind "AV1 only for the videos placement expects to be popular".

  nice -n 10 .venv/bin/python bench/codec_bench.py [--clips a,b] [--families vp9,av1] [--seconds S]
      [--cpu-hour-usd P] -> bench/results/codec.json

Per clip (real clips from ../shared/media, video only), the platform's default ladder
(ladder.ladder_for) is encoded once per family with the platform's own encoder settings
(ffmpeg_graphs.transcode: x264, libvpx-vp9, SVT-AV1 at media's presets; each family's bitrates are
H.264's times ladder.FAMILY_BITRATE_FACTOR, one fraction for the lower rungs, one for the top). Measured: CPU seconds of the encode (ffmpeg's
user+sys), bits per rung, and display VMAF of every rung (upscaled to the top rung's size,
vmaf_v0.6.1, every 2nd frame) against the source. From those:
- BD-rate of the family's ladder against H.264's (bits saved at equal display VMAF), and
  each rung's VMAF against the H.264 rung it replaces (does the bitrate factor keep quality?);
- break-even views: the extra encode (CPU-hours at --cpu-hour-usd) plus a month of storing
  the extra ladder, divided by what one view saves in delivery. One view downloads
  placement's `view_bytes_fraction` of the H.264 ladder (the cost model's own assumption),
  and the family saves the BD-rate share of it, priced per GB at the cheapest CDN region
  (the most views needed) and at origin egress (the fewest). Encode cost and bytes both grow
  with the video's length, so the break-even does not depend on it. It assumes every
  viewer's player takes the family; with a share s of such players it is 1/s times larger.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
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

from machine import cpu_model, ffmpeg_version  # noqa: E402
from pertitle_bench import bd_rate, make_clips  # noqa: E402

from placement_svc.model import costs as placement_costs  # noqa: E402
from transcoder_svc import ffmpeg_graphs, ladder, probe  # noqa: E402
from transcoder_svc import pertitle as pt  # noqa: E402

DEFAULT_CLIPS = ["sintel_film_1080p", "cockatoo_camera_720p", "bbb_animation", "car_road_432p"]
# AWS EC2 on-demand, us-east-1, Linux: c6a.large (2 vCPU, AMD EPYC like this machine) at
# $0.0765 per hour, i.e. per vCPU-hour (the encode's CPU seconds are vCPU seconds).
CPU_HOUR_USD = 0.0765 / 2
VMAF_SUBSAMPLE = 2
STORE_DAYS = 30
# "Parity": within the per-title guard's half point of the H.264 rung (near VMAF 95 the
# codecs saturate differently, and an exact match can cost far more bits for nothing visible).
PARITY_TOLERANCE = pt.DEFAULT_MAX_VMAF_LOSS


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def encode(src: str, info: probe.MediaInfo, rungs: list[ladder.Rung], family: str, work: Path,
           factor: float | None = None) -> dict:
    """The ladder in `family` (its bitrates H.264's times `factor`, default media's factor):
    CPU and wall seconds, bytes, and per rung the bits, VMAF at its own size and display VMAF."""
    out = work / family
    saved = ladder.FAMILY_BITRATE_FACTOR[family]
    if factor is not None:  # every rung at this fraction of H.264's
        ladder.FAMILY_BITRATE_FACTOR[family] = (factor, factor)
    try:
        cpu0, t0 = _cpu_children(), time.monotonic()
        result = ffmpeg_graphs.transcode(src, str(out), info, rungs, families=[family], storyboard=False, poster=False)
        cpu, wall = _cpu_children() - cpu0, time.monotonic() - t0
    finally:
        ladder.FAMILY_BITRATE_FACTOR[family] = saved
    fam = result.families[0]
    top = max(rungs, key=lambda r: r.width * r.height)
    files = []  # one MP4 per rung, named after it (VMAF logs are named after their input)
    for r in fam.renditions:
        files.append(str(work / f"{family}_{r.name}.mp4"))
        ffmpeg_graphs.remux_rendition(str(out / r.playlist_path), None, files[-1])
    display = ffmpeg_graphs.vmaf_many(files, src, top.width, top.height, str(work), VMAF_SUBSAMPLE, upscale=True)
    own = [ffmpeg_graphs.vmaf_many([f], src, r.width, r.height, str(work), VMAF_SUBSAMPLE)[0] if (r.width, r.height) != (
        top.width, top.height) else d for f, r, d in zip(files, fam.renditions, display)]
    rows = {r.name: {"height": r.height, "bitrate_bps": r.average_bitrate_bps, "vmaf": round(q, 2),
                     "display_vmaf": round(d, 2)} for r, q, d in zip(fam.renditions, own, display)}
    ladder_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"factor": factor if factor is not None else saved, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
            "ladder_bytes": ladder_bytes, "rungs": rows}


def parity_factor(h264_vmaf: float, points: list[tuple[float, float]]) -> float | None:
    """The requested bitrate factor at which a rung's VMAF (at its own size) comes within
    PARITY_TOLERANCE of the H.264 rung's: linear in log factor between the measured (factor,
    VMAF) points; None when even the largest factor falls short."""
    h264_vmaf -= PARITY_TOLERANCE
    pts = sorted(points)
    if pts[0][1] >= h264_vmaf:
        return pts[0][0]
    for (f0, q0), (f1, q1) in zip(pts, pts[1:]):
        if q1 >= h264_vmaf > q0:
            t = (h264_vmaf - q0) / (q1 - q0)
            return round(math.exp(math.log(f0) + t * (math.log(f1) - math.log(f0))), 3)
    return None


def _bits_at(factor: float, points: list[tuple[float, int]]) -> float:
    """Measured bitrate at a requested factor, log-log interpolated between runs."""
    pts = sorted(points)
    for (f0, b0), (f1, b1) in zip(pts, pts[1:]):
        if f0 <= factor <= f1:
            t = (math.log(factor) - math.log(f0)) / (math.log(f1) - math.log(f0))
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return float(pts[0][1] if factor < pts[0][0] else pts[-1][1])


def economics(h264: dict, other: dict, bd_pct: float, seconds: float, cpu_hour_usd: float) -> dict:
    cm = placement_costs.CostModel()
    cdn_low = min(p.cdn_delivery_per_gb for p in cm.regions.values())
    origin = max(p.origin_delivery_per_gb for p in cm.regions.values())
    storage_day = max(p.cdn_storage_per_gb_day for p in cm.regions.values())
    encode_usd = other["cpu_s"] / 3600 * cpu_hour_usd
    store_usd = other["ladder_bytes"] / placement_costs.GB * storage_day * STORE_DAYS
    view_gb = cm.view_bytes_fraction * h264["ladder_bytes"] / placement_costs.GB
    saved_gb = view_gb * max(0.0, -bd_pct) / 100
    out = {"encode_usd_per_source_minute": round(encode_usd / seconds * 60, 5),
           "store_usd_per_source_minute_30d": round(store_usd / seconds * 60, 6),
           "gb_saved_per_view_per_source_minute": round(saved_gb / seconds * 60, 6)}
    for name, price in (("cdn_cheapest", cdn_low), ("origin", origin)):
        per_view = saved_gb * price
        out[f"break_even_views_{name}"] = round((encode_usd + store_usd) / per_view, 1) if per_view > 0 else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", default=",".join(DEFAULT_CLIPS))
    ap.add_argument("--families", default="vp9,av1", help="compared with h264, which is always encoded")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length (real clips: at most theirs)")
    ap.add_argument("--cpu-hour-usd", type=float, default=CPU_HOUR_USD, help="price of one vCPU-hour")
    ap.add_argument("--factors", default="",
                    help="also encode each family at these fractions of H.264's bitrates (e.g. 0.5,0.7,1.0) "
                         "and report, per rung, the fraction at which it matches H.264's VMAF")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "codec.json"))
    args = ap.parse_args()
    families = ["h264"] + [f for f in args.families.split(",") if f and f != "h264"]
    factors = [float(x) for x in args.factors.split(",") if x]
    started = time.monotonic()
    clips_out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="codec-bench-") as tmp:
        work = Path(tmp)
        for name, src in make_clips(work, args.clips.split(","), args.seconds, 1080).items():
            info = probe.probe(src)
            rungs = ladder.ladder_for(info)
            clip = {"source": f"{info.width}x{info.height} @ {info.frame_rate:g} fps, {info.duration_s:.1f} s",
                    "ladder": [f"{r.name} {r.video_bitrate_bps // 1000}k" for r in rungs], "families": {}}
            for fam in families:
                fw = work / name / fam
                fw.mkdir(parents=True)
                clip["families"][fam] = encode(src, info, rungs, fam, fw)
            for fam in families[1:]:
                runs = []  # the shipped factors differ by rung: not a point on a one-factor curve
                for k, factor in enumerate(factors):
                    fw = work / name / f"{fam}_f{k}"
                    fw.mkdir(parents=True)
                    runs.append(encode(src, info, rungs, fam, fw, factor))
                if factors:
                    h264_rungs = clip["families"]["h264"]["rungs"]
                    parity = {n: parity_factor(h264_rungs[n]["vmaf"], [(r["factor"], r["rungs"][n]["vmaf"]) for r in runs])
                              for n in runs[0]["rungs"]}
                    clip["families"][fam]["calibration"] = {
                        "runs": [{"factor": r["factor"], "cpu_s": r["cpu_s"], "rungs": r["rungs"]} for r in runs],
                        "parity_factor_by_rung": parity,
                        # the bits the family really spends at that factor, against H.264's
                        "parity_bits_vs_h264_by_rung": {
                            n: None if f is None else round(_bits_at(f, [(r["factor"], r["rungs"][n]["bitrate_bps"])
                                                                         for r in runs]) / h264_rungs[n]["bitrate_bps"], 3)
                            for n, f in parity.items()},
                    }
            h264 = clip["families"]["h264"]
            ref = [(r["bitrate_bps"], r["display_vmaf"]) for r in h264["rungs"].values()]
            for fam in families[1:]:
                f = clip["families"][fam]
                bd = bd_rate(ref, [(r["bitrate_bps"], r["display_vmaf"]) for r in f["rungs"].values()])
                f["bd_rate_vs_h264_pct"] = bd
                f["cpu_vs_h264"] = round(f["cpu_s"] / h264["cpu_s"], 2)
                f["bits_vs_h264"] = round(f["ladder_bytes"] / h264["ladder_bytes"], 3)
                f["display_vmaf_delta_by_rung"] = {n: round(r["display_vmaf"] - h264["rungs"][n]["display_vmaf"], 2)
                                                   for n, r in f["rungs"].items()}
                f["vmaf_delta_by_rung"] = {n: round(r["vmaf"] - h264["rungs"][n]["vmaf"], 2)  # at the rung's size
                                           for n, r in f["rungs"].items()}
                f["bits_vs_h264_by_rung"] = {n: round(r["bitrate_bps"] / h264["rungs"][n]["bitrate_bps"], 3)
                                             for n, r in f["rungs"].items()}
                if bd is not None:
                    f["economics"] = economics(h264, f, bd, info.duration_s, args.cpu_hour_usd)
            clips_out[name] = clip
            print(f"== {name} ({clip['source']}), ladder {', '.join(clip['ladder'])}")
            for fam in families:
                f = clip["families"][fam]
                extra = "" if fam == "h264" else (
                    f"  BD-rate {f['bd_rate_vs_h264_pct']}%, CPU x{f['cpu_vs_h264']}, bits x{f['bits_vs_h264']}, "
                    f"dVMAF/rung {f['vmaf_delta_by_rung']}, bits/rung {f['bits_vs_h264_by_rung']}, {f.get('economics')}")
                print(f"   {fam:<5} CPU {f['cpu_s']:>6.1f} s  wall {f['wall_s']:>6.1f} s  "
                      f"{f['ladder_bytes'] / 1e6:>6.2f} MB{extra}", flush=True)
                if "calibration" in f:
                    print(f"         factor for VMAF parity by rung: {f['calibration']['parity_factor_by_rung']}")
    summary = {}
    for fam in families[1:]:
        per = [c["families"][fam] for c in clips_out.values() if c["families"][fam].get("economics")]
        if not per:
            continue
        summary[fam] = {
            "bd_rate_vs_h264_pct_avg": round(sum(f["bd_rate_vs_h264_pct"] for f in per) / len(per), 2),
            "cpu_vs_h264_avg": round(sum(f["cpu_vs_h264"] for f in per) / len(per), 2),
            "worst_rung_display_vmaf_delta": min(min(f["display_vmaf_delta_by_rung"].values()) for f in per),
            "worst_rung_vmaf_delta": min(min(f["vmaf_delta_by_rung"].values()) for f in per),
            "bits_vs_h264_avg": round(sum(f["bits_vs_h264"] for f in per) / len(per), 3),
            "break_even_views_cdn_cheapest_max": max(f["economics"]["break_even_views_cdn_cheapest"] or 0 for f in per),
            "break_even_views_origin_max": max(f["economics"]["break_even_views_origin"] or 0 for f in per),
        }
        cal = [c["families"][fam]["calibration"]["parity_factor_by_rung"] for c in clips_out.values()
               if "calibration" in c["families"][fam]]
        if cal:
            # per rung name: the factor reaching parity on every clip (None: some clip never does)
            names = sorted({n for c in cal for n in c}, key=lambda n: int(n.rstrip("p")))
            summary[fam]["parity_factor_all_clips_by_rung"] = {
                n: (None if any(c.get(n, 0) is None for c in cal) else max(c[n] for c in cal if n in c))
                for n in names}
    out = {
        "bench": "codec", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "ffmpeg": ffmpeg_version(),
                    "loadavg_1m_at_write": round(os.getloadavg()[0], 1)},
        "command": "nice -n 10 python bench/codec_bench.py " + " ".join(sys.argv[1:]),
        "settings": {"x264_preset": ffmpeg_graphs.X264_PRESET, "svtav1_preset": ffmpeg_graphs.SVTAV1_PRESET, "vp9_cpu_used": ffmpeg_graphs.VP9_CPU_USED,
                     "family_bitrate_factor": ladder.FAMILY_BITRATE_FACTOR, "vmaf_subsample": VMAF_SUBSAMPLE,
                     "cpu_hour_usd": args.cpu_hour_usd, "store_days": STORE_DAYS, "factors": factors,
                     "parity_tolerance": PARITY_TOLERANCE,
                     "view_bytes_fraction": placement_costs.CostModel().view_bytes_fraction},
        "summary": summary, "bench_wall_s": round(time.monotonic() - started, 1), "clips": clips_out,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
