"""`longtail status`: the single-machine operator's one screen on a running `longtail up`.

Everything comes from what the platform already publishes under its data dir, read live:

* services: DATA_DIR/run/services.json (the launcher's supervisor: state, restarts, last
  exit) and a health check now (grpc.health.v1; the gateway: /healthz);
* topic lag per consumer group and dead-lettered messages: each process's /metrics, found
  through the launcher's Prometheus targets (DATA_DIR/run/prometheus_targets.json); counters
  count since each process started, and the `dead-lettered` log lines count them all;
* videos per status: metadata's BatchGetVideos for every video id in the local traces
  (DATA_DIR/traces; metadata has no listing across channels);
* the last errors: ERROR lines of the JSON logs (DATA_DIR/logs), with their trace ids.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import time
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from longtail_common.config import Config
from longtail_common.grpc_server import dial

TIMEOUT_S = 2.0
LOG_TAIL_BYTES = 512 * 1024  # of each log: enough for the last errors, bounded on a big log
_VIDEO_ID = re.compile(r'"longtail\.video_id":"([^"]+)"')


def _healthy(name: str, address: str, cfg: Config) -> bool:
    """Whether the process answers its health check now."""
    if name.split("-")[0] == "gateway":  # a gateway process: HTTP on its own address
        try:
            with urllib.request.urlopen(f"http://{address}/healthz", timeout=TIMEOUT_S) as reply:
                return reply.status == 200
        except OSError:
            return False
    # Over the mesh (mutual TLS unless it is off), as this machine's admin identity.
    with dial(address, cfg, name.split("-")[0]) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def services(run_dir: pathlib.Path, cfg: Config) -> dict:
    """The launcher's view of each process, plus a health check made now."""
    try:
        document = json.loads((run_dir / "services.json").read_text())
    except (OSError, ValueError):
        return {"launcher": None, "services": {}}
    rows = {}
    for name, state in sorted(document["services"].items()):
        live = state["state"] == "running" and _healthy(name, state["address"], cfg)
        rows[name] = {**state, "healthy": live}
    launcher = {"pid": document["launcher_pid"], "alive": _pid_alive(document["launcher_pid"]),
                "updated_at": document["updated_at"]}
    return {"launcher": launcher, "services": rows}


def scrape(run_dir: pathlib.Path) -> list:
    """The metric families of every process the launcher lists as a Prometheus target."""
    try:
        groups = json.loads((run_dir / "prometheus_targets.json").read_text())
    except (OSError, ValueError):
        return []
    families = []
    for group in groups:
        for target in group["targets"]:
            try:
                with urllib.request.urlopen(f"http://{target}/metrics", timeout=TIMEOUT_S) as reply:
                    families += list(text_string_to_metric_families(reply.read().decode()))
            except (OSError, ValueError):
                continue  # a process that is down: the services section says so
    return families


def _sum_by_topic_group(families: list, family_name: str, sample_name: str) -> list[dict]:
    totals: dict[tuple[str, str], float] = {}
    for family in families:
        if family.name != family_name:
            continue
        for sample in family.samples:
            if sample.name == sample_name:
                key = (sample.labels["topic"], sample.labels["group"])
                totals[key] = totals.get(key, 0) + sample.value
    return [{"topic": t, "group": g, "value": int(v)} for (t, g), v in sorted(totals.items())]


def _log_tail(path: pathlib.Path) -> list[str]:
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
        return fh.read().decode("utf-8", "replace").splitlines()


def log_errors(logs_dir: pathlib.Path, last: int = 8) -> tuple[list[dict], int]:
    """(the last `last` ERROR lines of every process's log, oldest first; how many of the
    lines read are dead letters)."""
    errors = []
    for path in sorted(logs_dir.glob("*.log")):
        for line in _log_tail(path):
            if '"ERROR"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") == "ERROR":
                errors.append({"ts": entry.get("ts", 0), "process": path.stem, "msg": entry.get("msg", ""),
                               "trace_id": entry.get("trace_id", ""), "video_id": entry.get("video_id", "")})
    errors.sort(key=lambda e: e["ts"])
    dead_letters = sum(1 for e in errors if e["msg"].startswith("dead-lettered "))
    return errors[-last:], dead_letters


