"""Prometheus and Alertmanager from Debian's packages (`make prometheus`) on loopback: the
platform's processes scraped and the repo's alert rules evaluated, for the live tests and
`longtail services start`.

Prometheus runs a configuration made from deploy/observability/prometheus.yml (the one compose
runs): its rule files (or the copies a test passes) and its file-SD job, pointed at the
launcher's targets file (DATA_DIR/run/prometheus_targets.json), alerting to this Alertmanager,
at the intervals asked for (short ones in tests). Alertmanager runs deploy/observability/
alertmanager.yml with clustering off (one instance, no gossip port).
"""
from __future__ import annotations

import copy
import os
import pathlib
import shutil
import time
import urllib.request
from dataclasses import dataclass

import yaml

from longtail_cli.launcher import free_port  # one port allocator for the servers and the services
from longtail_testservers.errors import TestServerError
from longtail_testservers.jars import REPO_ROOT
from longtail_testservers.process import HOST, JavaServer, retry_on_bind

OBSERVABILITY = REPO_ROOT / "deploy" / "observability"
PROMETHEUS_YML = OBSERVABILITY / "prometheus.yml"
ALERTMANAGER_YML = OBSERVABILITY / "alertmanager.yml"
# Debian names the Alertmanager binary prometheus-alertmanager; upstream tarballs, alertmanager.
BINARIES = {"prometheus": ("prometheus",), "alertmanager": ("prometheus-alertmanager", "alertmanager")}
MISSING_PROMETHEUS_PREFIX = "Prometheus and Alertmanager are needed for the live metrics tests: "
START_DEADLINE_S = 60.0


def binary(name: str) -> str | None:
    """The path of server `name`'s binary (prometheus | alertmanager), None when not installed."""
    return next((path for candidate in BINARIES[name] if (path := shutil.which(candidate))), None)


def prometheus_available() -> tuple[bool, str]:
    """(True, versions) when both binaries are installed, else (False, what to install)."""
    missing = [name for name in BINARIES if binary(name) is None]
    if missing:
        return False, (f"no {' or '.join('/'.join(BINARIES[m]) for m in missing)} on PATH "
                       "(`make prometheus` installs Debian's prometheus and prometheus-alertmanager)")
    return True, f"{binary('prometheus')}, {binary('alertmanager')}"


@dataclass
class HttpServer(JavaServer):
    """A server binary (not a JVM) answering HTTP on `port`; `/-/ready` says it is up."""

    host: str = HOST
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def check(self) -> None:
        with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as reply:
            if reply.status != 200:
                raise TestServerError(f"{self.name} is not ready ({reply.status})")

    def launch(self, argv: list[str], deadline_s: float) -> None:
        started = time.monotonic()
        self.spawn(argv)
        try:
            self.wait_ready(self.check, deadline_s, self.port)
        except TestServerError as exc:
            exc.server = self
            raise
        self.startup_s = round(time.monotonic() - started, 2)


@dataclass
class AlertmanagerServer(HttpServer):
    kind = "alertmanager"


@dataclass
class PrometheusServer(HttpServer):
    kind = "prometheus"


def prometheus_config(targets_files: list[str], alertmanager: str, scrape_interval: str = "15s",
                      evaluation_interval: str = "15s", rule_files: list[str] | None = None) -> dict:
    """deploy/observability/prometheus.yml for this machine: its file-SD job(s) reading
    `targets_files`, its rules (or `rule_files`) by absolute path, `alertmanager` (host:port)."""
    repo = yaml.safe_load(PROMETHEUS_YML.read_text())
    jobs = [copy.deepcopy(job) for job in repo["scrape_configs"] if job.get("file_sd_configs")]
    if not jobs:
        raise TestServerError(f"{PROMETHEUS_YML} has no file_sd_configs job for the launcher's targets")
    for job in jobs:
        for sd in job["file_sd_configs"]:
            sd["files"] = list(targets_files)
            sd["refresh_interval"] = scrape_interval  # fsnotify sees a rewrite at once; this is the fallback
    rules = rule_files if rule_files is not None else sorted(
        str(path) for pattern in repo["rule_files"] for path in PROMETHEUS_YML.parent.glob(pattern))
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": rules,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": jobs,
    }


def start_alertmanager(dir: str | os.PathLike, deadline_s: float = START_DEADLINE_S) -> AlertmanagerServer:
    """Alertmanager with the repo's config, data under `dir`; returns once it is ready."""
    root = pathlib.Path(dir).resolve()
    exe = binary("alertmanager")
    if exe is None:
        raise TestServerError(MISSING_PROMETHEUS_PREFIX + prometheus_available()[1])

    def once() -> AlertmanagerServer:
        server = AlertmanagerServer(name="alertmanager", dir=root, port=free_port())
        server.launch([exe, f"--config.file={ALERTMANAGER_YML}", f"--storage.path={root / 'data'}",
                       f"--web.listen-address={HOST}:{server.port}", "--cluster.listen-address="], deadline_s)
        return server

    return retry_on_bind(once)


def start_prometheus(dir: str | os.PathLike, targets_files: list[str], alertmanager: str,
                     scrape_interval: str = "15s", evaluation_interval: str = "15s",
                     rule_files: list[str] | None = None, deadline_s: float = START_DEADLINE_S) -> PrometheusServer:
    """Prometheus scraping the processes listed in `targets_files` (launcher file SD) and
    alerting to `alertmanager` (host:port); config and data under `dir`."""
    root = pathlib.Path(dir).resolve()
    exe = binary("prometheus")
    if exe is None:
        raise TestServerError(MISSING_PROMETHEUS_PREFIX + prometheus_available()[1])
    root.mkdir(parents=True, exist_ok=True)
    for path in targets_files:  # file SD watches the folder: it must exist
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    config = prometheus_config(targets_files, alertmanager, scrape_interval, evaluation_interval, rule_files)
    (root / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def once() -> PrometheusServer:
        server = PrometheusServer(name="prometheus", dir=root, port=free_port())
        server.launch([exe, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
                       f"--web.listen-address={HOST}:{server.port}", "--storage.tsdb.retention.time=7d",
                       "--enable-feature=exemplar-storage"],  # the trace ids on histogram buckets
                      deadline_s)
        return server

    return retry_on_bind(once)


def start_observability(dir: str | os.PathLike, data_dir: str | os.PathLike,
                        interval: str = "5s") -> dict[str, HttpServer]:
    """Alertmanager, then Prometheus scraping the platform whose data dir is `data_dir`
    (whatever `longtail up --data-dir` it runs later: file SD waits for the file)."""
    root = pathlib.Path(dir).resolve()
    alertmanager = start_alertmanager(root / "alertmanager")
    targets = pathlib.Path(data_dir).resolve() / "run" / "prometheus_targets.json"
    try:
        prometheus = start_prometheus(root / "prometheus", [str(targets)], f"{HOST}:{alertmanager.port}",
                                      scrape_interval=interval, evaluation_interval=interval)
    except TestServerError:
        alertmanager.stop()
        raise
    return {"prometheus": prometheus, "alertmanager": alertmanager}
