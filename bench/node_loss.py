"""Node loss under load: two full platform nodes on this machine behind HAProxy, sharing
Kafka, Cassandra and S3Proxy (longtail_testservers/fleet.py), under a bounded load of watch
calls, manifest and segment fetches and tus uploads; one node is SIGKILLed (every process,
ffmpeg included) while an upload and a transcode are under way. Reports the errors, the
latency (p50/p99) before, during and after, and the time to recover; checks that nothing
was lost (every upload started is READY, with the bytes sent) and that each video became
READY exactly once (one distinct `video.published` event each).

    python bench/node_loss.py [--before-s 10] [--after-s 15] [--config DIR/longtail.toml]
                                                  # writes bench/results/node_loss.json

tests/test_node_loss.py runs the same scenario, shorter, in CI (`run_scenario`).
"""
from __future__ import annotations

import argparse
import collections
import copy
import dataclasses
import hashlib
import json
import os
import pathlib
import random
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

import httpx
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path[:0] = [str(ROOT), str(ROOT / "gen")]
sys.path.insert(0, str(ROOT / "bench"))

from machine import cpu_model  # noqa: E402  (bench/machine.py)

from longtail.events.v1 import events_pb2  # noqa: E402
from longtail.transcoder.v1 import transcoder_service_pb2 as tpb  # noqa: E402
from longtail.transcoder.v1 import transcoder_service_pb2_grpc as tpb_grpc  # noqa: E402
from longtail_cli.cli import local_api_token, make_test_clip  # noqa: E402
from longtail_common.config import Config  # noqa: E402
from longtail_common.grpc_server import dial  # noqa: E402
from longtail_common.ports import RAW_BUCKET, TOPIC_VIDEO_PUBLISHED  # noqa: E402
from longtail_testservers.fleet import Fleet  # noqa: E402

RESULT = ROOT / "bench" / "results" / "node_loss.json"
KINDS = ("watch", "manifest", "segment", "upload")
TUS = {"Tus-Resumable": "1.0.0"}


@dataclasses.dataclass
class Params:
    watchers: int = 3  # threads: watch call, master and media playlist, one segment, again
    uploaders: int = 2  # threads: tus uploads one after another, in slow PATCHes
    think_s: float = 0.02  # a watcher's pause between rounds (the load stays bounded)
    catalogue: int = 2  # READY videos the watchers ask for, uploaded before the load
    clip_seconds: int = 4
    clip_height: int = 240
    patch_bytes: int = 24 * 1024  # one PATCH's body ...
    patch_s: float = 0.4  # ... sent over this long (a slow client: a PATCH is in flight most of the time)
    upload_gap_s: float = 2.0  # an uploader's pause between uploads
    before_s: float = 3.0  # load before the kill (at least)
    after_s: float = 5.0  # load after recovery
    victim: str = ""  # the node to kill ("" = whichever first has an upload and a transcode under way)
    kill_wait_s: float = 120.0  # for that moment
    recover_wait_s: float = 120.0
    ready_wait_s: float = 240.0


@dataclasses.dataclass
class Record:
    kind: str
    start: float
    end: float
    status: int  # 0: no answer (connection error)
    node: str = ""  # the gateway that answered (HAProxy's X-Longtail-Node)
    error: str = ""
    upload: str = ""  # the video id of an upload request

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500

    @property
    def conflict(self) -> bool:
        return self.status == 409


class Recorder:
    def __init__(self):
        self.t0 = time.monotonic()
        self.records: list[Record] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def request(self, client: httpx.Client, kind: str, method: str, url: str, upload: str = "",
                **kwargs) -> httpx.Response | None:
        start = self.now()
        try:
            response = client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self._add(Record(kind, start, self.now(), 0, error=f"{type(exc).__name__}: {exc}", upload=upload))
            return None
        error = "" if response.status_code < 400 else response.text[:200]
        self._add(Record(kind, start, self.now(), response.status_code, response.headers.get("x-longtail-node", ""),
                         error, upload))
        return response

    def _add(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)


