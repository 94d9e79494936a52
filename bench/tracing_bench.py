"""Tracing overhead benchmark: the watch call with OpenTelemetry tracing on vs off.

Run from the repo root:  .venv/bin/python bench/tracing_bench.py
Writes bench/results/tracing.json.

Two whole platforms run side by side (`longtail up`, embedded backends, each its own data
dir and gateway port), the same short clip is uploaded to both and waits for READY:

  A  "tracing on": the embedded default (`[telemetry] tracing = true`, `local_traces = true`,
     no OTLP endpoint): a TracerProvider with gRPC span interceptors and JSON-lines span
     files under DATA_DIR/traces/.
  B  "tracing off": a TOML file with `[telemetry] tracing = false` passed with `--config`
     (no TracerProvider: the API's no-op tracer; no gRPC span interceptors).

Both keep their Prometheus metrics and FastAPI route metrics, so the difference is tracing
only. The timed call is `GET /v1/videos/{id}/watch?region=JP&client=web` (gateway -> gRPC
GetVideo on metadata_svc). The machine is shared and noisy, so rounds are interleaved
(A B, B A, A B, ...: the order alternates so neither mode always goes first); each round is
N sequential requests (default 20 rounds x 100) on one keep-alive httpx client per platform. A concurrent variant
(C clients in flight at once, asyncio) is interleaved the same way. CPU seconds of the
gateway + metadata_svc processes come from /proc/<pid>/stat over the whole phase.
After the platforms stop, the span files are counted: none may exist for B.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import pathlib
import platform
import shutil
import signal
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

CLK_TCK = os.sysconf("SC_CLK_TCK")
MODES = ("tracing_on", "tracing_off")
WATCH_PARAMS = {"region": "JP", "client": "web"}
SENT: dict[str, int] = {}  # watch requests sent per gateway URL (to check the span count)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> dict[int, str]:
    """pid -> command line of the direct children of `pid` (from /proc)."""
    out = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid == pid:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, seconds."""
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


class Platform:
    """One `longtail up` process (and the services it runs)."""

    def __init__(self, mode: str, work: pathlib.Path):
        self.mode = mode
        self.data_dir = work / mode
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.pids: dict[str, int] = {}
        args = [str(ROOT / ".venv" / "bin" / "longtail"), "up", "--data-dir", str(self.data_dir),
                "--port", str(self.port), "--workers", "1"]
        if mode == "tracing_off":
            cfg = work / "tracing_off.toml"
            cfg.write_text("[telemetry]\ntracing = false\n")
            args += ["--config", str(cfg)]
        self.args = args

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Only the config file tells the two apart: no LONGTAIL_* from the caller's shell.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LONGTAIL_")}
        self.log_path = self.data_dir.parent / f"up-{self.mode}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=ROOT)

    def wait_up(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.mode}: longtail up exited {self.proc.returncode}; see {self.log_path}")
            if "Longtail is up" in self.log_path.read_text(errors="replace"):
                break
            time.sleep(0.3)
        else:
            raise RuntimeError(f"{self.mode}: not up after {timeout_s}s; see {self.log_path}")
        for pid, cmd in children_of(self.proc.pid).items():
            for name in ("gateway", "metadata_svc"):
                if f"-m {name} " in cmd + " ":
                    self.pids[name] = pid
        if set(self.pids) != {"gateway", "metadata_svc"}:
            raise RuntimeError(f"{self.mode}: gateway/metadata processes not found: {self.pids}")

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids.values())

    def stop(self, grace_s: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # `longtail up` stops its services cleanly
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            kids = children_of(self.proc.pid)
            self.proc.kill()
            self.proc.wait()
            for pid in kids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def sequential_round(client: httpx.Client, url: str, n: int) -> tuple[list[float], float, int]:
    """(latencies s, wall s, non-200 count) of n back-to-back requests."""
    lat, bad = [], 0
    SENT[url] = SENT.get(url, 0) + n
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(url, params=WATCH_PARAMS)
        lat.append(time.perf_counter() - t)
        bad += r.status_code != 200
    return lat, time.perf_counter() - t0, bad


async def _concurrent(url: str, n: int, conc: int) -> tuple[list[float], float, int]:
    lat: list[float] = []
    bad = 0
    left = n
    SENT[url] = SENT.get(url, 0) + n + conc
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(client.get(url, params=WATCH_PARAMS) for _ in range(conc)))  # open connections

        async def worker():
            nonlocal left, bad
            while left > 0:
                left -= 1
                t = time.perf_counter()
                r = await client.get(url, params=WATCH_PARAMS)
                lat.append(time.perf_counter() - t)
                bad += r.status_code != 200

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        return lat, time.perf_counter() - t0, bad


