"""Load on the gateway's hot paths, with nginx serving the same bytes as the ceiling, in one run.

Run from the repo root:  .venv/bin/python bench/load_bench.py [--videos 100 --duration 10 --rounds 2]
Writes bench/results/load.json (`--tracing off`: the same with no spans made; `--pin`: the
one-process servers on CPU 1, apart from wrk on CPU 0). Needs wrk
and nginx (Debian packages `wrk`, `nginx`; `make load-bench` installs them).

One embedded platform (longtail_cli.launcher.Platform, no transcoder) with two gateway
processes sharing its port; a catalogue of READY videos made without ffmpeg (a real
upload, then the objects and the TranscodeResult a worker would write: an HLS ladder
entry with a 176 kB segment). wrk (one thread, pinned to CPU 0 with taskset; its Lua
script walks a list of requests drawn in advance) drives each phase:

  trivial   GET /healthz (the gateway's own trivial route; its report is cached 1 s)
  get       GET /v1/videos/{id}, ids drawn from a Zipf law over the catalogue (s = 1)
  watch     GET /v1/videos/{id}/watch, Zipf ids, clients and regions varied
  segment   the signed /origin/... URL of a segment, half of them Range requests
  mix       what players do per session: 1 watch, 2 playlists, init + 4 segments (2 Range),
            1 beacon (POST /v1/videos/{id}/views)
  watch_traced   the watch list, each call with a sampled W3C traceparent: a caller that
                 traces every call gets a span per call (the fast path's head sampling,
                 telemetry.fast_path_sample_ratio, keeps 1% of the others): what tracing
                 every call costs, side by side with `watch`
  watch_route    the watch list with one more query parameter (`via=route`), which the
                 fast path (gateway/fast_routes.py) leaves to the FastAPI route: what the
                 same call costs through routing, dependencies and the middleware stack
  nginx_json     nginx serving each video's watch JSON as a static file (Zipf)
  nginx_segment  nginx serving the same segment files (half Range)
  hello          a raw ASGI app under the same uvicorn (bench/asgi_hello.py) answering a
                 small JSON: the ceiling of any Python handler on this machine
  hello_segment  the same app answering 176 kB from memory (half Range): the ceiling of
                 Python serving segment bytes

Rate limits are counted as in production (`--rate-limits on`, the default): loopback is not
exempt, with limits high enough never to refuse. Each gateway phase runs against one gateway
process (its own port: "1 process") and against both (the shared SO_REUSEPORT port:
"2 processes"); nginx with 1 and 2 workers, the hello app with 1 and 2 processes.
Phases alternate within each round so neither side always goes first on this shared
machine; each figure is the median over rounds. Besides req/s and latency, the CPU seconds
the serving processes used (/proc/<pid>/stat) per request: the figure the machine's other
tenants disturb least.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import pathlib
import platform as host
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from longtail.events.v1 import events_pb2  # noqa: E402
from longtail.metadata.v1 import video_pb2  # noqa: E402
from longtail_cli.launcher import Platform, free_port  # noqa: E402
from longtail_common.adapters import make_account_store, make_object_store, make_topic_bus  # noqa: E402
from longtail_common.config import Config  # noqa: E402
from longtail_common.ports import MEDIA_BUCKET, TOPIC_TRANSCODE_RESULTS  # noqa: E402
from machine import cpu_model  # noqa: E402  (bench/machine.py)
from metadata_svc.accounts import Accounts  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SEGMENT_BYTES = 176_000  # the issue's segment
RANGE = "bytes=0-65535"
CLIENTS = ("web", "chrome", "safari", "android", "tv")
REGIONS = ("US", "GB", "JP")
UNLIMITED_RATE = "1000000 per 10 seconds"  # counted, never refused at these rates
TARGETS = {"watch_vs_nginx_json": 0.10, "watch_p99_ms": 25.0, "watch_vs_trivial": 0.8,
           "segment_vs_nginx": 0.3, "two_vs_one_process": 1.6}

WRK_SCRIPT = """
local requests = dofile("%(table)s")
local i = 0
function setup(thread) thread:set("i", math.random(#requests)) end
function request()
  i = i + 1
  local r = requests[(i %% #requests) + 1]
  return wrk.format(r[1], r[2], r[3], r[4])
end
function done(summary, latency, _)
  io.write(string.format('{"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,"mean_us":%%f,' ..
    '"errors":{"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
end
"""

NGINX_CONF = """
user root;
worker_processes %(workers)d;
daemon off;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  types { application/json json; video/iso.segment m4s; }
  server {
    listen 127.0.0.1:%(port)d;
    location /watch/ { root %(dir)s/www; }
    location /media/ { alias %(media)s/; }
  }
}
"""


# -- the catalogue -------------------------------------------------------------------------


def zipf_ids(ids: list[str], n: int, rng: random.Random) -> list[str]:
    """n draws from ids, the i-th (1-based) with probability proportional to 1/i."""
    return rng.choices(ids, weights=[1 / (i + 1) for i in range(len(ids))], k=n)


def put_media(objects, vid: str) -> events_pb2.TranscodeResult:
    """The objects a worker writes for a one-rendition HLS ladder, and its result."""
    prefix = f"videos/{vid}/h264"
    files = {
        "master.m3u8": b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=426x240,"
                       b"CODECS=\"avc1.64001f,mp4a.40.2\"\n240p/index.m3u8\n",
        "240p/index.m3u8": b"#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-MAP:URI=\"init.mp4\"\n"
                           + b"".join(b"#EXTINF:4.0,\nseg%d.m4s\n" % i for i in range(4)) + b"#EXT-X-ENDLIST\n",
        "240p/init.mp4": os.urandom(900),
        "manifest.mpd": b"<?xml version=\"1.0\"?><MPD/>",
        "thumb.jpg": os.urandom(4000),
    }
    for i in range(4):
        files[f"240p/seg{i}.m4s"] = os.urandom(SEGMENT_BYTES)
    for name, data in files.items():
        objects.put_bytes(MEDIA_BUCKET, f"{prefix}/{name}", data)
    objects.put_bytes(MEDIA_BUCKET, f"{prefix}/_result.json", b"{}")
    return events_pb2.TranscodeResult(
        video_id=vid, success=True, duration_seconds=600.0,
        renditions=[video_pb2.Rendition(codec="h264", width=426, height=240, bitrate_bps=400_000, container="fmp4",
                                        object_key=f"{prefix}/240p/index.m3u8", codecs="avc1.64001f,mp4a.40.2")],
        manifests=[video_pb2.StreamManifest(codec="h264", protocol="hls", object_key=f"{prefix}/master.m3u8"),
                   video_pb2.StreamManifest(codec="h264", protocol="dash", object_key=f"{prefix}/manifest.mpd")],
        thumbnails=[video_pb2.Thumbnail(object_key=f"{prefix}/thumb.jpg", width=320, height=180)])


def admin_headers(cfg: Config) -> dict[str, str]:
    """An admin's API token (admins have no upload quota), written to the account store as
    `longtail users add --admin` and `longtail tokens create` do."""
    store = make_account_store(cfg)
    try:
        accounts = Accounts(store, cfg.auth)
        account = accounts.create("loadbench", email="loadbench@example.org", admin=True)
        return {"Authorization": f"Bearer {accounts.create_token(account.account_id)[1]}"}
    finally:
        store.close()


def make_catalogue(platform: Platform, n: int) -> list[str]:
    """n READY videos: uploaded through the gateway, 'transcoded' by this process."""
    objects = make_object_store(platform.cfg)
    objects.ensure_bucket(MEDIA_BUCKET)
    bus = make_topic_bus(platform.cfg)
    producer = bus.producer()
    ids = []
    with httpx.Client(base_url=platform.gateway_url, timeout=60, headers=admin_headers(platform.cfg)) as c:
        for i in range(n):
            created = c.post("/v1/videos", json={"title": f"load bench {i}", "channel_id": "loadbench",
                                                 "language": "en", "size_bytes": 9})
            created.raise_for_status()
            vid = created.json()["id"]
            r = c.patch(created.json()["upload_url"], content=b"notavideo", headers={
                "Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
            r.raise_for_status()
            result = put_media(objects, vid)
            producer.publish(TOPIC_TRANSCODE_RESULTS, result.SerializeToString(), key=vid.encode())
            ids.append(vid)
        producer.close()
        bus.close()
        deadline = time.monotonic() + 600
        for vid in ids:
            while c.get(f"/v1/videos/{vid}").json().get("status") != "READY":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"video {vid} did not become READY")
                time.sleep(0.2)
    return ids


class Catalogue:
    """Per video: a watch payload (written for nginx), its signed segment and playlist
    paths, a playback id for beacons."""

    def __init__(self, platform: Platform, ids: list[str], www: pathlib.Path):
        self.ids = ids
        self.paths: dict[str, dict] = {}
        (www / "watch").mkdir(parents=True)
        with httpx.Client(base_url=platform.gateway_url, timeout=60) as c:
            for vid in ids:
                payload = c.get(f"/v1/videos/{vid}/watch", params={"region": "US", "client": "web"})
                payload.raise_for_status()
                (www / "watch" / f"{vid}.json").write_bytes(payload.content)
                master = urllib.parse.urlsplit(payload.json()["stream"]["url"]).path
                base = master.rsplit("/", 1)[0]
                self.paths[vid] = {"master": master, "variant": f"{base}/240p/index.m3u8",
                                   "init": f"{base}/240p/init.mp4",
                                   "segments": [f"{base}/240p/seg{i}.m4s" for i in range(4)],
                                   "playback_id": payload.json()["playback"]["id"]}


# -- request lists (wrk walks them) ----------------------------------------------------------


def get(path: str, headers: dict | None = None) -> tuple:
    return ("GET", path, headers or {}, None)


def request_lists(cat: Catalogue, n: int, seed: int = 7) -> dict[str, list[tuple]]:
    rng = random.Random(seed)
    draws = zipf_ids(cat.ids, n, rng)
    watch = [get(f"/v1/videos/{v}/watch?client={rng.choice(CLIENTS)}&region={rng.choice(REGIONS)}") for v in draws]
    segments = [get(rng.choice(cat.paths[v]["segments"]), {"Range": RANGE} if i % 2 else None)
                for i, v in enumerate(draws)]
    mix = []
    for v in draws[: n // 9]:
        p = cat.paths[v]
        beacon = json.dumps({"kind": "progress", "bytes": 1000, "region": "US", "playback_id": p["playback_id"]})
        mix += [watch[len(mix) % n], get(p["master"]), get(p["variant"]), get(p["init"]),
                get(p["segments"][0]), get(p["segments"][1], {"Range": RANGE}), get(p["segments"][2]),
                get(p["segments"][3], {"Range": RANGE}),
                ("POST", f"/v1/videos/{v}/views", {"Content-Type": "application/json"}, beacon)]
    return {
        "trivial": [get("/healthz")],
        "get": [get(f"/v1/videos/{v}") for v in draws],
        "watch": watch,
        "watch_route": [(m, path + "&via=route", h, b) for m, path, h, b in watch],
        "watch_traced": [(m, path, {"traceparent": traceparent(rng)}, b) for m, path, _, b in watch],
        "hello": [get("/hello")],
        "hello_segment": [(m, "/segment", h, b) for m, _, h, b in segments],
        "segment": segments,
        "mix": mix,
        "nginx_json": [get(f"/watch/{v}.json") for v in draws],
        "nginx_segment": [(m, "/media/videos/" + path.split("/videos/", 1)[1], h, b) for m, path, h, b in segments],
    }


def traceparent(rng: random.Random) -> str:
    """A sampled W3C traceparent of a random trace and parent span."""
    return f"00-{rng.getrandbits(128) or 1:032x}-{rng.getrandbits(64) or 1:016x}-01"


def lua_table(requests: list[tuple]) -> str:
    def lua(value) -> str:
        if value is None:
            return "nil"
        if isinstance(value, dict):
            return "{" + ",".join(f"[{lua(k)}]={lua(v)}" for k, v in value.items()) + "}"
        return json.dumps(value)  # a JSON string is a valid Lua string literal here (ASCII)

    return "return {\n" + ",\n".join("{" + ",".join(lua(x) for x in r) + "}" for r in requests) + "\n}\n"


# -- running a phase -------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(url: str, script: pathlib.Path, connections: int, duration_s: float) -> dict:
    """One wrk run, one thread pinned to CPU 0; its done() callback's figures, and the CPU
    seconds wrk itself used (`wrk_cpu_s`: the load generator shares this machine)."""
    cmd = ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "10s",
           "-s", str(script), url]
    before = children_cpu_seconds()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"wrk said nothing usable: {out.stdout}\n{out.stderr}")
    return {**json.loads(line), "wrk_cpu_s": children_cpu_seconds() - before}


@contextlib.contextmanager
def pinned(pids: list[int], cpus: set[int] | None):
    """The serving processes (every thread) on `cpus` for the phase, then on every CPU again."""
    if not cpus:
        yield
        return
    every = os.sched_getaffinity(0) | cpus
    threads = [int(t) for pid in pids for t in os.listdir(f"/proc/{pid}/task")]
    for tid in threads:
        os.sched_setaffinity(tid, cpus)
    try:
        yield
    finally:
        for tid in threads:
            try:
                os.sched_setaffinity(tid, every)
            except OSError:
                pass  # a thread that ended meanwhile


class Phase:
    """One named load (a request list) against one server (url, the pids serving it)."""

    def __init__(self, name: str, server: str, url: str, pids: list[int], script: pathlib.Path, connections: int,
                 pin: set[int] | None = None):
        self.name, self.server, self.url, self.pids = name, server, url, pids
        self.script, self.connections, self.pin = script, connections, pin
        self.runs: list[dict] = []

    def run(self, duration_s: float) -> None:
        load_before = os.getloadavg()[0]
        cpu_before = cpu_seconds(self.pids)
        with pinned(self.pids, self.pin):
            figures = wrk(self.url, self.script, self.connections, duration_s)
        cpu = cpu_seconds(self.pids) - cpu_before
        seconds = figures["duration_us"] / 1e6
        errors = sum(figures["errors"].values())
        self.runs.append({
            "rps": figures["requests"] / seconds, "p50_ms": figures["p50_us"] / 1000,
            "p99_ms": figures["p99_us"] / 1000, "requests": figures["requests"], "errors": errors,
            "cpu_ms_per_request": 1000 * cpu / max(1, figures["requests"]),
            "wrk_cpu_ms_per_request": 1000 * figures["wrk_cpu_s"] / max(1, figures["requests"]),
            # servers and wrk together, in cores: at os.cpu_count() the phase had the machine
            "cores_busy": (cpu + figures["wrk_cpu_s"]) / seconds,
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)]})
        print(f"  {self.server:>14} {self.name:<14} {self.runs[-1]['rps']:9.0f} req/s  p50 "
              f"{self.runs[-1]['p50_ms']:6.1f} ms  p99 {self.runs[-1]['p99_ms']:7.1f} ms  errors {errors}  "
              f"cpu {self.runs[-1]['cpu_ms_per_request']:.3f} ms/req  load {load_before:.1f}", flush=True)

    def summary(self, processes: int) -> dict:
        med = {k: statistics.median(r[k] for r in self.runs) for k in ("rps", "p50_ms", "p99_ms",
                                                                       "cpu_ms_per_request",
                                                                       "wrk_cpu_ms_per_request", "cores_busy")}
        return {**{k: round(v, 3) for k, v in med.items()}, "rps_per_process": round(med["rps"] / processes, 1),
                "processes": processes, "connections": self.connections,
                "errors": sum(r["errors"] for r in self.runs), "runs": self.runs}


class Nginx:
    """nginx on loopback with a temporary config: the watch JSON files and the media bucket."""

    def __init__(self, work: pathlib.Path, media: pathlib.Path, workers: int):
        self.dir = work / f"nginx-{workers}"
        self.dir.mkdir()
        (self.dir / "www").symlink_to(work / "www")
        self.port = free_port()
        (self.dir / "nginx.conf").write_text(NGINX_CONF % {"workers": workers, "dir": self.dir, "port": self.port,
                                                           "media": media})
        self.proc = subprocess.Popen(["nginx", "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        children = pathlib.Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        self.pids = [self.proc.pid] + [int(p) for p in children]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Hello:
    """bench/asgi_hello.py: one process on a port of its own, two sharing another."""

    def __init__(self):
        self.ports = {1: free_port(), 2: free_port()}
        script = str(ROOT / "bench" / "asgi_hello.py")
        self.procs = {1: [subprocess.Popen([sys.executable, script, "--port", str(self.ports[1])])],
                      2: [subprocess.Popen([sys.executable, script, "--port", str(self.ports[2]), "--reuse-port"])
                          for _ in range(2)]}
        for n in (1, 2):
            for _ in range(100):
                try:
                    httpx.get(f"{self.url(n)}/hello", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.ports[n]}"

    def pids(self, n: int) -> list[int]:
        return [p.pid for p in self.procs[n]]

    def stop(self) -> None:
        for procs in self.procs.values():
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)


# -- the run -----------------------------------------------------------------------------------

CONNECTIONS = {"segment": 16, "nginx_segment": 16, "hello_segment": 16}  # the issue's table; 32 for the rest
GATEWAY_LOADS = ("trivial", "get", "watch", "watch_traced", "watch_route", "segment", "mix")
NGINX_LOADS = ("nginx_json", "nginx_segment")
HELLO_LOADS = ("hello", "hello_segment")


def build_phases(platform: Platform, nginxes: dict[int, Nginx], hello: Hello, lists: dict,
                 work: pathlib.Path, pin: bool = False) -> list[Phase]:
    """Every load against every server; with `pin`, one-process servers run on CPU 1 apart
    from wrk on CPU 0 (two processes need both CPUs)."""
    apart = {1: {1} if pin else None, 2: None}
    scripts = {}
    for name, requests in lists.items():
        (work / f"{name}.lua").write_text(lua_table(requests))
        scripts[name] = work / f"wrk-{name}.lua"
        scripts[name].write_text(WRK_SCRIPT % {"table": work / f"{name}.lua"})
    states = platform.service_states()
    gateways = {1: ([states["gateway-0"]["pid"]], f"http://{states['gateway-0']['address']}"),
                2: ([states[n]["pid"] for n in platform.gateway_names()], platform.gateway_url)}
    phases = []
    for load in GATEWAY_LOADS:
        for n, (pids, url) in gateways.items():
            phases.append(Phase(load, f"gateway_{n}", url, pids, scripts[load], CONNECTIONS.get(load, 32), apart[n]))
    for load in NGINX_LOADS:
        for n, server in nginxes.items():
            phases.append(Phase(load, f"nginx_{n}", server.url, server.pids, scripts[load], CONNECTIONS.get(load, 32),
                                apart[n]))
    for load in HELLO_LOADS:
        for n in (1, 2):
            phases.append(Phase(load, f"hello_{n}", hello.url(n), hello.pids(n), scripts[load],
                                CONNECTIONS.get(load, 32), apart[n]))
    return phases


def ratios(results: dict) -> dict:
    def rps(server: str, load: str) -> float:
        return results[server][load]["rps"]

    def cpu(server: str, load: str) -> float:
        return results[server][load]["cpu_ms_per_request"]

    out = {}
    for n in (1, 2):
        g, x, h = f"gateway_{n}", f"nginx_{n}", f"hello_{n}"
        out[f"{n}_process"] = {
            "watch_vs_hello": round(rps(g, "watch") / rps(h, "hello"), 3),
            "watch_route_vs_trivial": round(rps(g, "watch_route") / rps(g, "trivial"), 3),
            "watch_vs_watch_route": round(rps(g, "watch") / rps(g, "watch_route"), 3),
            "watch_vs_watch_traced": round(rps(g, "watch") / rps(g, "watch_traced"), 3),
            "watch_traced_p99_ms": results[g]["watch_traced"]["p99_ms"],
            "hello_vs_nginx_json": round(rps(h, "hello") / rps(x, "nginx_json"), 4),
            "segment_vs_hello_segment": round(rps(g, "segment") / rps(h, "hello_segment"), 3),
            "hello_segment_vs_nginx_segment": round(rps(h, "hello_segment") / rps(x, "nginx_segment"), 4),
            "watch_vs_nginx_json": round(rps(g, "watch") / rps(x, "nginx_json"), 4),
            "watch_vs_nginx_json_by_cpu": round(cpu(x, "nginx_json") / cpu(g, "watch"), 4),
            "watch_p99_ms": results[g]["watch"]["p99_ms"],
            "watch_vs_trivial": round(rps(g, "watch") / rps(g, "trivial"), 3),
            "watch_vs_trivial_by_cpu": round(cpu(g, "trivial") / cpu(g, "watch"), 3),
            "get_vs_trivial": round(rps(g, "get") / rps(g, "trivial"), 3),
            "segment_vs_nginx": round(rps(g, "segment") / rps(x, "nginx_segment"), 4),
            "segment_vs_nginx_by_cpu": round(cpu(x, "nginx_segment") / cpu(g, "segment"), 4),
        }
    out["two_vs_one_process"] = {load: round(rps("gateway_2", load) / rps("gateway_1", load), 3)
                                 for load in GATEWAY_LOADS}
    # The most two processes could do beside wrk on this machine: every core busy at the CPU
    # per request (servers' and wrk's) the two-process phase measured, over one process's rate.
    out["two_vs_one_process_ceiling"] = {
        load: round(os.cpu_count() / ((cpu("gateway_2", load) + results["gateway_2"][load]["wrk_cpu_ms_per_request"])
                                      / 1000) / rps("gateway_1", load), 3)
        for load in GATEWAY_LOADS}
    out["cores_busy_two_processes"] = {load: round(results["gateway_2"][load]["cores_busy"], 2)
                                       for load in GATEWAY_LOADS}
    out["nginx_two_vs_one_worker"] = {load: round(rps("nginx_2", load) / rps("nginx_1", load), 3)
                                      for load in NGINX_LOADS}
    out["hello_two_vs_one_process"] = {load: round(rps("hello_2", load) / rps("hello_1", load), 3)
                                       for load in HELLO_LOADS}
    return out


def http_parser() -> str:
    """What uvicorn's "auto" HTTP implementation is here (httptools if installed, else h11)."""
    try:
        import httptools

        return f"httptools {httptools.__version__}"
    except ImportError:
        return "h11"


def tool_version(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True)
    return (out.stdout or out.stderr).strip().splitlines()[0]


def measure(args, work: pathlib.Path, started: tuple) -> None:
    """Runs every round; the report is written after each (a cut-short run keeps what it measured)."""
    cfg = Config(data_dir=str(work / "platform"))
    cfg.platform.regions = list(REGIONS)
    cfg.telemetry.tracing = args.tracing == "on"
    cfg.telemetry.fast_path_sample_ratio = args.sample_ratio
    if args.rate_limits == "on":
        cfg.limits.exempt_addresses = []
        for name in ("reads_per_address", "writes_per_address", "writes_per_account", "beacons_per_address"):
            setattr(cfg.limits, name, UNLIMITED_RATE)
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=0, gateway_workers=2) as platform:
        print(f"making {args.videos} READY videos ...", flush=True)
        ids = make_catalogue(platform, args.videos)
        catalogue = Catalogue(platform, ids, work / "www")
        media = make_object_store(platform.cfg).root / MEDIA_BUCKET
        nginxes = {n: Nginx(work, media, n) for n in (1, 2)}
        hello = Hello()
        try:
            phases = build_phases(platform, nginxes, hello, request_lists(catalogue, args.draws), work, args.pin)
            print("warming up ...", flush=True)
            for phase in phases:
                wrk(phase.url, phase.script, phase.connections, 2)
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}", flush=True)
                for phase in (phases if r % 2 == 0 else phases[::-1]):
                    phase.run(args.duration)
                write_report(args, phases, started, rounds=r + 1)
        finally:
            hello.stop()
            for server in nginxes.values():
                server.stop()


def write_report(args, phases: list[Phase], started: tuple, rounds: int) -> None:
    results: dict[str, dict] = {}
    for phase in phases:
        results.setdefault(phase.server, {})[phase.name] = phase.summary(int(phase.server[-1]))
    report = {
        "benchmark": "bench/load_bench.py",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": host.python_version(),
                    "wrk": tool_version(["wrk", "-v"]), "nginx": tool_version(["nginx", "-v"]),
                    "load_average_start": [round(x, 2) for x in started],
                    "load_average_end": [round(x, 2) for x in os.getloadavg()],
                    "note": "shared machine: other tenants' load is in load_average; wrk pinned to CPU 0, "
                            + ("one-process servers pinned to CPU 1" if args.pin else "servers unpinned")},
        "settings": {"videos": args.videos, "zipf_s": 1.0, "duration_s": args.duration, "rounds": rounds,
                     "tracing": args.tracing, "rate_limits": args.rate_limits,
                     "fast_path_sample_ratio": args.sample_ratio, "pinned_apart": args.pin,
                     "http_parser": http_parser(), "segment_bytes": SEGMENT_BYTES, "range": RANGE,
                     "connections": {"default": 32, **CONNECTIONS}},
        "results": results,
        "ratios": ratios(results),
        "targets": TARGETS,
    }
    pathlib.Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["ratios"], indent=1), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=100, help="catalogue size")
    parser.add_argument("--draws", type=int, default=20_000, help="requests drawn per list (wrk cycles through)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tracing", choices=("on", "off"), default="on",
                        help="telemetry.tracing of the platform (on: the default config, spans to local files)")
    parser.add_argument("--sample-ratio", type=float, default=Config().telemetry.fast_path_sample_ratio,
                        help="telemetry.fast_path_sample_ratio (head sampling of the fast path's spans)")
    parser.add_argument("--pin", action="store_true",
                        help="one-process phases: the server on CPU 1, apart from wrk on CPU 0")
    parser.add_argument("--rate-limits", choices=("on", "off"), default="on",
                        help="on: loopback counted like any client (limits too high to refuse); off: exempt")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "load.json"))
    args = parser.parse_args()
    for tool in ("wrk", "nginx", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"load_bench: {tool} is needed (Debian: apt-get install wrk nginx; make bench-tools)")
    # Stopped from outside: nginx and the platform are stopped, the work dir removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = pathlib.Path(tempfile.mkdtemp(prefix="load-bench-"))
    try:
        measure(args, work, os.getloadavg())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