class Watcher(threading.Thread):
    """A viewer: the watch call, the master and a media playlist (through the gateway), one
    segment (a presigned S3 URL, as the media playlist names it), over and over."""

    def __init__(self, url: str, catalogue: list[str], recorder: Recorder, stop: threading.Event, think_s: float,
                 seed: int):
        super().__init__(daemon=True, name=f"watcher-{seed}")
        self.url, self.catalogue, self.rec, self.stop, self.think_s = url, catalogue, recorder, stop, think_s
        self.rng = random.Random(seed)

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                self.round(client, self.rng.choice(self.catalogue))
                time.sleep(self.think_s)

    def round(self, client: httpx.Client, video_id: str) -> None:
        watch = self.rec.request(client, "watch", "GET", f"{self.url}/v1/videos/{video_id}/watch",
                                 params={"region": "DE", "client": "web"})
        if watch is None or watch.status_code != 200:
            return
        master_url = watch.json()["stream"]["url"]
        master = self.rec.request(client, "manifest", "GET", master_url)
        if master is None or master.status_code != 200:
            return
        variant = next(line for line in master.text.splitlines() if line and not line.startswith("#"))
        playlist = self.rec.request(client, "manifest", "GET", urllib.parse.urljoin(master_url, variant))
        if playlist is None or playlist.status_code != 200:
            return
        segments = [line for line in playlist.text.splitlines() if line and not line.startswith("#")]
        self.rec.request(client, "segment", "GET", urllib.parse.urljoin(str(playlist.url), self.rng.choice(segments)))


@dataclasses.dataclass
class Upload:
    video_id: str
    created: float
    tag: str  # a word of its title only it has, to find it by search
    acked: int = 0  # bytes the last 204 acknowledged
    sending: bool = False  # a PATCH is in flight
    done: float | None = None
    resumes: list[dict] = dataclasses.field(default_factory=list)  # after each failed PATCH: HEAD's offset


