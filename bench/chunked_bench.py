"""Chunked transcoding benchmark: time from the end of the upload to READY with chunked
transcoding on 1 and on 2 transcoder workers, against a whole-file encode on 1 worker,
and a fleet model built from the measured per-chunk times.

Run from the repo root:  .venv/bin/python bench/chunked_bench.py [--seconds 60] [--height 720] [--rounds 2]
Writes bench/results/chunked.json.

The source is made reproducibly by `longtail_cli.cli.make_test_clip` (ffmpeg testsrc2 +
440 Hz tone, x264 veryfast). Every run is a fresh embedded platform (`Platform`, own data
dir; start-up is not timed) with tracing on (the default: JSON-lines spans under
DATA_DIR/traces/):

  whole_1w    chunking off (chunk_min_duration_s = 0), 1 worker: the reference
  chunked_1w  chunk_seconds = 10, chunk_min_duration_s = 5, 1 worker
  chunked_2w  the same, 2 workers

Runs are interleaved and the order rotates each round (A B C, B C A, C A B, ...) so machine
noise hits all three. Timed: last upload PATCH answered -> GET /v1/videos/{id} says READY
(polled every 0.1 s). Per run, from the spans ("transcode" and "transcode chunk i/n", with
longtail.chunk.index and longtail.worker_id) and the chunk `_done` markers (their mtime is
when the chunk's encode and upload finished; the bench polls for them, they are deleted
after packaging):

  head   upload end -> first chunk starts (queue, download, probe, split, publish)
  chunk  per chunk: span start -> its _done marker (download source, seek, encode every rung, store)
  join   last _done -> the joining span ends (concat, audio, CMAF/HLS/DASH packaging,
         storyboard, poster, store outputs)
  tail   transcode span end -> READY seen (result topic -> metadata_svc)

Fleet model: READY(W) ~ serial + ceil(chunks / W) * chunk_time, serial = head + join + tail,
chunk_time = the median full-length chunk time of the 1-worker runs (one worker with this
whole 2-core machine, i.e. a fleet of workers like this one). Also "as deployed": the
transcode.requests topic has 4 partitions and a chunk's partition is crc32(video_id:index),
so at most 4 workers get chunks and the split between them is uneven; that curve is a
Monte Carlo over random video ids with the measured per-chunk times.

The work tree may be shared: the JSON records git HEAD and a hash of transcoder_svc/ and
longtail_common/ at start and end, and the bench warns when the code changed under it.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import math
import os
import pathlib
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from longtail_cli.cli import local_api_token, make_test_clip, upload_file  # noqa: E402
from longtail_cli.launcher import Platform, free_port  # noqa: E402
from longtail_common import telemetry  # noqa: E402
from machine import cpu_model, ffmpeg_version  # noqa: E402  (bench/machine.py)
from longtail_common.config import Config  # noqa: E402
from longtail_common.ports import DEFAULT_TOPICS, MEDIA_BUCKET, TOPIC_TRANSCODE_REQUESTS  # noqa: E402
from transcoder_svc import ffmpeg_graphs, ladder, probe  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
CHUNK_SECONDS = 10
CHUNK_MIN_DURATION_S = 5
MODES = {
    "whole_1w": {"chunked": False, "workers": 1, "label": "whole file, 1 worker"},
    "chunked_1w": {"chunked": True, "workers": 1, "label": "chunked, 1 worker"},
    "chunked_2w": {"chunked": True, "workers": 2, "label": "chunked, 2 workers"},
}
FLEET = (1, 2, 4, 8, 16)


def worker_cpu_s(pid: int) -> float:
    """utime + stime of a worker and of its waited-for children (the ffmpeg runs), seconds."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    f = stat[stat.rindex(")") + 2:].split()
    return sum(int(x) for x in f[11:15]) / CLK_TCK  # utime, stime, cutime, cstime


