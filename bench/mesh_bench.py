"""Mutual TLS overhead on the watch path: mesh TLS on vs off, alternating in one run.

Run from the repo root:  .venv/bin/python bench/mesh_bench.py [--rounds 8]
Writes bench/results/mesh.json.

Two platforms run at once (longtail_cli.launcher.Platform: embedded backends, no
transcoder), one with `mesh.tls = true` (the default: every gRPC connection mutual TLS,
certificates from the single-machine CA), one with `mesh.tls = false`. One video is created
in each (UPLOADING is enough: reading it is what is timed). Phases, each in rounds that
alternate the modes (A B, B A, ...) so neither always goes first on this shared machine:

  grpc       metadata GetVideo from this process, `concurrency` calls in flight on one
             grpc.aio channel (aio_client_channel, as the gateway makes it);
  gateway    GET /v1/videos/{id} (gateway -> GetVideo over the mesh -> JSON), `concurrency`
             requests in flight (httpx, asyncio);
  connect    a new channel's first GetVideo: TCP + TLS handshake + one call, back to back.

CPU: utime+stime of the platform's gateway and metadata_svc processes (/proc/<pid>/stat)
over its own rounds, per request.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from longtail.metadata.v1 import metadata_service_pb2 as mpb  # noqa: E402
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc  # noqa: E402
from longtail_cli.launcher import Platform, free_port  # noqa: E402
from longtail_common.config import Config  # noqa: E402
from longtail_common.grpc_server import aio_client_channel, client_channel  # noqa: E402
from machine import cpu_model  # noqa: E402  (bench/machine.py)

MODES = ("tls", "plaintext")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = (stat := pathlib.Path(f"/proc/{pid}/stat").read_text())[stat.rindex(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


async def in_flight(call, n: int, concurrency: int) -> list[float]:
    """Latencies of `n` calls of `call()` with `concurrency` in flight."""
    latencies: list[float] = []
    left = n

    async def worker():
        nonlocal left
        while left > 0:
            left -= 1
            t = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


class Target:
    """One platform and the clients that time it."""

    def __init__(self, mode: str, work: pathlib.Path):
        cfg = Config(data_dir=str(work / mode))
        cfg.mesh.tls = mode == "tls"
        self.mode = mode
        self.platform = Platform(cfg, gateway_port=free_port(), transcoder_workers=0)

    def start(self) -> None:
        self.platform.start()
        self.cfg = self.platform.cfg  # with the addresses the launcher chose
        self.pids = [self.platform.procs[name].pid for name in ("gateway", "metadata")]
        created = httpx.post(f"{self.platform.gateway_url}/v1/videos", timeout=60,
                             json={"title": "mesh bench", "channel_id": "bench", "size_bytes": 1000})
        created.raise_for_status()
        self.video_id = created.json()["id"]
        self.url = f"{self.platform.gateway_url}/v1/videos/{self.video_id}"

    async def grpc_round(self, n: int, concurrency: int) -> list[float]:
        channel = aio_client_channel(self.cfg, "metadata")
        stub = mpb_grpc.MetadataServiceStub(channel)
        request = mpb.GetVideoRequest(id=self.video_id)
        await stub.GetVideo(request)  # connected before the clock starts
        try:
            return await in_flight(lambda: stub.GetVideo(request), n, concurrency)
        finally:
            await channel.close()

    async def gateway_round(self, n: int, concurrency: int) -> list[float]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            await asyncio.gather(*(client.get(self.url) for _ in range(concurrency)))  # open the connections

            async def get():
                (await client.get(self.url)).raise_for_status()

            return await in_flight(get, n, concurrency)

    def connect_round(self, n: int, _concurrency: int) -> list[float]:
        latencies = []
        request = mpb.GetVideoRequest(id=self.video_id)
        for _ in range(n):
            t = time.perf_counter()
            channel = client_channel(self.cfg, "metadata")
            mpb_grpc.MetadataServiceStub(channel).GetVideo(request)
            latencies.append(time.perf_counter() - t)
            channel.close()
        return latencies


def run_phase(name: str, targets: dict[str, Target], rounds: int, n: int, concurrency: int) -> dict:
    latencies = {m: [] for m in MODES}
    rates = {m: [] for m in MODES}
    cpu = {m: 0.0 for m in MODES}
    for i in range(rounds):
        for mode in MODES if i % 2 == 0 else MODES[::-1]:
            target = targets[mode]
            round_fn = getattr(target, f"{name}_round")
            cpu0, t0 = cpu_seconds(target.pids), time.perf_counter()
            result = round_fn(n, concurrency)
            xs = asyncio.run(result) if asyncio.iscoroutine(result) else result
            rates[mode].append(n / (time.perf_counter() - t0))
            cpu[mode] += cpu_seconds(target.pids) - cpu0
            latencies[mode] += xs
        print(f"  {name} round {i + 1}/{rounds}: " + ", ".join(
            f"{m} {rates[m][-1]:.0f}/s" for m in MODES), flush=True)
    modes = {m: {"requests": len(latencies[m]),
                 "throughput_per_s_median_of_rounds": round(statistics.median(rates[m]), 1),
                 "p50_ms": round(pct(latencies[m], 0.5) * 1e3, 3),
                 "p99_ms": round(pct(latencies[m], 0.99) * 1e3, 3),
                 "cpu_ms_per_request_gateway_metadata": round(cpu[m] / len(latencies[m]) * 1e3, 3)} for m in MODES}
    tls, plain = modes["tls"], modes["plaintext"]
    paired = [a / b for a, b in zip(rates["tls"], rates["plaintext"])]
    return {"rounds": rounds, "requests_per_round": n, "concurrency": concurrency, "modes": modes,
            "tls_over_plaintext": {
                "throughput": round(tls["throughput_per_s_median_of_rounds"]
                                    / plain["throughput_per_s_median_of_rounds"], 3),
                "throughput_paired_rounds_median": round(statistics.median(paired), 3),
                "p50": round(tls["p50_ms"] / plain["p50_ms"], 3),
                "p99": round(tls["p99_ms"] / plain["p99_ms"], 3),
                "cpu_per_request": round(tls["cpu_ms_per_request_gateway_metadata"]
                                         / max(plain["cpu_ms_per_request_gateway_metadata"], 1e-9), 3)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--requests", type=int, default=300, help="grpc and gateway requests per round per mode")
    ap.add_argument("--connects", type=int, default=20, help="new channels per round per mode")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "mesh.json"))
    args = ap.parse_args()

    load_start = os.getloadavg()
    started = dt.datetime.now(dt.timezone.utc)
    targets = {m: Target(m, pathlib.Path(tempfile.mkdtemp(prefix="mesh-bench-"))) for m in MODES}
    results = {}
    try:
        for target in targets.values():
            target.start()
        run_phase("gateway", targets, 1, args.requests, args.concurrency)  # warm-up, not kept
        for name, n in (("grpc", args.requests), ("gateway", args.requests), ("connect", args.connects)):
            results[name] = run_phase(name, targets, args.rounds, n, args.concurrency if name != "connect" else 1)
    finally:
        for target in targets.values():
            target.platform.stop()
    report = {
        "benchmark": "mesh_tls_overhead_watch_path",
        "date": started.isoformat(timespec="seconds"),
        "machine": {"hostname": platform.node(), "platform": platform.platform(), "cpu": cpu_model(),
                    "cores": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load_start],
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version()},
        "command": "python bench/mesh_bench.py " + " ".join(sys.argv[1:]),
        "parameters": {"modes": {"tls": "mesh.tls = true (default): mutual TLS, ECDSA P-256 certificates",
                                 "plaintext": "mesh.tls = false"},
                       "platform": "launcher Platform, embedded backends, no transcoder; both live at once",
                       "interleaving": "rounds alternate A B / B A; one warm-up gateway round not kept",
                       "cpu": "utime+stime of the gateway and metadata_svc processes over each mode's rounds"},
        "results": results,
    }
    pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({name: r["tls_over_plaintext"] for name, r in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