class Uploader(threading.Thread):
    """An uploader: tus creation, then PATCHes of `patch_bytes` sent slowly; after a failed
    PATCH, HEAD (retried until it answers) gives the offset to resume from."""

    def __init__(self, url: str, token: str, data: bytes, params: Params, recorder: Recorder,
                 stop: threading.Event, index: int):
        super().__init__(daemon=True, name=f"uploader-{index}")
        self.url, self.data, self.p, self.rec, self.stop, self.index = url, data, params, recorder, stop, index
        self.headers = {"Authorization": f"Bearer {token}"}
        self.uploads: list[Upload] = []

    def run(self) -> None:
        # Staggered, with jittered gaps: uploaders in step would all be between uploads
        # exactly while the transcodes of their last ones run.
        rng = random.Random(self.index)
        self.stop.wait(self.index * self.p.upload_gap_s * 1.5)
        with httpx.Client(timeout=60, headers=self.headers) as client:
            while not self.stop.is_set():
                self.upload_one(client)
                self.stop.wait(self.p.upload_gap_s * rng.uniform(0.5, 1.5))

    def create(self, client: httpx.Client, tag: str) -> str:
        while True:
            answer = self.rec.request(client, "upload", "POST", f"{self.url}/v1/videos", json={
                "title": f"node loss {tag}", "channel_id": "nodeloss", "size_bytes": len(self.data)})
            if answer is not None and answer.status_code == 201:
                return answer.json()["id"]
            time.sleep(0.2)

    def upload_one(self, client: httpx.Client) -> Upload:
        tag = f"nl{uuid.uuid4().hex[:10]}"
        upload = Upload(self.create(client, tag), self.rec.now(), tag)
        self.uploads.append(upload)
        url, offset = f"{self.url}/v1/uploads/{upload.video_id}", 0
        while offset < len(self.data):
            upload.sending = True
            answer = self.rec.request(client, "upload", "PATCH", url, upload=upload.video_id,
                                      content=self.body(offset), headers={
                                          **TUS, "Upload-Offset": str(offset), "Content-Type":
                                          "application/offset+octet-stream",
                                          "Content-Length": str(min(self.p.patch_bytes, len(self.data) - offset))})
            upload.sending = False
            if answer is not None and answer.status_code == 204:
                offset = upload.acked = int(answer.headers["Upload-Offset"])
                continue
            offset = self.resync(client, url, upload)
        upload.done = self.rec.now()
        return upload

    def body(self, offset: int):
        chunk = self.data[offset:offset + self.p.patch_bytes]
        pieces = 4
        step = -(-len(chunk) // pieces)
        for i in range(0, len(chunk), step):
            yield chunk[i:i + step]
            time.sleep(self.p.patch_s / pieces)

    def resync(self, client: httpx.Client, url: str, upload: Upload) -> int:
        while True:
            time.sleep(0.3)
            head = self.rec.request(client, "upload", "HEAD", url, upload=upload.video_id, headers=TUS)
            if head is not None and head.status_code == 200:
                offset = int(head.headers["Upload-Offset"])
                upload.resumes.append({"at_s": round(self.rec.now(), 3), "head_offset": offset,
                                       "acked_before": upload.acked})
                return offset


def percentile_ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def phase_stats(records: list[Record]) -> dict:
    """Per kind: requests, errors (no answer or 5xx), conflicts (409), p50 and p99 latency."""
    stats = {}
    for kind in KINDS:
        mine = [r for r in records if r.kind == kind]
        latencies = [r.end - r.start for r in mine]
        stats[kind] = {"requests": len(mine), "errors": sum(r.failed for r in mine),
                       "conflicts": sum(r.conflict for r in mine),
                       "p50_ms": percentile_ms(latencies, 50), "p99_ms": percentile_ms(latencies, 99)}
    return stats


def published_events(cfg: Config, video_ids: set[str], settle_s: float = 3.0, timeout_s: float = 60.0) -> dict:
    """The distinct `video.published` events of each video, read from the topic's start by a
    group of its own: one per video is READY exactly once (a redelivered result may repeat
    the same event; consumers dedupe it; a second READY would be a different one)."""
    from longtail_common.adapters import make_topic_bus

    bus = make_topic_bus(cfg)
    consumer = bus.consumer([TOPIC_VIDEO_PUBLISHED], f"nodeloss-check-{uuid.uuid4().hex[:8]}")
    found: dict[str, set[bytes]] = {vid: set() for vid in video_ids}
    deadline, quiet_since = time.monotonic() + timeout_s, time.monotonic()
    try:
        while time.monotonic() < deadline:
            messages = consumer.poll(timeout_s=1.0, max_records=500)
            if messages:
                quiet_since = time.monotonic()
            for message in messages:
                event = events_pb2.VideoPublished()
                event.ParseFromString(message.value)
                if event.video_id in found:
                    found[event.video_id].add(event.SerializeToString(deterministic=True))
            if all(found.values()) and time.monotonic() - quiet_since > settle_s:
                break
    finally:
        consumer.close()
        bus.close()
    return {vid: len(events) for vid, events in found.items()}


def unsearchable(client: httpx.Client, url: str, uploads: list[Upload], timeout_s: float = 20.0) -> list[str]:
    """The uploads that `GET /v1/search?q=<its tag>` through the fleet does not find in time."""
    missing = {u.video_id: u.tag for u in uploads}
    deadline = time.monotonic() + timeout_s
    while missing and time.monotonic() < deadline:
        for video_id, tag in list(missing.items()):
            answer = client.get(f"{url}/v1/search", params={"q": tag})
            if answer.status_code == 200 and video_id in [v["id"] for v in answer.json()["videos"]]:
                del missing[video_id]
        time.sleep(0.5)
    return sorted(missing)


def upload_whole(client: httpx.Client, url: str, data: bytes, title: str) -> str:
    created = client.post(f"{url}/v1/videos", json={"title": title, "channel_id": "nodeloss",
                                                   "size_bytes": len(data)})
    created.raise_for_status()
    video_id = created.json()["id"]
    patched = client.patch(f"{url}/v1/uploads/{video_id}", content=data, headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    patched.raise_for_status()
    return video_id


def wait_ready(client: httpx.Client, url: str, video_ids: list[str], timeout_s: float) -> dict[str, str]:
    """Each video's status once all are READY or FAILED, or when the time is up."""
    status: dict[str, str] = {vid: "" for vid in video_ids}
    deadline = time.monotonic() + timeout_s
    while True:
        for vid in video_ids:
            if status.get(vid) not in ("READY", "FAILED"):
                try:
                    answer = client.get(f"{url}/v1/videos/{vid}")
                    status[vid] = answer.json()["status"] if answer.status_code == 200 else f"HTTP {answer.status_code}"
                except httpx.HTTPError as exc:
                    status[vid] = type(exc).__name__
        if all(s in ("READY", "FAILED") for s in status.values()) or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


class WorkerWatch:
    """Asks each node's transcoder, over and over from a thread per node, what it is encoding;
    `encoding_now` gives the answers received in the last `fresh_s` seconds."""

    def __init__(self, nodes: dict, fresh_s: float = 0.5):
        self.fresh_s, self.answers = fresh_s, {name: 0 for name in nodes}
        self._latest: dict[str, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, args=(name, node), daemon=True, name=f"worker-{name}")
                         for name, node in nodes.items()]
        for thread in self._threads:
            thread.start()

    def _poll(self, name: str, node) -> None:
        status = tpb_grpc.TranscoderServiceStub(dial(node.addresses["transcoder-0"], node.cfg, "transcoder"))
        while not self._stop.is_set():
            try:
                encoding = status.GetWorkerStatus(tpb.GetWorkerStatusRequest(), timeout=3).current_video_id
            except Exception:  # noqa: BLE001 - a busy or dead worker: ask again
                self._stop.wait(0.05)
                continue
            self._latest[name] = (encoding, time.monotonic())
            self.answers[name] += 1
            self._stop.wait(0.01)

    def encoding_now(self) -> dict[str, str]:
        now = time.monotonic()
        return {name: (video if now - at <= self.fresh_s else "")
                for name, (video, at) in list(self._latest.items())}

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)


