"""Signed playback's cost: the watch call plus segment fetches under load, stream
signatures on vs off in the same run.

Run from the repo root:  .venv/bin/python bench/signing_bench.py
Writes bench/results/signing.json.

Two whole platforms run side by side (`longtail up`, embedded backends, each its own data
dir and gateway port), set up the same way but for one line:

  signed_on   the default: stream URLs carry a path token (/origin/t/<token>/<key>), every
              media request verifies it;
  signed_off  a TOML file with `[playback] signed = false` (unsigned URLs, served unsigned).

Both mint a playback id per watch call (beacons need it either way). The same short clip
is uploaded to both. The load is Locust (bench/signing_locustfile.py): U simulated viewers
with no think time, each looping watch -> master playlist -> variant playlist -> init
segment -> first media segment. Rounds of D seconds alternate the platforms (A B, B A,
...) so neither always runs first on this shared machine; one Locust process per round.
CPU seconds of the gateway + metadata_svc processes come from /proc over each round.

Target (issue 23): signing costs at most 10 % of the watch call's throughput, i.e. the
on/off ratio of watch requests per second is at least 0.90.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import pathlib
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from longtail_cli.cli import local_api_token, make_test_clip, upload_file, wait_ready  # noqa: E402
from longtail_common.config import Config  # noqa: E402
from machine import cpu_model  # noqa: E402  (bench/machine.py)
from tracing_bench import Platform  # noqa: E402  (bench/tracing_bench.py: one `longtail up` and its pids)

MODES = ("signed_on", "signed_off")
LOCUSTFILE = ROOT / "bench" / "signing_locustfile.py"
TARGET_RATIO = 0.90


def start_platform(mode: str, work: pathlib.Path) -> Platform:
    p = Platform(mode, work)
    p.args[0:1] = [sys.executable, "-m", "longtail_cli.cli"]  # this checkout's code, whatever venv runs it
    if mode == "signed_off":
        cfg = work / "signed_off.toml"
        cfg.write_text("[playback]\nsigned = false\n")
        p.args += ["--config", str(cfg)]
    p.start()
    return p


def ready_video(p: Platform, clip: pathlib.Path) -> str:
    token = local_api_token(Config(data_dir=str(p.data_dir)), "bench")  # uploading needs an account
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token}"}) as c:
        vid = upload_file(c, p.base, str(clip), "signing bench", "bench")
        video = wait_ready(c, p.base, vid, timeout_s=300)
        if video["status"] != "READY":
            raise RuntimeError(f"{p.mode}: video {video['status']}: {video.get('failure_reason')}")
        url = c.get(f"{p.base}/v1/videos/{vid}/watch", params={"region": "JP"}).json()["stream"]["url"]
        signed = "/origin/t/" in url
        if signed != (p.mode == "signed_on"):
            raise RuntimeError(f"{p.mode}: unexpected stream URL {url}")
        unsigned = f"{p.base}/origin/videos/{vid}/h264/master.m3u8"
        if c.get(unsigned).status_code != (403 if signed else 200):
            raise RuntimeError(f"{p.mode}: unsigned request answered {c.get(unsigned).status_code}")
    return vid


def locust_round(p: Platform, vid: str, users: int, seconds: int, work: pathlib.Path, tag: str) -> dict:
    """One Locust run against p: requests per second and medians by request name, and the
    gateway + metadata CPU it cost."""
    prefix = work / f"locust-{tag}"
    env = dict(os.environ, SIGNING_BENCH_VIDEO=vid)
    cpu0 = p.cpu()
    subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
                    "-r", str(users), "-t", f"{seconds}s", "--host", p.base, "--csv", str(prefix),
                    "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 60)
    cpu = p.cpu() - cpu0
    rows = {r["Name"]: r for r in csv.DictReader(open(f"{prefix}_stats.csv"))}
    watch = rows["watch"]
    out = {"watch_rps": float(watch["Requests/s"]), "watch_requests": int(watch["Request Count"]),
           "failures": int(rows["Aggregated"]["Failure Count"]),
           "median_ms": {name: float(r["Median Response Time"]) for name, r in rows.items()},
           "all_rps": float(rows["Aggregated"]["Requests/s"])}
    out["cpu_ms_per_watch_iteration"] = round(cpu / max(1, out["watch_requests"]) * 1e3, 3)
    return out


def summarize(rounds: dict[str, list[dict]]) -> dict:
    modes = {}
    for m in MODES:
        rs = rounds[m]
        modes[m] = {
            "watch_rps_per_round": [round(r["watch_rps"], 1) for r in rs],
            "watch_rps_median_of_rounds": round(statistics.median(r["watch_rps"] for r in rs), 1),
            "requests_rps_median_of_rounds": round(statistics.median(r["all_rps"] for r in rs), 1),
            "cpu_ms_per_watch_iteration_median": round(statistics.median(r["cpu_ms_per_watch_iteration"] for r in rs), 3),
            "median_ms_last_round": rs[-1]["median_ms"],
            "failures": sum(r["failures"] for r in rs),
        }
    on, off = modes["signed_on"], modes["signed_off"]
    paired = [a["watch_rps"] / b["watch_rps"] for a, b in zip(rounds["signed_on"], rounds["signed_off"])]
    ratio = on["watch_rps_median_of_rounds"] / off["watch_rps_median_of_rounds"]
    return {"modes": modes,
            "watch_throughput_ratio_on_over_off": round(ratio, 3),
            "paired_round_ratios": [round(x, 3) for x in paired],
            "paired_round_ratio_median": round(statistics.median(paired), 3),
            "cpu_per_iteration_ratio_on_over_off": round(
                on["cpu_ms_per_watch_iteration_median"] / off["cpu_ms_per_watch_iteration_median"], 3),
            "signing_cost_of_watch_throughput_pct": round((1 - ratio) * 100, 1),
            "target": f"on/off watch throughput >= {TARGET_RATIO}",
            "meets_target": ratio >= TARGET_RATIO}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6, help="rounds per mode (alternating)")
    ap.add_argument("--seconds", type=int, default=15, help="length of one Locust round")
    ap.add_argument("--users", type=int, default=8, help="simulated viewers")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "signing.json"))
    args = ap.parse_args()

    started, load_start = time.monotonic(), os.getloadavg()
    work = pathlib.Path(tempfile.mkdtemp(prefix="signing-bench-"))
    plats: dict[str, Platform] = {}
    try:
        plats = {m: start_platform(m, work) for m in MODES}
        clip = work / "clip.mp4"
        make_test_clip(str(clip), seconds=4, height=360)
        for p in plats.values():
            p.wait_up()
        videos = {m: ready_video(p, clip) for m, p in plats.items()}
        print(f"platforms up, clips READY ({time.monotonic() - started:.0f} s)", flush=True)
        for m in MODES:  # warm-up
            locust_round(plats[m], videos[m], args.users, 5, work, f"warmup-{m}")
        rounds: dict[str, list[dict]] = {m: [] for m in MODES}
        for i in range(args.rounds):
            for m in (MODES if i % 2 == 0 else MODES[::-1]):
                rounds[m].append(locust_round(plats[m], videos[m], args.users, args.seconds, work, f"{i}-{m}"))
            print(f"  round {i + 1}/{args.rounds}: " + ", ".join(
                f"{m} {rounds[m][-1]['watch_rps']:.1f} watch/s" for m in MODES), flush=True)
        load_end = os.getloadavg()
    finally:
        for p in plats.values():
            p.stop()
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "benchmark": "signing_cost_watch_and_segments",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"hostname": socket.gethostname(), "platform": platform.platform(), "cpu": cpu_model(),
                    "cores": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load_start],
                    "loadavg_at_end": [round(x, 2) for x in load_end], "python": platform.python_version()},
        "command": "python bench/signing_bench.py " + " ".join(sys.argv[1:]),
        "parameters": {
            "load": "Locust (bench/signing_locustfile.py), one process per round, no think time; an iteration is "
                    "watch -> master.m3u8 -> variant .m3u8 -> init -> first segment",
            "modes": {"signed_on": "default [playback] (signed = true)", "signed_off": "[playback] signed = false"},
            "platform": "longtail up, embedded backends, 1 transcoder worker (idle), both platforms live at once",
            "clip": "4 s 640x360 (longtail_cli.cli.make_test_clip)",
            "users": args.users, "rounds_per_mode": args.rounds, "round_s": args.seconds,
            "interleaving": "rounds alternate A B / B A",
            "cpu": "utime+stime of the gateway and metadata_svc processes over each round / watch requests",
        },
        **summarize(rounds),
        "rounds": rounds,
        "wall_s": round(time.monotonic() - started, 1),
    }
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"watch throughput on/off {result['watch_throughput_ratio_on_over_off']} (paired rounds median "
          f"{result['paired_round_ratio_median']}); signing costs {result['signing_cost_of_watch_throughput_pct']} % "
          f"(target <= {round((1 - TARGET_RATIO) * 100)} %); CPU per iteration on/off "
          f"{result['cpu_per_iteration_ratio_on_over_off']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