class DoneWatcher(threading.Thread):
    """Records when each chunk's _done marker was written (its mtime), polling every 50 ms."""

    def __init__(self, chunks_dir: pathlib.Path):
        super().__init__(daemon=True)
        self.dir = chunks_dir
        self.done_ns: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                markers = list(self.dir.glob("*/_done"))
            except OSError:
                continue
            for m in markers:
                idx = int(m.parent.name)
                if idx not in self.done_ns:
                    try:
                        self.done_ns[idx] = m.stat().st_mtime_ns
                    except OSError:
                        pass


def one_run(mode: str, clip: pathlib.Path, work: pathlib.Path, run_no: int) -> dict:
    spec = MODES[mode]
    cfg = Config(data_dir=str(work / f"{run_no:02d}-{mode}"))
    if spec["chunked"]:
        cfg.transcoder.chunk_seconds = CHUNK_SECONDS
        cfg.transcoder.chunk_min_duration_s = CHUNK_MIN_DURATION_S
    else:
        cfg.transcoder.chunk_min_duration_s = 0
    load = os.getloadavg()
    plat = Platform(cfg, gateway_port=free_port(), transcoder_workers=spec["workers"])
    plat.start(timeout_s=120)
    try:
        token = local_api_token(cfg, "bench")  # uploading needs an account
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
            base = plat.gateway_url
            wpids = [p.pid for n, p in plat.procs.items() if n.startswith("transcoder-")]
            cpu0 = sum(worker_cpu_s(p) for p in wpids)
            t_up0 = time.monotonic()
            vid = upload_file(client, base, str(clip), f"chunked bench {mode}", "bench")
            upload_end_ns, t_end = time.time_ns(), time.monotonic()
            watcher = DoneWatcher(cfg.data_path / "objects" / MEDIA_BUCKET / "videos" / vid / "chunks")
            watcher.start()
            deadline = t_end + 1800
            while True:
                video = client.get(f"{base}/v1/videos/{vid}").json()
                if video["status"] in ("READY", "FAILED"):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{mode}: video {vid} not READY after 1800 s")
                time.sleep(0.1)
            t_ready, ready_ns = time.monotonic(), time.time_ns()
            watcher.stop.set()
            watcher.join()
            cpu1 = sum(worker_cpu_s(p) for p in wpids)
            if video["status"] != "READY":
                raise RuntimeError(f"{mode}: video FAILED: {video.get('failure_reason')}")
    finally:
        plat.stop()  # SIGTERM flushes the span files
    spans = [s for s in telemetry.load_spans(cfg.data_path)
             if s["attributes"].get(telemetry.VIDEO_ID) == vid and s["name"].startswith("transcode")]
    run = {"mode": mode, "video_id": vid, "loadavg_at_start": [round(x, 2) for x in load],
           "upload_s": round(t_end - t_up0, 2), "ready_s": round(t_ready - t_end, 2),
           "worker_cpu_s": round(cpu1 - cpu0, 1)}
    run.update(analyse(spans, watcher.done_ns, upload_end_ns, ready_ns, spec["chunked"]))
    return run