class Scenario:
    """One run: seed, load, kill, recover, drain, check (see the module docstring)."""

    def __init__(self, fleet: Fleet, clip: pathlib.Path, params: Params, token: str, log=print):
        self.fleet, self.p, self.token, self.log = fleet, params, token, log
        self.data = clip.read_bytes()
        self.rec = Recorder()
        self.stop_load = threading.Event()
        self.client = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"})
        self.marks: dict[str, float] = {}
        self.watchers: list[Watcher] = []
        self.uploaders: list[Uploader] = []

    def run(self) -> dict:
        url = self.fleet.url
        catalogue = [upload_whole(self.client, url, self.data, f"catalogue {i}") for i in range(self.p.catalogue)]
        seeded = wait_ready(self.client, url, catalogue, self.p.ready_wait_s)
        if set(seeded.values()) != {"READY"}:
            raise RuntimeError(f"the catalogue did not become READY: {seeded}")
        self.marks["load_start"] = self.rec.now()
        self.log(f"catalogue READY at {self.rec.now():.1f}s: {len(catalogue)} videos; load starts")
        self.watchers = [Watcher(url, catalogue, self.rec, self.stop_load, self.p.think_s, i)
                         for i in range(self.p.watchers)]
        self.uploaders = [Uploader(url, self.token, self.data, self.p, self.rec, self.stop_load, i)
                          for i in range(self.p.uploaders)]
        for thread in [*self.watchers, *self.uploaders]:
            thread.start()
        try:
            time.sleep(self.p.before_s)
            kill = self.kill_mid_work()
            recovery = self.recover(kill)
            time.sleep(self.p.after_s)
        finally:
            self.stop_load.set()
            for thread in [*self.watchers, *self.uploaders]:
                thread.join(timeout=120)
        self.marks["load_end"] = self.rec.now()
        return self.report(catalogue, kill, recovery)

    def uploads(self) -> list[Upload]:
        return [upload for uploader in self.uploaders for upload in uploader.uploads]

    def kill_mid_work(self) -> dict:
        """Waits for a moment when a node's transcoder is encoding while the balancer has a tus
        PATCH in flight on that node, of an upload part way; SIGKILLs that node's every
        process then (`Params.victim`, if set, is the only candidate). Encodes of the short
        clip are the rare state, so each node's worker is asked without pause by a thread of
        its own; if half the wait passes without that moment (a loaded machine), an encode on
        the node and any upload part way will do (`patch_in_flight` is then empty)."""
        workers = WorkerWatch({name: node for name, node in self.fleet.nodes.items() if self.p.victim in ("", name)})
        began, seen = time.monotonic(), {"polls": 0, "sending": 0, "encoding": 0, "patch_on_node": 0}
        try:
            while time.monotonic() < began + self.p.kill_wait_s:
                seen["polls"] += 1
                uploads = [u for u in self.uploads()  # part way, and not on its last PATCH
                           if u.done is None and 0 < u.acked < len(self.data) - self.p.patch_bytes]
                part_way, sending = [u.video_id for u in uploads], [u.video_id for u in uploads if u.sending]
                seen["sending"] += bool(sending)
                relaxed = time.monotonic() > began + self.p.kill_wait_s / 2
                for name, encoding in workers.encoding_now().items():
                    on_node = self.fleet.balancer.sessions_on(name, "uploads")
                    seen["encoding"] += bool(encoding)
                    seen["patch_on_node"] += bool(on_node)
                    if encoding and ((on_node and sending) or (relaxed and part_way)):
                        self.log(f"moments sampled before the kill: {seen}, worker answers {workers.answers}")
                        return self.kill(name, encoding, sending if on_node else [], time.monotonic() - began)
                time.sleep(0.02)
        finally:
            workers.stop()
        answered = collections.Counter((r.kind, r.status) for r in self.rec.snapshot())
        raise TimeoutError(f"no moment with a transcode and an upload under way on one node in "
                           f"{self.p.kill_wait_s}s: {seen}, worker answers {workers.answers}, requests by "
                           f"(kind, status) {dict(answered)}, uploads {[(u.acked, u.done) for u in self.uploads()]}")

    def kill(self, name: str, encoding: str, sending: list[str], waited_s: float) -> dict:
        self.marks["kill"] = self.rec.now()
        pids = self.fleet.kill_node(name)
        self.marks["killed"] = self.rec.now()  # every process gone (finding them all takes a moment)
        in_progress = [u.video_id for u in self.uploads() if u.done is None]
        self.log(f"killed {name} ({len(pids)} processes) at {self.marks['kill']:.1f}s: "
                 f"transcoding {encoding}, uploads in progress {in_progress}")
        return {"node": name, "at_s": round(self.marks["kill"], 3), "processes": len(pids),
                "kill_took_s": round(self.marks["killed"] - self.marks["kill"], 3),
                "waited_for_the_moment_s": round(waited_s, 1), "transcoding": encoding,
                "uploads_in_progress": in_progress, "patch_in_flight": sending}

    def recover(self, kill: dict) -> dict:
        """Until the balancer took the victim out, the transcode it was running is READY
        (redelivered) and every upload in progress at the kill took bytes again."""
        t_kill, found = self.marks["kill"], {}
        deadline = time.monotonic() + self.p.recover_wait_s
        while time.monotonic() < deadline and len(found) < 3:
            now = self.rec.now()
            if "balancer_out" not in found and self.fleet.balancer.server_states()[kill["node"]].startswith("DOWN"):
                found["balancer_out"] = now
            if "transcode_ready" not in found:
                status = wait_ready(self.client, self.fleet.url, [kill["transcoding"]], 0).get(kill["transcoding"])
                if status == "READY":
                    found["transcode_ready"] = now
                elif status == "FAILED":
                    raise RuntimeError(f"the interrupted transcode of {kill['transcoding']} FAILED")
            resumed = self.uploads_resumed(kill["uploads_in_progress"], t_kill)
            if resumed is not None:
                found["uploads_resumed"] = resumed
            time.sleep(0.2)
        missing = {"balancer_out", "transcode_ready", "uploads_resumed"} - set(found)
        if missing:
            raise TimeoutError(f"no recovery in {self.p.recover_wait_s}s: {sorted(missing)} not seen")
        self.marks["recovered"] = max(found.values())
        return {f"{name}_s": round(at - t_kill, 2) for name, at in found.items()}

    def uploads_resumed(self, video_ids: list[str], t_kill: float) -> float | None:
        """When the last of these uploads had a PATCH accepted that started after the kill."""
        records, done = self.rec.snapshot(), {u.video_id: u.done for u in self.uploads()}
        times = []
        for vid in video_ids:
            accepted = [r.end for r in records if r.upload == vid and r.status == 204 and r.start > t_kill]
            if done[vid] is not None:  # finished by the PATCH in flight at the kill, if by none after it
                accepted.append(done[vid])
            if not accepted:
                return None
            times.append(min(accepted))
        return max(times, default=t_kill)

    def report(self, catalogue: list[str], kill: dict, recovery: dict) -> dict:
        uploads = self.uploads()
        ids = [u.video_id for u in uploads]
        status = wait_ready(self.client, self.fleet.url, ids, self.p.ready_wait_s)
        events = published_events(self.fleet.cfg, set(ids))
        records = self.rec.snapshot()
        t_kill, t_recovered = self.marks["kill"], self.marks["recovered"]
        phases = {"before": [r for r in records if self.marks["load_start"] <= r.start < t_kill],
                  "during": [r for r in records if t_kill <= r.start < t_recovered],
                  "after": [r for r in records if r.start >= t_recovered]}
        problems = [{"kind": r.kind, "start_s": round(r.start, 3), "end_s": round(r.end, 3), "status": r.status,
                     "node": r.node, "error": r.error[:160], "upload": r.upload,
                     "in_flight_at_kill": r.start < self.marks["killed"] and r.end >= t_kill}
                    for r in records if r.failed or r.conflict]
        return {
            "params": dataclasses.asdict(self.p),
            "clip_bytes": len(self.data),
            "kill": kill,
            "recovery": {**recovery, "total_s": round(t_recovered - t_kill, 2)},
            "phases": {name: {"seconds": round(self.phase_span(name), 2), **phase_stats(rs)}
                       for name, rs in phases.items()},
            "errors": problems,
            "uploads": self.upload_report(uploads, status, events),
            "catalogue": catalogue,
        }

    def phase_span(self, name: str) -> float:
        bounds = {"before": ("load_start", "kill"), "during": ("kill", "recovered"), "after": ("recovered", "load_end")}
        start, end = bounds[name]
        return self.marks[end] - self.marks[start]

    def upload_report(self, uploads: list[Upload], status: dict, events: dict) -> dict:
        from longtail_common.adapters import make_object_store

        objects = make_object_store(self.fleet.cfg)
        digest = hashlib.sha256(self.data).hexdigest()
        corrupt = []
        for upload in uploads:
            raw = objects.get_bytes(RAW_BUCKET, f"{upload.video_id}/original")
            if hashlib.sha256(raw).hexdigest() != digest:
                corrupt.append(upload.video_id)
        return {
            "started": len(uploads),
            "ready": sum(status.get(u.video_id) == "READY" for u in uploads),
            "not_ready": {vid: s for vid, s in status.items() if s != "READY"},
            "ready_events": {"missing": [vid for vid, n in events.items() if n == 0],
                             "duplicated": {vid: n for vid, n in events.items() if n > 1}},
            "raw_differs_from_sent": corrupt,
            "not_found_by_search": unsearchable(self.client, self.fleet.url, uploads),
            "resumed": {u.video_id: u.resumes for u in uploads if u.resumes},
        }