def videos_by_status(traces_dir: pathlib.Path, metadata_address: str, cfg: Config) -> dict[str, int] | None:
    """Videos per status, for every video id the local traces name (None: metadata unreachable)."""
    from longtail.metadata.v1 import metadata_service_pb2 as mpb
    from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
    from longtail.metadata.v1 import video_pb2

    ids: set[str] = set()
    for path in traces_dir.glob("*.jsonl"):
        ids |= set(_VIDEO_ID.findall(path.read_text(encoding="utf-8", errors="replace")))
    counts: dict[str, int] = {}
    ordered = sorted(ids)
    with dial(metadata_address, cfg, "metadata") as channel:
        stub = mpb_grpc.MetadataServiceStub(channel)
        for start in range(0, len(ordered), 1000):
            try:
                reply = stub.BatchGetVideos(mpb.BatchGetVideosRequest(ids=ordered[start:start + 1000]),
                                            timeout=TIMEOUT_S * 5)
            except grpc.RpcError:
                return None
            for video in reply.videos:
                status = video_pb2.VideoStatus.Name(video.status).removeprefix("VIDEO_STATUS_")
                counts[status] = counts.get(status, 0) + 1
    return counts


def collect(cfg: Config) -> dict:
    """Everything `longtail status` shows, as one JSON-able dict."""
    data_path = cfg.data_path
    run_dir = data_path / "run"
    report = {"data_dir": str(data_path), "at": time.time(), **services(run_dir, cfg)}
    families = scrape(run_dir)
    report["topic_lag"] = _sum_by_topic_group(families, "longtail_topic_lag", "longtail_topic_lag")
    report["dead_lettered"] = _sum_by_topic_group(families, "longtail_dead_lettered_messages",
                                                  "longtail_dead_lettered_messages_total")
    report["last_errors"], report["dead_letter_log_lines"] = log_errors(data_path / "logs")
    metadata = report["services"].get("metadata", {})
    report["videos"] = (videos_by_status(data_path / "traces", metadata["address"], cfg)
                        if metadata.get("healthy") else None)
    return report


def _ago(epoch: float | None, now: float) -> str:
    return "-" if not epoch else f"{now - epoch:.0f}s ago"


def render(report: dict) -> str:
    """`report` as one screen of text."""
    now, lines = report["at"], [f"Longtail at {report['data_dir']}"]
    launcher = report["launcher"]
    if launcher is None:
        return lines[0] + "\n  no launcher state (is `longtail up` running with this data dir?)"
    lines.append(f"launcher pid {launcher['pid']} {'running' if launcher['alive'] else 'GONE'}, "
                 f"state written {_ago(launcher['updated_at'], now)}")
    lines.append(f"\n{'process':<14} {'state':<10} {'health':<9} {'restarts':>8}  {'pid':>7}  last exit")
    for name, s in report["services"].items():
        health = "SERVING" if s["healthy"] else "DOWN"
        exit_ = f"{s['last_exit_reason']} {_ago(s['last_exit_at'], now)}" if s["last_exit_at"] else "-"
        lines.append(f"{name:<14} {s['state']:<10} {health:<9} {s['restarts']:>8}  {s['pid']:>7}  {exit_}")
    lines.append("\ntopic lag (messages not yet done, per consumer group)")
    lines += [f"  {row['group']:<18} {row['topic']:<22} {row['value']:>6}" for row in report["topic_lag"]]
    if not report["topic_lag"]:
        lines.append("  (no consumer reports a lag)")
    dead = sum(row["value"] for row in report["dead_lettered"])
    lines.append(f"\ndead-lettered: {dead} since the processes started, "
                 f"{report['dead_letter_log_lines']} `dead-lettered` lines in the logs")
    lines += [f"  {row['group']:<18} from {row['topic']:<22} {row['value']:>6}"
              for row in report["dead_lettered"] if row["value"]]
    videos = report["videos"]
    lines.append("\nvideos: " + ("metadata unreachable" if videos is None else
                                 ", ".join(f"{k} {v}" for k, v in sorted(videos.items())) or "none"))
    lines.append("\nlast errors")
    for e in report["last_errors"]:
        when = time.strftime("%H:%M:%S", time.localtime(e["ts"]))
        lines.append(f"  {when} {e['process']:<13} trace {e['trace_id'] or '-':<32}  {e['msg'][:100]}")
    if not report["last_errors"]:
        lines.append("  (none)")
    return "\n".join(lines)
