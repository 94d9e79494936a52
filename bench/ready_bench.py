"""Upload -> READY of a short 720p clip with the transcoder's settings before issue 29 (fixed
bitrates per rung) and with today's defaults (constant quality: bench/peer_bench.py), same
run, same binary (issue 29: at most 20 % slower).

Run from the repo root:  nice -n 10 .venv/bin/python bench/ready_bench.py [--rounds 3] [--seconds 10]
Writes bench/results/ready.json.

Every run is a fresh embedded platform (`Platform`, own data dir, 1 transcoder worker,
chunking off; start-up is not timed), differing only in config:

  previous   transcoder.rate_control = "average" (the fixed ladder)
  default    the shipped defaults (transcoder.rate_control = "constant_quality")

Timed: last upload PATCH answered -> GET /v1/videos/{id} says READY (polled every 0.1 s);
also the worker's CPU (its own and its ffmpeg children's). Modes alternate, the first one
swapping each round, so machine noise hits both. Clips: "synthetic" is the e2e tests' clip
(`longtail_cli.cli.make_test_clip`: testsrc2 + tone, 720p30), "camera" the first `--seconds`
of ../shared/media's cockatoo_720p_h264.mp4 (real camera footage, no audio).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from chunked_bench import worker_cpu_s  # noqa: E402
from longtail_cli.cli import local_api_token, make_test_clip, upload_file  # noqa: E402
from longtail_cli.launcher import Platform, free_port  # noqa: E402
from longtail_common.config import Config  # noqa: E402
from machine import cpu_model, ffmpeg_version  # noqa: E402  (bench/machine.py)
from transcoder_svc import ffmpeg_graphs  # noqa: E402

MODES = {"previous": {"rate_control": "average"}, "default": {}}
# ../shared/media beside the checkout (or beside its worktrees' folder: /work/wt/NAME -> /work/shared)
COCKATOO = next((p for p in (ROOT.parent / "shared" / "media", ROOT.parents[1] / "shared" / "media") if p.is_dir()),
                ROOT.parent / "shared" / "media") / "cockatoo_720p_h264.mp4"
TARGET_SLOWDOWN = 1.2


def make_clip(kind: str, seconds: float, work: pathlib.Path) -> pathlib.Path:
    path = work / f"{kind}.mp4"
    if kind == "synthetic":
        make_test_clip(str(path), seconds=seconds, height=720)
    else:
        subprocess.run([ffmpeg_graphs.ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(COCKATOO), "-t",
                        str(seconds), "-c", "copy", "-y", str(path)], check=True)
    return path


def one_run(mode: str, clip: pathlib.Path, work: pathlib.Path, run_no: int) -> dict:
    cfg = Config(data_dir=str(work / f"{run_no:02d}-{mode}"))
    cfg.transcoder.chunk_min_duration_s = 0
    for key, value in MODES[mode].items():
        setattr(cfg.transcoder, key, value)
    plat = Platform(cfg, gateway_port=free_port(), transcoder_workers=1)
    plat.start(timeout_s=120)
    load = os.getloadavg()
    try:
        token = local_api_token(cfg, "bench")  # uploading needs an account
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
            base = plat.gateway_url
            wpids = [p.pid for n, p in plat.procs.items() if n.startswith("transcoder-")]
            cpu0 = sum(worker_cpu_s(p) for p in wpids)
            vid = upload_file(client, base, str(clip), f"ready bench {mode}", "bench")
            t_end = time.monotonic()
            while True:
                video = client.get(f"{base}/v1/videos/{vid}").json()
                if video["status"] in ("READY", "FAILED") or time.monotonic() > t_end + 900:
                    break
                time.sleep(0.1)
            ready_s = time.monotonic() - t_end
            cpu = sum(worker_cpu_s(p) for p in wpids) - cpu0
            if video["status"] != "READY":
                raise RuntimeError(f"{mode}: video is {video['status']}: {video.get('failure_reason')}")
            watch = client.get(f"{base}/v1/videos/{vid}/watch").json()
    finally:
        plat.stop()
    return {"mode": mode, "ready_s": round(ready_s, 2), "worker_cpu_s": round(cpu, 1),
            "loadavg_at_start": [round(x, 2) for x in load],
            "renditions_kbps": {f"{r['height']}p": r["bitrate_bps"] // 1000 for r in watch["renditions"]}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clips", default="synthetic,camera", help="synthetic, camera")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ready.json"))
    args = ap.parse_args()
    started = time.monotonic()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="ready-bench-") as tmp:
        work = pathlib.Path(tmp)
        for kind in args.clips.split(","):
            clip = make_clip(kind, args.seconds, work)
            runs = []
            for r in range(args.rounds):
                order = list(MODES) if r % 2 == 0 else list(reversed(MODES))
                for mode in order:
                    run = one_run(mode, clip, work, len(runs))
                    runs.append(run)
                    print(f"{kind} round {r + 1} {mode:<9} READY {run['ready_s']:6.2f} s, worker CPU "
                          f"{run['worker_cpu_s']:5.1f} s, load {run['loadavg_at_start'][0]}", flush=True)
            med = {m: {"ready_s": statistics.median(x["ready_s"] for x in runs if x["mode"] == m),
                       "worker_cpu_s": statistics.median(x["worker_cpu_s"] for x in runs if x["mode"] == m)}
                   for m in MODES}
            ratio = round(med["default"]["ready_s"] / med["previous"]["ready_s"], 3)
            results[kind] = {"medians": med, "ready_ratio_default_vs_previous": ratio,
                             "cpu_ratio_default_vs_previous": round(med["default"]["worker_cpu_s"]
                                                                    / med["previous"]["worker_cpu_s"], 3),
                             "target": f"<= {TARGET_SLOWDOWN}", "met": ratio <= TARGET_SLOWDOWN, "runs": runs}
            print(f"{kind}: median READY previous {med['previous']['ready_s']} s, default "
                  f"{med['default']['ready_s']} s: x{ratio}", flush=True)
    out = {"bench": "ready", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(),
                       "ffmpeg": ffmpeg_version(), "loadavg_1m_at_end": round(os.getloadavg()[0], 1)},
           "command": "nice -n 10 python bench/ready_bench.py " + " ".join(sys.argv[1:]),
           "settings": {"seconds": args.seconds, "rounds": args.rounds, "modes": MODES, "workers": 1,
                        "chunking": "off"},
           "bench_wall_s": round(time.monotonic() - started, 1), "clips": results}
    pathlib.Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