def summary(report: dict) -> str:
    """The report in a few lines (printed by the test and the command)."""
    lines = [f"node loss: killed {report['kill']['node']} ({report['kill']['processes']} processes) "
             f"while transcoding {report['kill']['transcoding']} and uploading {report['kill']['uploads_in_progress']}",
             "recovery (s after the kill): " + ", ".join(f"{k} {v}" for k, v in report["recovery"].items())]
    for phase, stats in report["phases"].items():
        cells = [f"{kind} {s['requests']} req {s['errors']} err {s['conflicts']} 409 p99 {s['p99_ms']} ms"
                 for kind, s in stats.items() if kind != "seconds" and s["requests"]]
        lines.append(f"{phase:>6} ({stats['seconds']} s): " + "; ".join(cells))
    uploads = report["uploads"]
    lines.append(f"uploads: {uploads['started']} started, {uploads['ready']} READY, "
                 f"{len(uploads['resumed'])} resumed after a failed PATCH, "
                 f"READY events missing {uploads['ready_events']['missing']} duplicated "
                 f"{uploads['ready_events']['duplicated']}, bytes differing {uploads['raw_differs_from_sent']}, "
                 f"not found by search {uploads['not_found_by_search']}")
    lines += [f"  {e['kind']} {e['status']} at {e['start_s']}-{e['end_s']}s node={e['node'] or '?'} "
              f"in flight at kill: {e['in_flight_at_kill']}: {e['error'][:100]}" for e in report["errors"]]
    return "\n".join(lines)