def run_phase(name: str, plats: dict[str, Platform], urls: dict[str, str], rounds: int, n: int,
              round_fn) -> dict:
    lat = {m: [] for m in MODES}
    per_round = {m: [] for m in MODES}
    bad = {m: 0 for m in MODES}
    cpu0 = {m: plats[m].cpu() for m in MODES}
    t_start = time.monotonic()
    for i in range(rounds):
        order = MODES if i % 2 == 0 else MODES[::-1]
        for m in order:
            xs, wall, b = round_fn(m, urls[m], n)
            lat[m] += xs
            bad[m] += b
            per_round[m].append({"median_ms": statistics.median(xs) * 1e3, "p95_ms": pct(xs, 0.95) * 1e3,
                                 "rps": n / wall})
        print(f"  {name} round {i + 1}/{rounds}: " + ", ".join(
            f"{m} median {per_round[m][-1]['median_ms']:.2f} ms, {per_round[m][-1]['rps']:.0f} req/s" for m in MODES),
            flush=True)
    time.sleep(1.5)  # let the span processors (500 ms schedule) export the last round: its CPU counts too
    cpu = {m: plats[m].cpu() - cpu0[m] for m in MODES}
    out = {"rounds": rounds, "requests_per_round": n, "wall_s": round(time.monotonic() - t_start, 1), "modes": {}}
    for m in MODES:
        r = per_round[m]
        out["modes"][m] = {
            "requests": len(lat[m]), "non_200": bad[m],
            "median_ms": round(statistics.median(lat[m]) * 1e3, 3),
            "p95_ms": round(pct(lat[m], 0.95) * 1e3, 3),
            "p99_ms": round(pct(lat[m], 0.99) * 1e3, 3),
            "mean_ms": round(statistics.fmean(lat[m]) * 1e3, 3),
            "throughput_rps_median_of_rounds": round(statistics.median(x["rps"] for x in r), 1),
            "cpu_s_per_request_gateway_metadata_ms": round(cpu[m] / len(lat[m]) * 1e3, 3),
            "cpu_s_total_gateway_metadata": round(cpu[m], 2),
            "per_round": [{k: round(v, 3) for k, v in x.items()} for x in r],
        }
    on, off = out["modes"]["tracing_on"], out["modes"]["tracing_off"]
    paired = [a["median_ms"] / b["median_ms"] for a, b in zip(on["per_round"], off["per_round"])]
    out["cpu_ms_per_request_added_by_tracing"] = round(
        on["cpu_s_per_request_gateway_metadata_ms"] - off["cpu_s_per_request_gateway_metadata_ms"], 3)
    out["ratio_on_over_off"] = {
        "median_latency": round(on["median_ms"] / off["median_ms"], 3),
        "p95_latency": round(on["p95_ms"] / off["p95_ms"], 3),
        "throughput": round(on["throughput_rps_median_of_rounds"] / off["throughput_rps_median_of_rounds"], 3),
        "cpu_per_request": round(on["cpu_s_per_request_gateway_metadata_ms"]
                                 / off["cpu_s_per_request_gateway_metadata_ms"], 3),
        "median_latency_paired_rounds": {"median": round(statistics.median(paired), 3),
                                         "min": round(min(paired), 3), "max": round(max(paired), 3),
                                         "rounds_on_slower": sum(x > 1 for x in paired),
                                         "per_round": [round(x, 3) for x in paired]},
    }
    return out


