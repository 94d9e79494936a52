"""Segment bytes as the fleet serves them: the object store answering presigned URLs.

On the real backends (backends.objects = "s3") the watch call hands out presigned URLs for
single objects and the gateway rewrites playlists' segment URIs to presigned ones
(gateway/media_links.py): segment bytes come from the object store itself (MinIO in
deploy/compose.yaml, S3 in production, S3Proxy in CI), never through the gateway. This
measures the store CI has, S3Proxy (a JVM over its filesystem blob store), answering
presigned GETs of 176 kB segments (half of them `Range: bytes=0-65535`), against nginx
serving the same files in the same run, as bench/load_bench.py measures the embedded origin.

Run from the repo root:  .venv/bin/python bench/origin_store_bench.py [--duration 10 --rounds 2]
Writes bench/results/load_store_origin.json. Needs wrk, nginx and a Java runtime (S3Proxy's
jar comes from Maven Central through longtail_testservers).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import random
import shutil
import statistics
import sys
import tempfile
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load_bench import RANGE, SEGMENT_BYTES, WRK_SCRIPT, Nginx, Phase, lua_table, wrk, zipf_ids  # noqa: E402
from longtail_common.adapters.s3_objects import S3ObjectStore  # noqa: E402
from longtail_common.ports import MEDIA_BUCKET  # noqa: E402
from longtail_testservers.s3proxy import start_s3proxy  # noqa: E402
from machine import cpu_model  # noqa: E402

CONNECTIONS = 16  # as the segment phases of bench/load_bench.py


def put_segments(store: S3ObjectStore, media: pathlib.Path, videos: int) -> list[str]:
    """Four segments per video, in the store and (for nginx) on disk; their keys."""
    keys = []
    for v in range(videos):
        for i in range(4):
            key = f"videos/v{v:03d}/h264/240p/seg{i}.m4s"
            data = os.urandom(SEGMENT_BYTES)
            store.put_bytes(MEDIA_BUCKET, key, data)
            (media / key).parent.mkdir(parents=True, exist_ok=True)
            (media / key).write_bytes(data)
            keys.append(key)
    return keys


def request_lists(store: S3ObjectStore, keys: list[str], draws: int) -> dict[str, list[tuple]]:
    rng = random.Random(7)
    picked = zipf_ids(keys, draws, rng)
    signed = {k: urllib.parse.urlsplit(store.presigned_get_url(MEDIA_BUCKET, k, expires_s=3600)) for k in keys}
    store_list, nginx_list = [], []
    for i, key in enumerate(picked):
        headers = {"Range": RANGE} if i % 2 else {}
        url = signed[key]
        store_list.append(("GET", f"{url.path}?{url.query}", headers, None))
        nginx_list.append(("GET", f"/media/{key}", headers, None))
    return {"store_segment": store_list, "nginx_segment": nginx_list}


def phase(name: str, server: str, url: str, pids: list[int], requests: list[tuple], work: pathlib.Path) -> Phase:
    (work / f"{name}.lua").write_text(lua_table(requests))
    script = work / f"wrk-{name}.lua"
    script.write_text(WRK_SCRIPT % {"table": work / f"{name}.lua"})
    return Phase(name, server, url, pids, script, CONNECTIONS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--draws", type=int, default=5000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "load_store_origin.json"))
    args = parser.parse_args()
    started = os.getloadavg()
    work = pathlib.Path(tempfile.mkdtemp(prefix="store-bench-"))
    server = start_s3proxy(work / "s3proxy")
    nginx = None
    try:
        store = S3ObjectStore(server.s3_config())
        store.ensure_bucket(MEDIA_BUCKET)
        media = work / "media"
        lists = request_lists(store, put_segments(store, media, args.videos), args.draws)
        (work / "www").mkdir()
        nginx = Nginx(work, media, 1)
        phases = [phase("store_segment", "s3proxy", f"http://{server.endpoint}", [server.pid],
                        lists["store_segment"], work),
                  phase("nginx_segment", "nginx_1", nginx.url, nginx.pids, lists["nginx_segment"], work)]
        for p in phases:
            wrk(p.url, p.script, p.connections, 3)  # warm-up (the JVM's JIT above all)
        for r in range(args.rounds):
            for p in (phases if r % 2 == 0 else phases[::-1]):
                p.run(args.duration)
        results = {p.server: p.summary(1) for p in phases}
        report = {
            "benchmark": "bench/origin_store_bench.py",
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                        "load_average_start": [round(x, 2) for x in started],
                        "load_average_end": [round(x, 2) for x in os.getloadavg()],
                        "note": "shared machine; wrk pinned to CPU 0, servers unpinned"},
            "settings": {"videos": args.videos, "segment_bytes": SEGMENT_BYTES, "range": RANGE,
                         "connections": CONNECTIONS, "duration_s": args.duration, "rounds": args.rounds,
                         "store": "S3Proxy (filesystem-nio2 blob store), presigned GET (SigV4 query)"},
            "results": results,
            "ratios": {"store_vs_nginx_segment": round(results["s3proxy"]["rps"] / results["nginx_1"]["rps"], 4),
                       "store_vs_nginx_segment_by_cpu": round(results["nginx_1"]["cpu_ms_per_request"]
                                                              / results["s3proxy"]["cpu_ms_per_request"], 4)},
        }
        pathlib.Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(report["ratios"], indent=1))
        print("median rps:", {k: v["rps"] for k, v in results.items()},
              "p99:", statistics.median(r["p99_ms"] for r in phases[0].runs))
    finally:
        if nginx is not None:
            nginx.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