def fleet_config(cfg: Config) -> Config:
    """The scenario's settings on top of the backends' config."""
    cfg = copy.deepcopy(cfg)
    tag = uuid.uuid4().hex[:8]
    cfg.scylla.keyspace = f"longtail_nodeloss_{tag}"
    cfg.s3.bucket_prefix = f"nl{tag}-"
    cfg.limits.uploads_per_day = 0  # one account makes every upload
    return cfg


def run_scenario(backends_cfg: Config, root: pathlib.Path, params: Params | None = None, log=print) -> dict:
    """Starts the fleet on `backends_cfg`'s servers under `root`, runs the scenario, stops the
    fleet; returns the report (with the fleet's start-up time)."""
    params = params or Params()
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    clip = root / "clip.mp4"
    make_test_clip(str(clip), seconds=params.clip_seconds, height=params.clip_height)
    fleet = Fleet(fleet_config(backends_cfg), root / "fleet", nodes=2)
    fleet.start()
    log(f"fleet up ({fleet.timings}) behind {fleet.url}: " + ", ".join(
        f"{name} gateway :{node.gateway_port}" for name, node in fleet.nodes.items()))
    try:
        token = local_api_token(fleet.cfg, "nodeloss")
        scenario = Scenario(fleet, clip, params, token, log)
        report = scenario.run()
    finally:
        stopping = time.monotonic()
        fleet.stop()
        fleet.timings["stop_s"] = round(time.monotonic() - stopping, 1)
    report["fleet_startup"] = fleet.timings
    report["logs"] = str(root / "fleet")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before-s", type=float, default=10.0)
    parser.add_argument("--after-s", type=float, default=15.0)
    parser.add_argument("--watchers", type=int, default=4)
    parser.add_argument("--uploaders", type=int, default=2)
    parser.add_argument("--config", help="the backends of running servers (`longtail services start --dir DIR`: "
                                          "DIR/longtail.toml) instead of starting a set")
    parser.add_argument("--output", default=str(RESULT))
    args = parser.parse_args()
    from longtail_common.config import load_config
    from longtail_testservers import cluster

    params = Params(watchers=args.watchers, uploaders=args.uploaders, before_s=args.before_s, after_s=args.after_s)
    with tempfile.TemporaryDirectory(prefix="node-loss-") as tmp:
        if args.config:
            report = run_scenario(load_config(args.config, env={}), pathlib.Path(tmp) / "run", params)
        else:
            servers = cluster.start_all(pathlib.Path(tmp) / "servers")
            try:
                report = run_scenario(servers["config"], pathlib.Path(tmp) / "run", params)
            finally:
                cluster.stop_all(pathlib.Path(tmp) / "servers")
    report["machine"] = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": os.getloadavg()}
    report["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report.pop("logs", None)
    pathlib.Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    print(summary(report))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