def analyse(spans: list[dict], done_ns: dict[int, int], upload_end_ns: int, ready_ns: int, chunked: bool) -> dict:
    s = lambda ns: round(ns / 1e9, 3)  # noqa: E731
    whole = [x for x in spans if x["name"] == "transcode"]
    if not chunked:
        span = max(whole, key=lambda x: x["end_ns"])
        return {"head_s": s(span["start_ns"] - upload_end_ns), "transcode_span_s": s(span["end_ns"] - span["start_ns"]),
                "tail_s": s(ready_ns - span["end_ns"])}
    by_index: dict[int, dict] = {}
    for x in spans:
        if "longtail.chunk.index" in x["attributes"]:
            i = int(x["attributes"]["longtail.chunk.index"])
            if i not in by_index or x["end_ns"] > by_index[i]["end_ns"]:
                by_index[i] = x  # a redelivered chunk: the last attempt counts
    count = int(next(iter(by_index.values()))["attributes"]["longtail.chunk.count"])
    if sorted(by_index) != list(range(count)):
        raise RuntimeError(f"chunk spans {sorted(by_index)} of {count}")
    missing = [i for i in range(count) if i not in done_ns]
    if missing:
        raise RuntimeError(f"_done markers of chunks {missing} were not seen")
    split = max(whole, key=lambda x: x["end_ns"])
    joiner = max(by_index.values(), key=lambda x: x["end_ns"])
    first_start = min(x["start_ns"] for x in by_index.values())
    last_done = max(done_ns.values())
    chunks = []
    for i in range(count):
        x = by_index[i]
        chunks.append({"index": i, "start_s": float(x["attributes"].get("longtail.chunk.start_seconds", 0.0)),
                       "worker": x["attributes"].get("longtail.worker_id", ""),
                       "begin_s": s(x["start_ns"] - upload_end_ns), "encode_s": s(done_ns[i] - x["start_ns"])})
    workers = sorted({c["worker"] for c in chunks})
    return {
        "chunks": chunks,
        "chunk_count": count,
        "chunks_per_worker": sorted((sum(c["worker"] == w for c in chunks) for w in workers), reverse=True),
        "split_span_s": s(split["end_ns"] - split["start_ns"]),
        "head_s": s(first_start - upload_end_ns),
        "chunk_phase_s": s(last_done - first_start),
        "join_s": s(joiner["end_ns"] - last_done),
        "tail_s": s(ready_ns - joiner["end_ns"]),
    }


def new_video_id(rng: random.Random) -> str:
    # the gateway's id shape (gateway/app.py new_video_id), from a seeded generator
    raw = base64.urlsafe_b64encode(uuid.UUID(int=rng.getrandbits(128)).bytes)[:11].decode()
    return raw.replace("-", "a").replace("_", "b")


def fleet_model(serial_s: float, chunk_times: list[float], chunk_time: float, chunk_time_1core: float,
                partitions: int, samples: int = 20000) -> list[dict]:
    """Predicted READY for W workers: ideal (any worker takes any chunk) and as deployed
    (chunk i -> partition crc32(id:i) % P -> member p % W, each member encodes its own in turn)."""
    n = len(chunk_times)
    rng = random.Random(0)
    ids = [new_video_id(rng) for _ in range(samples)]
    out = []
    for w in FLEET:
        ideal = serial_s + math.ceil(n / w) * chunk_time
        spans = []
        for vid in ids:
            load = [0.0] * min(w, partitions)
            for i, t in enumerate(chunk_times):
                p = zlib.crc32(f"{vid}:{i}".encode()) % partitions
                load[p % w] += t
            spans.append(serial_s + max(load))
        spans.sort()
        out.append({"workers": w, "ideal_s": round(ideal, 1), "ideal_speedup_vs_1": None,
                    "ideal_1core_workers_s": round(serial_s + math.ceil(n / w) * chunk_time_1core, 1),
                    "deployed_median_s": round(statistics.median(spans), 1),
                    "deployed_p90_s": round(spans[int(0.9 * len(spans))], 1),
                    "busy_workers_max": min(w, partitions)})
    base = out[0]["ideal_s"]
    for row in out:
        row["ideal_speedup_vs_1"] = round(base / row["ideal_s"], 2)
        row["deployed_median_speedup_vs_1"] = round(out[0]["deployed_median_s"] / row["deployed_median_s"], 2)
    return out