def count_spans(data_dir: pathlib.Path) -> dict:
    files = sorted((data_dir / "traces").glob("*.jsonl")) if (data_dir / "traces").exists() else []
    by_name: dict[str, int] = {}
    total = 0
    for f in files:
        for line in f.read_text(errors="replace").splitlines():
            try:
                s = json.loads(line)
            except json.JSONDecodeError:
                continue
            total += 1
            key = f"{s['service']}: {s['name']}"
            by_name[key] = by_name.get(key, 0) + 1
    return {"files": [f.name for f in files], "spans": total,
            "by_name": dict(sorted(by_name.items(), key=lambda kv: -kv[1])[:12])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--requests", type=int, default=100, help="sequential requests per round per platform")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8, help="0 = skip the concurrent variant")
    ap.add_argument("--conc-rounds", type=int, default=10)
    ap.add_argument("--conc-requests", type=int, default=200)
    ap.add_argument("--keep", action="store_true", help="keep the data dirs (logs, span files)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "tracing.json"))
    args = ap.parse_args()

    started = time.monotonic()
    load_start = os.getloadavg()
    work = pathlib.Path(tempfile.mkdtemp(prefix="tracing-bench-"))
    plats = {m: Platform(m, work) for m in MODES}
    clients: dict[str, httpx.Client] = {}
    try:
        for p in plats.values():
            p.start()
        clip = work / "clip.mp4"
        make_test_clip(str(clip), seconds=4, height=360)
        for p in plats.values():
            p.wait_up()
        print(f"platforms up ({time.monotonic() - started:.0f} s): "
              + ", ".join(f"{m} {p.base} pids {p.pids}" for m, p in plats.items()), flush=True)
        urls = {}
        for m, p in plats.items():
            token = local_api_token(Config(data_dir=str(p.data_dir)), "bench")  # uploading needs an account
            clients[m] = httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token}"})
            urls[m] = f"{p.base}/v1/videos/{upload_file(clients[m], p.base, str(clip), 'tracing bench', 'bench')}/watch"
        for m, p in plats.items():
            vid = urls[m].rsplit("/", 2)[-2]
            video = wait_ready(clients[m], p.base, vid, timeout_s=240)
            if video["status"] != "READY":
                raise RuntimeError(f"{m}: video FAILED: {video.get('failure_reason')}")
            clients[m].get(urls[m], params=WATCH_PARAMS).raise_for_status()
            SENT[urls[m]] = 1
        print(f"clips READY ({time.monotonic() - started:.0f} s)", flush=True)

        idle0 = {m: plats[m].cpu() for m in MODES}
        time.sleep(3)
        idle_cpu = {m: round((plats[m].cpu() - idle0[m]) / 3, 4) for m in MODES}
        for m in MODES:  # warm-up, interleaved too
            sequential_round(clients[m], urls[m], args.warmup)

        results = {}
        print(f"sequential: {args.rounds} rounds x {args.requests} requests per platform", flush=True)
        results["sequential"] = run_phase("sequential", plats, urls, args.rounds, args.requests,
                                          lambda m, url, n: sequential_round(clients[m], url, n))
        if args.concurrency > 0:
            print(f"concurrent ({args.concurrency} in flight): {args.conc_rounds} rounds x "
                  f"{args.conc_requests} requests per platform", flush=True)
            results["concurrent"] = run_phase(
                f"concurrent x{args.concurrency}", plats, urls, args.conc_rounds, args.conc_requests,
                lambda m, url, n: asyncio.run(_concurrent(url, n, args.concurrency)))
            results["concurrent"]["concurrency"] = args.concurrency
        load_end = os.getloadavg()
    finally:
        for c in clients.values():
            c.close()
        for p in plats.values():
            p.stop()
    stopped_ok = {m: p.proc.returncode == 0 for m, p in plats.items() if p.proc}
    spans = {m: count_spans(p.data_dir) for m, p in plats.items()}
    for m in MODES:
        spans[m]["watch_requests_sent"] = SENT.get(urls[m], 0)
        spans[m]["watch_server_spans"] = spans[m]["by_name"].get("gateway: GET /v1/videos/{video_id}/watch", 0)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "benchmark": "tracing_overhead_watch",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"hostname": socket.gethostname(), "platform": platform.platform(), "cpu": cpu_model(),
                    "cores": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load_start],
                    "loadavg_at_end": [round(x, 2) for x in load_end], "python": platform.python_version()},
        "command": "python bench/tracing_bench.py",
        "parameters": {
            "call": "GET /v1/videos/{id}/watch?region=JP&client=web (gateway -> metadata_svc GetVideo over gRPC)",
            "modes": {"tracing_on": "embedded default: [telemetry] tracing=true, local_traces=true (JSON-lines "
                                    "span files), no otlp_endpoint",
                      "tracing_off": "--config FILE with [telemetry] tracing=false"},
            "platform": "longtail up, embedded backends (SQLite, fs objects, local topic log), 1 transcoder "
                        "worker, both platforms live at once",
            "clip": "4 s 640x360 testsrc2 + tone (longtail_cli.cli.make_test_clip)",
            "interleaving": "rounds alternate A B / B A",
            "warmup_requests": args.warmup, "sequential_rounds": args.rounds,
            "sequential_requests_per_round": args.requests, "client": "httpx, one keep-alive client per platform",
            "concurrency": args.concurrency, "concurrent_rounds": args.conc_rounds,
            "concurrent_requests_per_round": args.conc_requests,
            "cpu": "utime+stime of the gateway and metadata_svc processes from /proc/<pid>/stat over each phase "
                   "(+1.5 s for the span processor's last export), divided by the phase's requests",
        },
        "idle_cpu_s_per_s_gateway_metadata": idle_cpu,
        **results,
        "span_files_after_stop": spans,
        "platforms_stopped_cleanly": stopped_ok,
        "wall_s": round(time.monotonic() - started, 1),
    }
    seq = results["sequential"]
    print("\nsequential (per-request latency, all rounds pooled):")
    _print_table(seq)
    if "concurrent" in results:
        print(f"\nconcurrent x{args.concurrency}:")
        _print_table(results["concurrent"])
    print(f"\nspans after stop: tracing_on {spans['tracing_on']['spans']} in {len(spans['tracing_on']['files'])} files "
          f"({spans['tracing_on']['watch_server_spans']} watch server spans for "
          f"{spans['tracing_on']['watch_requests_sent']} watch requests); "
          f"tracing_off {spans['tracing_off']['spans']} in {len(spans['tracing_off']['files'])} files")
    if spans["tracing_off"]["spans"] or spans["tracing_off"]["files"]:
        print("WARNING: span files exist with tracing=false: the switch does not work as described")
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['wall_s']:.0f} s)")
    return 0


def _print_table(phase: dict) -> None:
    print(f"{'mode':<12} {'median ms':>10} {'p95 ms':>8} {'req/s':>8} {'CPU ms/req':>11} {'non-200':>8}")
    for m in MODES:
        x = phase["modes"][m]
        print(f"{m:<12} {x['median_ms']:>10.2f} {x['p95_ms']:>8.2f} {x['throughput_rps_median_of_rounds']:>8.0f} "
              f"{x['cpu_s_per_request_gateway_metadata_ms']:>11.3f} {x['non_200']:>8}")
    r = phase["ratio_on_over_off"]
    print(f"on/off: median {r['median_latency']:.3f}, p95 {r['p95_latency']:.3f}, throughput {r['throughput']:.3f}, "
          f"CPU/request {r['cpu_per_request']:.3f}; paired per-round median ratio "
          f"{r['median_latency_paired_rounds']['median']:.3f} "
          f"({r['median_latency_paired_rounds']['min']:.3f}-{r['median_latency_paired_rounds']['max']:.3f}; "
          f"on slower in {r['median_latency_paired_rounds']['rounds_on_slower']}/{phase['rounds']} rounds)")



if __name__ == "__main__":
    sys.exit(main())
