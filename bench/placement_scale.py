"""The daily placement job at scale: `longtail placement run` on a synthetic catalogue.

Run from the repo root:
  nice -n 10 .venv/bin/python bench/placement_scale.py [--videos 1000000] [--shards 1,2] [--data DIR]

1. Generates (once per --data directory) a catalogue of --videos videos x 10 regions with
   60 days of views: the research simulator (placement_research.simulator) in worlds of
   50,000 videos (40,000 older ones, ~167 uploads a day, ~12 videos a channel), each with
   its own seed, ids and channels; six of the regions follow the simulator's language
   affinities, four more (FR, KR, MX, ID) are added with their languages. Written into an
   embedded data directory: the view-count store and the placement catalogue
   (viewcounts.sqlite3) and every video READY in the metadata store (metadata.sqlite3),
   its current placements those a break-even rule on the views of two days before would
   have made (so the day changes a realistic share of pairs, not the whole edge).
2. Serves that metadata store with the real MetadataService (gRPC, in this process).
3. Runs `longtail placement run --date D --dry-run --shards N` in a subprocess for each N
   and records its wall time, the peak RSS of its largest process
   (resource.getrusage(RUSAGE_CHILDREN).ru_maxrss) and the peak RSS of its process tree
   (sampled every 0.5 s with psutil: with --shards N the shards' memory adds up), and the
   CPU time of the job (user + system, all its processes: on a shared, loaded machine the
   wall time says more about the neighbours than about the job).
   --dry-run: every step but the pushes, writes and evictions (no media bytes exist to
   push); the summary says how many the day would make. Applying them costs one push (a
   copy of the video's renditions) and one UpdateVideo per changed video, in parallel
   per shard.
Writes bench/results/placement_scale.json (machine, date, one entry per (videos, shards)).
Goals (issue 26): <= 15 min and <= 8 GB for 1,000,000 videos on this 2-core machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import cpu_model  # noqa: E402  (bench/machine.py)

from placement_research.simulator import CATEGORIES, LANGUAGES, SimConfig, simulate  # noqa: E402

WORLD_VIDEOS = 50_000
DAYS = 60
START = dt.date(2026, 1, 1)
DAY = START + dt.timedelta(days=DAYS)  # the day decided: the 60 days before it have views
REGIONS = ("BR", "DE", "GB", "IN", "JP", "US", "FR", "KR", "MX", "ID")
EXTRA_AFFINITY = {  # language: affinity over FR, KR, MX, ID (the simulator's six come first)
    "en": (0.02, 0.01, 0.01, 0.02), "hi": (0.0, 0.0, 0.0, 0.01), "ja": (0.0, 0.01, 0.0, 0.0),
    "pt": (0.01, 0.0, 0.01, 0.0), "de": (0.02, 0.0, 0.0, 0.0), "es": (0.02, 0.0, 0.40, 0.0),
    "fr": (0.90, 0.0, 0.02, 0.0), "ko": (0.01, 0.90, 0.0, 0.02), "id": (0.0, 0.01, 0.0, 0.90),
}
GOAL_SECONDS, GOAL_GB = 15 * 60, 8.0
RESULT = ROOT / "bench" / "results" / "placement_scale.json"


def sim_config() -> SimConfig:
    langs = {k: (share, tuple(aff) + EXTRA_AFFINITY[k]) for k, (share, aff) in LANGUAGES.items()}
    langs["id"] = (0.04, (0.0, 0.0, 0.0, 0.0, 0.0, 0.05) + EXTRA_AFFINITY["id"])
    return SimConfig(n_videos=40_000, n_days=DAYS, start=START, uploads_per_day=(WORLD_VIDEOS - 40_000) / DAYS,
                     regions=REGIONS, languages=langs, categories=dict(CATEGORIES))


# ------------------------------------------------------------------------------ generation
def generate(data: pathlib.Path, n_videos: int, marker: pathlib.Path) -> dict:
    """Writes the catalogue, counts and metadata of `n_videos` videos into `data`, a world
    at a time; `marker` records the progress, so a cut generation resumes."""
    from longtail.metadata.v1 import video_pb2
    from longtail_common.adapters.sqlite_metadata import SqliteMetadataStore
    from longtail_common.adapters.sqlite_viewcounts import SqliteViewCountStore
    from longtail_common.ports import CatalogEntry, DailyViews, VideoRecord

    t0 = time.perf_counter()
    store = SqliteViewCountStore(data / "viewcounts.sqlite3")
    meta = SqliteMetadataStore(data / "metadata.sqlite3")
    stats = {"requested": n_videos, "videos": 0, "worlds": 0, "count_rows": 0, "views": 0, "pairs_on_edge": 0,
             "generate_seconds": 0.0}
    if marker.exists():
        stats = json.loads(marker.read_text())
    while stats["videos"] < n_videos:
        world = stats["worlds"]
        ds = simulate(sim_config(), seed=1000 + world)
        take = min(len(ds.video_ids), n_videos - stats["videos"])
        ids = [f"w{world:03d}{v}" for v in ds.video_ids[:take]]
        chans = [f"w{world:03d}{ds.channel_ids[c]}" for c in ds.channel[:take]]
        views = ds.views[:take]
        edge = views[:, :, DAYS - 2] >= 10  # what a break-even rule on the day before yesterday pushed
        for i, vid in enumerate(ids):
            publish = (START + dt.timedelta(days=int(ds.upload_day[i]))).isoformat()
            store.put_video(CatalogEntry(vid, chans[i], str(ds.language[i]), str(ds.category[i]), publish,
                                         int(ds.size_bytes[i])))
            video = video_pb2.Video(id=vid, channel=video_pb2.Channel(id=chans[i]), language=str(ds.language[i]),
                                    category=str(ds.category[i]), status=video_pb2.VIDEO_STATUS_READY, etag="e0",
                                    placements=[video_pb2.PlacementDecision(
                                        region=r, served_from=video_pb2.SERVED_FROM_CDN if edge[i, j]
                                        else video_pb2.SERVED_FROM_ORIGIN) for j, r in enumerate(REGIONS)])
            meta.create_video(VideoRecord(vid, chans[i], video.status, 1, "e0", video.SerializeToString()))
        vi, ri, di = np.nonzero(views)
        for s in range(0, len(vi), 500_000):
            part = slice(s, s + 500_000)
            rows = [DailyViews(ids[a], REGIONS[b], (START + dt.timedelta(days=int(d))).isoformat(), int(n), 0)
                    for a, b, d, n in zip(vi[part], ri[part], di[part], views[vi[part], ri[part], di[part]])]
            store.apply_views(f"bench/{world}", s, rows)
        stats["worlds"] += 1
        stats["videos"] += take
        stats["count_rows"] += int(len(vi))
        stats["views"] += int(views.sum())
        stats["pairs_on_edge"] += int(edge.sum())
        stats["generate_seconds"] = round(stats["generate_seconds"] + time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        marker.write_text(json.dumps(stats))
        print(f"  world {world}: {stats['videos']:,} videos, {stats['count_rows']:,} count rows, "
              f"{stats['generate_seconds']:.0f} s", flush=True)
    store.close()
    meta.close()
    return stats


# ------------------------------------------------------------------------------ measuring
def serve_metadata(data: pathlib.Path):
    """The real MetadataService over the generated store, in this process: (server, address)."""
    import grpc

    from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
    from longtail_common.adapters.sqlite_metadata import SqliteMetadataStore
    from metadata_svc.server import MetadataServicer

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_send_message_length", 64 << 20)])
    mpb_grpc.add_MetadataServiceServicer_to_server(MetadataServicer(SqliteMetadataStore(data / "metadata.sqlite3")),
                                                   server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def tree_rss_sampler(pid: int, peak: list[int], stop: threading.Event) -> None:
    import psutil

    try:
        root = psutil.Process(pid)
        while not stop.wait(0.5):
            total = 0
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            peak[0] = max(peak[0], total)
    except psutil.Error:
        pass


def run_job(data: pathlib.Path, address: str, shards: int, job_args: list[str]) -> dict:
    """One `longtail placement run --dry-run` in a subprocess: its summary, time and memory."""
    config = data / "longtail.toml"
    config.write_text(f'data_dir = "{data}"\n[platform]\nregions = {json.dumps(list(REGIONS))}\n'
                      '[transcoder]\npopular_codecs = []\n')
    env = {**os.environ, "LONGTAIL_CONFIG": str(config), "PYTHONPATH": os.pathsep.join(
        [str(ROOT), str(ROOT / "gen"), os.environ.get("PYTHONPATH", "")])}
    # `longtail placement run` is placement_svc.daily.main; it runs from a file in the data
    # directory so that its command line does not look like a test platform's job (shared
    # machines have test teardowns that kill those by name).
    runner = data / "daily_job.py"
    runner.write_text("import sys\nfrom placement_svc.daily import main\nsys.exit(main())\n")
    cmd = [sys.executable, str(runner), "--date", DAY.isoformat(), "--dry-run", "--shards", str(shards),
           "--metadata", address, *job_args]
    load_before = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, stop = [0], threading.Event()
    sampler = threading.Thread(target=tree_rss_sampler, args=(proc.pid, peak, stop), daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"daily job failed ({proc.returncode}): {err[-3000:]}")
    summary = json.loads(out.strip().splitlines()[-1])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    largest_kb = usage.ru_maxrss  # the largest child so far: run one --shards value per invocation for its own
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    return {"shards": shards, "job_args": job_args, "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "peak_rss_largest_process_gb": round(largest_kb / 1e6, 2),
            "peak_rss_process_tree_gb": round(peak[0] / 1e9, 2), "load_before": [round(x, 1) for x in load_before],
            "load_after": [round(x, 1) for x in os.getloadavg()],
            "meets_goals": bool(wall <= GOAL_SECONDS and max(largest_kb / 1e6, peak[0] / 1e9) <= GOAL_GB),
            "summary": {k: summary.get(k) for k in ("videos", "pairs_scored", "policy", "model", "on_cdn",
                                                     "would_push", "would_evict", "changed_videos", "timings_s",
                                                     "training_sample_videos", "total_seconds")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=1_000_000)
    ap.add_argument("--shards", default="1", help="comma-separated shard counts to run, e.g. 1,2")
    ap.add_argument("--data", help="data directory (generated once; default: a temporary one, removed)")
    ap.add_argument("--generate-only", action="store_true", help="generate --data and stop")
    ap.add_argument("--job-args", default="", help="more arguments for the job, e.g. --no-train (recorded)")
    args = ap.parse_args()
    tmp = None
    if args.data:
        data = pathlib.Path(args.data).resolve()
    else:
        tmp = tempfile.TemporaryDirectory(prefix="lt-placement-scale-")
        data = pathlib.Path(tmp.name)
    data.mkdir(parents=True, exist_ok=True)
    marker = data / "generated.json"
    if marker.exists() and json.loads(marker.read_text()).get("requested") not in (None, args.videos):
        raise SystemExit(f"{data} holds another catalogue size: {marker.read_text()}")
    print(f"{args.videos:,} videos x {len(REGIONS)} regions x {DAYS} days in {data}", flush=True)
    stats = generate(data, args.videos, marker)
    if args.generate_only:
        return
    server, address = serve_metadata(data)
    runs = []
    try:
        for shards in (int(s) for s in args.shards.split(",")):
            print(f"running the daily job, --shards {shards}", flush=True)
            runs.append(run_job(data, address, shards, args.job_args.split()))
            print(json.dumps(runs[-1]), flush=True)
    finally:
        server.stop(0)
        if tmp is not None:
            tmp.cleanup()
    previous = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    entries = previous.get("runs", {})
    for r in runs:
        entries[" ".join([f"{args.videos}x{r['shards']}", *r["job_args"]])] = {**r, "date": dt.datetime.now(dt.timezone.utc).isoformat(
            timespec="minutes"), "data": {**stats, "regions": len(REGIONS), "days": DAYS}}
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps({
        "goals": {"wall_seconds": GOAL_SECONDS, "peak_rss_gb": GOAL_GB},
        "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0]},
        "runs": entries}, indent=1) + "\n")
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