def deployed_split(partitions: int, counts=(3, 5, 8, 12, 15, 30), fleet=(2, 4, 8), samples: int = 2000) -> list[dict]:
    """Most chunks any one worker gets, by chunk count, under the embedded log's keyed placement
    (median over random ids; crc32 is linear, so for same-length keys the pattern barely varies)."""
    rng = random.Random(1)
    ids = [new_video_id(rng) for _ in range(samples)]
    rows = []
    for n in counts:
        row = {"chunks": n}
        for w in fleet:
            worst = sorted(max(sum(1 for i in range(n) if zlib.crc32(f"{vid}:{i}".encode()) % partitions % w == k)
                               for k in range(w)) for vid in ids)
            row[f"W{w}"] = {"ideal": math.ceil(n / w), "median": worst[len(worst) // 2], "max": worst[-1]}
        rows.append(row)
    return rows


def code_state() -> dict:
    """git HEAD, files changed in the work tree, and a hash of the code the workers import:
    the tree is shared, so a change during the bench would mix versions (checked at the end)."""
    import hashlib

    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.rstrip()  # noqa: E731
    h = hashlib.sha256()
    for path in sorted([*(ROOT / "transcoder_svc").glob("*.py"), *(ROOT / "longtail_common").rglob("*.py")]):
        h.update(path.read_bytes())
    return {"git_head": git("rev-parse", "HEAD"), "modified": git("status", "--porcelain", "--untracked-files=no").splitlines(),
            "transcoder_and_common_sha256": h.hexdigest()[:16]}


def med(xs: list[float]) -> float:
    return round(statistics.median(xs), 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "chunked.json"))
    args = ap.parse_args()
    load_start, t_bench = os.getloadavg(), time.monotonic()
    code_start = code_state()
    work = pathlib.Path(tempfile.mkdtemp(prefix="chunked-bench-"))
    try:
        clip = work / "clip.mp4"
        make_test_clip(str(clip), seconds=args.seconds, height=args.height)
        info = probe.probe(str(clip))
        rungs = ladder.ladder_for(info)
        plan = ladder.chunk_plan(info.duration_s, CHUNK_SECONDS)
        print(f"source: testsrc2 + tone, {info.duration_s:.1f} s {info.width}x{info.height} {info.frame_rate:g} fps, "
              f"{clip.stat().st_size / 1e6:.1f} MB; ladder {[r.name for r in rungs]} (x264 {ffmpeg_graphs.X264_PRESET}); "
              f"chunk_seconds {CHUNK_SECONDS} -> {len(plan)} chunks of {plan[0][1]:g} s", flush=True)
        order = list(MODES)
        runs = []
        for r in range(args.rounds):
            k = r % len(order)
            for mode in order[k:] + order[:k]:
                run = one_run(mode, clip, work, len(runs))
                run["round"] = r + 1
                runs.append(run)
                extra = ""
                if "chunks" in run:
                    extra = (f"; head {run['head_s']:.1f} s, chunks {[c['encode_s'] for c in run['chunks']]} "
                             f"(per worker {run['chunks_per_worker']}), join {run['join_s']:.1f} s, tail {run['tail_s']:.1f} s")
                print(f"round {r + 1} {mode:<11} READY {run['ready_s']:6.1f} s after upload end, worker CPU "
                      f"{run['worker_cpu_s']:.0f} s, load {run['loadavg_at_start'][0]:.1f}{extra}", flush=True)
        load_end = os.getloadavg()
        code_end = code_state()
        if code_end["transcoder_and_common_sha256"] != code_start["transcoder_and_common_sha256"]:
            print("WARNING: transcoder_svc/ or longtail_common/ changed during the bench: runs mix code versions",
                  flush=True)

        modes = {}
        for mode, spec in MODES.items():
            rs = [x for x in runs if x["mode"] == mode]
            m = {"label": spec["label"], "workers": spec["workers"], "ready_s": [x["ready_s"] for x in rs],
                 "ready_median_s": med([x["ready_s"] for x in rs]),
                 "worker_cpu_median_s": med([x["worker_cpu_s"] for x in rs]),
                 "head_median_s": med([x["head_s"] for x in rs]), "tail_median_s": med([x["tail_s"] for x in rs])}
            if spec["chunked"]:
                full = [c["encode_s"] for x in rs for c in x["chunks"] if c["index"] < x["chunk_count"] - 1]
                m.update({"chunk_median_s": med(full), "chunk_max_s": max(full),
                          "last_chunk_median_s": med([x["chunks"][-1]["encode_s"] for x in rs]),
                          "join_median_s": med([x["join_s"] for x in rs]),
                          "chunk_phase_median_s": med([x["chunk_phase_s"] for x in rs]),
                          "split_span_median_s": med([x["split_span_s"] for x in rs]),
                          "chunks_per_worker": [x["chunks_per_worker"] for x in rs]})
            else:
                m["transcode_span_median_s"] = med([x["transcode_span_s"] for x in rs])
            modes[mode] = m
        w1, c1, c2 = modes["whole_1w"], modes["chunked_1w"], modes["chunked_2w"]
        ratios = {"chunked_2w_speedup_vs_chunked_1w": round(c1["ready_median_s"] / c2["ready_median_s"], 2),
                  "chunked_2w_speedup_vs_whole_1w": round(w1["ready_median_s"] / c2["ready_median_s"], 2),
                  "chunking_overhead_chunked_1w_over_whole_1w": round(c1["ready_median_s"] / w1["ready_median_s"], 2),
                  "cpu_chunked_1w_over_whole_1w": round(c1["worker_cpu_median_s"] / w1["worker_cpu_median_s"], 2),
                  "chunk_time_2w_over_1w (contention)": round(c2["chunk_median_s"] / c1["chunk_median_s"], 2)}

        # fleet model from the 1-worker chunked runs: each worker has a 2-core machine to itself
        c1_runs = [x for x in runs if x["mode"] == "chunked_1w"]
        n = c1_runs[0]["chunk_count"]
        per_index = [med([x["chunks"][i]["encode_s"] for x in c1_runs]) for i in range(n)]
        serial = med([x["head_s"] + x["join_s"] + x["tail_s"] for x in c1_runs])
        chunk_time = c1["chunk_median_s"]
        partitions = DEFAULT_TOPICS[TOPIC_TRANSCODE_REQUESTS]
        fleet = fleet_model(serial, per_index, chunk_time, c2["chunk_median_s"], partitions)
        limit = round(serial + max(per_index), 1)
        split_table = deployed_split(partitions)
        # the same formula with the 2-worker (contended) chunk time, against the 2-worker measurement
        serial2 = med([x["head_s"] + x["join_s"] + x["tail_s"] for x in runs if x["mode"] == "chunked_2w"])
        check = {
            "W1_predicted_s": fleet[0]["ideal_s"], "W1_measured_s": c1["ready_median_s"],
            "W2_ideal_uncontended_s": fleet[1]["ideal_s"],
            "W2_with_contended_chunk_time_and_measured_split_s": round(
                serial2 + statistics.median(max(x["chunks_per_worker"]) for x in runs if x["mode"] == "chunked_2w")
                * c2["chunk_median_s"], 1),
            "W2_measured_s": c2["ready_median_s"],
        }
        print("\nmedians (s, upload end -> READY):")
        for mode, m in modes.items():
            print(f"  {m['label']:<22} {m['ready_median_s']:7.1f}   runs {m['ready_s']}   worker CPU {m['worker_cpu_median_s']:.0f} s")
        for k, v in ratios.items():
            print(f"  {k}: {v}")
        print(f"\nchunk time {chunk_time:.1f} s (1 worker; {c2['chunk_median_s']:.1f} s with 2 workers sharing 2 cores), "
              f"serial {serial:.1f} s (head {c1['head_median_s']:.1f} + join {c1['join_median_s']:.1f} + tail "
              f"{c1['tail_median_s']:.1f}), {n} chunks")
        print("fleet model READY(W) = serial + ceil(chunks/W) * chunk_time; as deployed: 4 partitions, crc32 split")
        for row in fleet:
            print(f"  W={row['workers']:<3} ideal {row['ideal_s']:6.1f} s ({row['ideal_speedup_vs_1']:.2f}x)   "
                  f"as deployed median {row['deployed_median_s']:6.1f} s, p90 {row['deployed_p90_s']:6.1f} s; "
                  f"1-core workers {row['ideal_1core_workers_s']:6.1f} s")
        print(f"  limit (serial + longest chunk): {limit} s; check: {check}")
        print("most chunks on one worker, embedded log (ideal / median over ids):")
        for row in split_table:
            print(f"  {row['chunks']:>3} chunks: " + ", ".join(
                f"W={k[1:]} {v['ideal']}/{v['median']}" for k, v in row.items() if k != "chunks"))

        result = {
            "benchmark": "chunked_transcoding_time_to_ready",
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"hostname": socket.gethostname(), "platform": platform.platform(), "cpu": cpu_model(),
                        "cores": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load_start],
                        "loadavg_at_end": [round(x, 2) for x in load_end], "python": platform.python_version(),
                        "ffmpeg": ffmpeg_version()},
            "command": "python bench/chunked_bench.py" + "".join(
                f" --{k} {v}" for k, v in (("seconds", args.seconds), ("height", args.height), ("rounds", args.rounds))
                if v != ap.get_default(k)),
            "wall_s": round(time.monotonic() - t_bench, 1),
            "code": {"at_start": code_start, "at_end": code_end,
                     "changed_during_bench": code_end["transcoder_and_common_sha256"]
                     != code_start["transcoder_and_common_sha256"]},
            "source": {"description": "make_test_clip: ffmpeg testsrc2 + 440 Hz tone, x264 veryfast",
                       "duration_s": info.duration_s, "width": info.width, "height": info.height,
                       "frame_rate": info.frame_rate, "bytes": clip.stat().st_size},
            "ladder": [r.name for r in rungs],
            "x264_preset": ffmpeg_graphs.X264_PRESET,
            "chunking": {"chunk_seconds": CHUNK_SECONDS, "chunk_min_duration_s": CHUNK_MIN_DURATION_S,
                         "plan": [[a, b] for a, b in plan],
                         "note": "chunk_plan rounds chunk_seconds to a multiple of the 4 s segment (10 -> 8)"},
            "platform": "Platform (embedded: SQLite, fs objects, local topic log), fresh per run, tracing on",
            "timed": "last upload PATCH answered -> GET /v1/videos/{id} READY (0.1 s polls)",
            "interleaving": "order rotates per round: A B C, B C A, ...",
            "modes": modes,
            "ratios": ratios,
            "fleet_model": {
                "formula": "READY(W) = serial + ceil(chunks / W) * chunk_time",
                "chunk_time_s": chunk_time, "chunk_time_source": "median full-length chunk, chunked_1w runs "
                "(one worker, the 2 cores to itself: a fleet of 2-core workers like this machine)",
                "chunk_time_1core_s": c2["chunk_median_s"], "chunk_time_1core_source": "median full-length chunk, "
                "chunked_2w runs (two encodes sharing 2 cores: ~1 core each); curve ideal_1core_workers_s, same serial",
                "per_index_chunk_s": per_index, "serial_s": serial, "chunks": n,
                "limit_s": limit, "limit_formula": "serial + longest chunk (head + chunk + join + tail)",
                "transcode_requests_partitions": partitions,
                "deployed_note": "chunk i goes to partition crc32('<video id>:i') % partitions, partition p to "
                                 "member p % W: at most `partitions` workers busy, uneven split; median/p90 over "
                                 "20000 random video ids",
                "curve": fleet,
                "deployed_split_by_chunk_count": split_table,
                "check": check,
            },
            "runs": runs,
        }
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out} ({result['wall_s']:.0f} s)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)




if __name__ == "__main__":
    sys.exit(main())
