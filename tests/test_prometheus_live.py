"""A real Prometheus and Alertmanager on the running platform (embedded backends, local log).

Prometheus (Debian's binary, as `longtail services start` runs it) finds every process the
launcher starts through the launcher's file-SD targets, scrapes them every second and
evaluates the repo's rules, copied with every `for:` cut to a few seconds (the copies are
made here from the real files, nothing else changes), alerting to Alertmanager. Then:

* every target is up, with the job and instance labels the rules and dashboard expect;
* after uploads and watches, every PromQL query of the provisioned Grafana dashboard returns
  data through the HTTP API (each copy of a repeated panel too), and histogram buckets carry
  exemplars naming traces the processes wrote;
* the transcoder is stopped with uploads queued: its alerts (the process down, its consumer
  group without members, the group's backlog growing) go pending, fire and reach
  Alertmanager; it is started again (on a new metrics port, found without a config change)
  and they resolve. The timeline is printed (`-s` shows it), with `longtail status`;
* a process the supervisor restarts (new metrics port) and an added transcoder are scraped
  where they are, and the restart counts for ServiceFlapping.

Without the binaries (`make prometheus`), skipped locally and failed in CI.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from longtail_cli.cli import make_test_clip, upload_file, wait_ready
from longtail_cli.launcher import Platform, free_port, prometheus_job
from longtail_common.config import Config
from longtail_common.ports import CONSUMER_GROUPS, TOPIC_TRANSCODE_REQUESTS as TRANSCODE_TOPIC
from tests.auth_helpers import bearer
from longtail_testservers.prometheus import (
    PROMETHEUS_YML,
    prometheus_available,
    start_alertmanager,
    start_prometheus,
)

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "observability" / "grafana" / "dashboards" / "longtail.json"
SCRAPE_INTERVAL_S = 1
FOR_IN_TESTS = "5s"  # every alert's `for:` in the test copy of the rules
TRANSCODER = "transcoder-0"
# What stopping the transcoder with uploads queued raises: its process is gone, its consumer
# group has no member, and the group's backlog (read from outside it by upload_svc) grows
# past TopicLagGrowing's threshold of 10 messages.
EXPECTED_ALERTS = {("ServiceDown", (("job", "transcoder"),)),
                   ("TopicConsumersGone", (("group", "transcoder"),)),
                   ("TopicLagGrowing", (("group", "transcoder"), ("topic", "transcode.requests")))}
QUEUED_UPLOADS = 11


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").strip():
        pytest.fail(f"{reason} (CI is set, so a missing tool fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def rules_with_short_for(dst: pathlib.Path) -> list[str]:
    """The rule files prometheus.yml loads, each alert's `for:` cut to FOR_IN_TESTS."""
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    patterns = yaml.safe_load(PROMETHEUS_YML.read_text())["rule_files"]
    for path in sorted(p for pattern in patterns for p in PROMETHEUS_YML.parent.glob(pattern)):
        document = yaml.safe_load(path.read_text())
        for group in document["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = FOR_IN_TESTS
        (dst / path.name).write_text(yaml.safe_dump(document, sort_keys=False))
        written.append(str(dst / path.name))
    return written


@dataclasses.dataclass
class Live:
    platform: Platform
    prometheus_url: str
    alertmanager_url: str
    started: float
    tmp: pathlib.Path

    def query(self, expr: str) -> list[dict]:
        reply = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": expr}, timeout=30).json()
        assert reply["status"] == "success", f"{expr}: {reply}"
        return reply["data"]["result"]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    ok, reason = prometheus_available()
    if not ok:
        _unavailable(reason)
    root = tmp_path_factory.mktemp("prometheus-live")
    cfg = Config(data_dir=str(root / "data"))
    alertmanager = start_alertmanager(root / "alertmanager")
    prometheus = None
    platform = Platform(cfg, gateway_port=free_port(), transcoder_workers=1)
    try:
        prometheus = start_prometheus(
            root / "prometheus", [str(platform.targets_file)], f"127.0.0.1:{alertmanager.port}",
            scrape_interval=f"{SCRAPE_INTERVAL_S}s", evaluation_interval=f"{SCRAPE_INTERVAL_S}s",
            rule_files=rules_with_short_for(root / "rules"))
        started = time.time()
        platform.start(timeout_s=120)
        live = Live(platform, prometheus.url, alertmanager.url, started, root)
        _wait_until_seen(live)
        yield live
    finally:
        platform.stop()
        if prometheus is not None:
            prometheus.stop()
        alertmanager.stop()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    make_test_clip(str(path), seconds=3, height=240)
    return str(path)


def _eventually(check, timeout_s: float, interval_s: float = 1.0):
    """`check()`'s first truthy result, or its last falsy one after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval_s)


def _unseen(live: Live) -> list[str]:
    """What the fault test's alerts need Prometheus to have seen before the fault, missing:
    every process up (ServiceDown on a vanished job looks back at `up`), every consumer
    group with a member, and some seconds of the transcoder group's lag (TopicLagGrowing's
    deriv needs the backlog's rise, not only its top)."""
    up = {r["metric"]["instance"] for r in live.query("up == 1")}
    missing = [f"{name} not scraped up" for name in live.platform.procs if name not in up]
    members = {r["metric"]["group"] for r in live.query("group:longtail_consumer_group_members:max >= 1")}
    missing += [f"group {group} without a member" for group in CONSUMER_GROUPS if group not in members]
    lag = f'count_over_time(topic_group:longtail_topic_lag:max{{group="transcoder", topic="{TRANSCODE_TOPIC}"}}[5m]) >= 5'
    if not live.query(lag):
        missing.append(f"fewer than 5 samples of the transcoder group's lag on {TRANSCODE_TOPIC}")
    return missing


def _wait_until_seen(live: Live) -> None:
    """Every test may run alone: the fixture returns once Prometheus has seen the platform
    settled (`_unseen`), not merely started."""
    _eventually(lambda: not _unseen(live), timeout_s=90)
    missing = _unseen(live)
    assert not missing, f"Prometheus has not seen the platform settle: {missing}"


def test_every_process_is_discovered_and_scraped(live):
    expected = {name: prometheus_job(name) for name in live.platform.procs}

    def scraped() -> dict[str, tuple[str, str]]:
        reply = httpx.get(f"{live.prometheus_url}/api/v1/targets", timeout=10).json()
        return {t["labels"]["instance"]: (t["labels"]["job"], t["health"]) for t in reply["data"]["activeTargets"]}

    want = {name: (job, "up") for name, job in expected.items()}
    _eventually(lambda: scraped() == want, timeout_s=60)
    assert scraped() == want
    targets = json.loads(live.platform.targets_file.read_text())
    states = live.platform.service_states()
    assert {g["labels"]["instance"]: g["targets"] for g in targets} == {
        name: [states[name]["metrics_address"]] for name in expected}


# -- the dashboard -------------------------------------------------------------------------


def _dashboard_queries() -> list[tuple[str, str, str | None]]:
    """(panel title, expr, the variable the panel repeats over or None) for every query."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            if p["type"] == "row" or p.get("datasource", {}).get("type") != "prometheus":
                continue
            queries += [(p["title"], t["expr"], p.get("repeat")) for t in p["targets"]]
    return queries


def _variables() -> dict[str, tuple[str, str, str]]:
    """Each template variable: (metric, label it lists, its value for All)."""
    dashboard = json.loads(DASHBOARD.read_text())
    out = {}
    for var in dashboard["templating"]["list"]:
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        metric, label = query.removeprefix("label_values(").removesuffix(")").replace(" ", "").split(",")
        out[var["name"]] = (metric, label, var["allValue"])
    return out


def _panel_runs(live: Live, window_s: int) -> list[tuple[str, str]]:
    """(what, expr) to run: variables at All (the dashboard's default), a repeated panel once
    per value of its variable (as Grafana draws it), `$__rate_interval` the test's duration."""
    variables = _variables()
    runs = []
    for title, expr, repeat in _dashboard_queries():
        expr = expr.replace("$__rate_interval", f"{window_s}s")
        values = [None]
        if repeat:
            metric, label, _ = variables[repeat]
            reply = httpx.get(f"{live.prometheus_url}/api/v1/label/{label}/values",
                              params={"match[]": metric}, timeout=10).json()
            values = reply["data"]
        for value in values:
            text = expr
            for name, (_, _, all_value) in variables.items():
                chosen = value if name == repeat else all_value
                text = text.replace(f"${name}", chosen.replace("\\", "\\\\").replace('"', '\\"'))
            runs.append((title if value is None else f"{title} [{repeat}={value}]", text))
    return runs


def _has_data(result: list[dict]) -> bool:
    """At least one series with a number (a quantile of no requests is NaN: an empty graph)."""
    return any(math.isfinite(float(series["value"][1])) for series in result)


def _traffic_round(client: httpx.Client, base: str, clip: str, platform: Platform, round_no: int) -> str:
    """An upload to READY, watches, a 404 (a non-OK gRPC status), health, the daily placement job."""
    video_id = upload_file(client, base, clip, f"live metrics {round_no}", "live")
    assert wait_ready(client, base, video_id, timeout_s=180)["status"] == "READY"
    for region in ("US", "GB"):
        assert client.get(f"{base}/v1/videos/{video_id}/watch", params={"region": region, "client": "web"}).status_code == 200
    assert client.get(f"{base}/v1/videos/nosuchvideo").status_code == 404
    assert client.get(f"{base}/healthz").status_code == 200
    env = dict(os.environ, **platform.cfg.to_env())
    daily = subprocess.run([sys.executable, "-m", "longtail_cli.cli", "placement", "run"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert daily.returncode == 0, daily.stderr
    return video_id


def test_every_dashboard_panel_returns_data(live, clip):
    base = live.platform.gateway_url
    with httpx.Client(timeout=60, headers=bearer(live.platform.cfg, "uploader")) as client:
        # Two rounds with scrapes between: a rate needs a counter seen before it grows.
        for round_no in (1, 2):
            _traffic_round(client, base, clip, live.platform, round_no)
            time.sleep(3 * SCRAPE_INTERVAL_S)

    def empty_panels() -> list[str]:
        window = int(time.time() - live.started) + 30
        return [f"{what}: {expr}" for what, expr in _panel_runs(live, window) if not _has_data(live.query(expr))]

    # The CDN share gauge is read from the daily run's summary at most every 30 s.
    _eventually(lambda: not empty_panels(), timeout_s=60, interval_s=3)
    empty = empty_panels()
    assert not empty, "dashboard panels with no data:\n" + "\n".join(empty)
    runs = _panel_runs(live, int(time.time() - live.started) + 30)
    print(f"\n{len(runs)} dashboard queries ({len(_dashboard_queries())} in the JSON, repeated panels once per value)"
          " returned data")


def test_histogram_exemplars_link_to_traces(live):
    """Runs after the uploads above: Prometheus kept bucket exemplars whose trace ids are
    traces the processes wrote (the transcode's steps, the upload's time to READY)."""
    from longtail_common import telemetry

    def exemplar_traces(metric: str) -> set[str]:
        reply = httpx.get(f"{live.prometheus_url}/api/v1/query_exemplars",
                          params={"query": metric, "start": live.started - 60, "end": time.time() + 60}, timeout=10).json()
        assert reply["status"] == "success", reply
        return {e["labels"]["trace_id"] for series in reply["data"] for e in series["exemplars"]}

    for metric in ("longtail_transcode_step_seconds_bucket", "longtail_upload_to_ready_seconds_bucket"):
        found = _eventually(lambda: exemplar_traces(metric), timeout_s=30)
        assert found, f"no exemplar on {metric}"
        traced = {s["trace_id"] for s in telemetry.load_spans(live.platform.cfg.data_path)}
        assert found <= traced, f"{metric}: exemplars name traces nobody wrote: {found - traced}"


# -- the fault -----------------------------------------------------------------------------


def _alerts(live: Live) -> tuple[dict, dict]:
    """({key: state} in Prometheus (pending | firing), {key: startsAt} active in Alertmanager),
    key = (alertname, (the labels that say what it is about))."""
    def key(labels: dict) -> tuple:
        about = tuple(sorted((k, v) for k, v in labels.items() if k in ("job", "topic", "group")))
        return labels["alertname"], about

    rules = httpx.get(f"{live.prometheus_url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    manager = httpx.get(f"{live.alertmanager_url}/api/v2/alerts", timeout=10).json()
    now = time.time()
    active = {key(a["labels"]): a["startsAt"] for a in manager
              if a["status"]["state"] != "resolved" and _epoch(a["endsAt"]) > now}
    return {key(a["labels"]): a["state"] for a in rules}, active


def _epoch(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


class Timeline:
    """Each alert's transitions as Prometheus (pending, firing, resolved) and Alertmanager
    (active, resolved) report them, in seconds from the fault."""

    def __init__(self, t0: float):
        self.t0 = t0
        self.events: list[tuple[float, str, str, str]] = []  # (at, alert, source, state)
        self.states: dict[tuple[tuple, str], str] = {}

    def observe(self, live: Live) -> tuple[dict, dict]:
        rules, active = _alerts(live)
        now = {**{(key, "prometheus"): state for key, state in rules.items()},
               **{(key, "alertmanager"): "active" for key in active}}
        for key, source in set(now) | set(self.states):
            state = now.get((key, source), "resolved")
            if self.states.get((key, source), "resolved") != state:
                self.states[(key, source)] = state
                self.events.append((time.time() - self.t0, _alert_name(key), source, state))
        return rules, active

    def states_of(self, key: tuple, source: str) -> list[str]:
        return [state for _at, alert, src, state in self.events if alert == _alert_name(key) and src == source]

    def render(self) -> str:
        return "\n".join(f"  t+{at:6.1f}s  {source:<12}  {state:<9}  {alert}" for at, alert, source, state in self.events)


def _alert_name(key: tuple) -> str:
    name, about = key
    return f"{name}{{{', '.join(f'{k}={v}' for k, v in about)}}}"


def _status(live: Live, *flags: str) -> str:
    """`longtail status`'s output; it exits 1 (scripts can tell) while a service is down."""
    proc = subprocess.run([sys.executable, "-m", "longtail_cli.cli", "status", "--data-dir", str(live.platform.cfg.data_path),
                           *flags], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout, (proc.returncode, proc.stderr)
    return proc.stdout


def test_stopped_transcoder_alerts_then_resolves(live, clip):
    platform, base = live.platform, live.platform.gateway_url
    t0 = time.time()
    timeline = Timeline(t0)
    platform.kill(TRANSCODER)
    with httpx.Client(timeout=60, headers=bearer(platform.cfg, "uploader")) as client:
        queued = [upload_file(client, base, clip, f"queued {i}", "live") for i in range(QUEUED_UPLOADS)]

        def fired() -> bool:
            _rules, active = timeline.observe(live)
            return EXPECTED_ALERTS <= set(active)

        reached = _eventually(fired, timeout_s=60)
        status_down = _status(live)
        print(f"\n`longtail status` with the transcoder stopped (t+{time.time() - t0:.0f}s):\n{status_down}")
        assert reached, f"alerts did not reach Alertmanager:\n{timeline.render()}"
        assert status_down.startswith("Longtail at ") and re.search(r"^transcoder-0\s+down\s+DOWN", status_down, re.M), \
            status_down
        # The same view for scripts: the stopped worker, and its group's lag on the requests it left.
        report = json.loads(_status(live, "--json"))
        assert report["services"][TRANSCODER]["state"] == "down" and not report["services"][TRANSCODER]["healthy"]
        assert any(row["group"] == "transcoder" and row["topic"] == "transcode.requests" and row["value"] > 0
                   for row in report["topic_lag"]), report["topic_lag"]

        # The supervisor has seen the kill (state down) before the worker comes back.
        _eventually(lambda: platform.service_states()[TRANSCODER]["state"] == "down", timeout_s=10, interval_s=0.2)
        old_address = platform.service_states()[TRANSCODER]["metrics_address"]
        restarted_at = time.time() - t0
        platform.start_transcoder(0)

        def resolved() -> bool:
            rules, active = timeline.observe(live)
            return not (EXPECTED_ALERTS & (set(active) | set(rules)))

        cleared = _eventually(resolved, timeout_s=90)
        print(f"\nalert timeline (transcoder stopped at t+0, started again at t+{restarted_at:.1f}s):\n"
              f"{timeline.render()}")
        assert cleared, f"alerts did not resolve:\n{timeline.render()}"
        assert platform.service_states()[TRANSCODER]["metrics_address"] != old_address  # found on its new port
        for video_id in queued:
            assert wait_ready(client, base, video_id, timeout_s=180)["status"] == "READY"
    for alert in EXPECTED_ALERTS:
        # pending lasts `for:` (5 s): a slow poll on a loaded machine may miss it, never the rest.
        assert timeline.states_of(alert, "prometheus")[-2:] == ["firing", "resolved"], timeline.render()
        assert timeline.states_of(alert, "alertmanager") == ["active", "resolved"], timeline.render()


# -- discovery follows the processes ---------------------------------------------------------


def test_restarted_and_added_processes_are_scraped_without_a_config_change(live):
    """Runs last: an added transcoder would keep the fault test's alerts quiet."""
    platform = live.platform
    before = platform.service_states()["upload"]
    os.kill(before["pid"], signal.SIGKILL)  # the supervisor restarts it, on a new metrics port
    platform.start_transcoder(1)

    def scraped_where_they_are() -> bool:
        states = platform.service_states()
        reply = httpx.get(f"{live.prometheus_url}/api/v1/targets", timeout=10).json()
        targets = {t["labels"]["instance"]: (t["scrapeUrl"], t["health"]) for t in reply["data"]["activeTargets"]}
        return (states["upload"]["pid"] != before["pid"]
                and states["upload"]["metrics_address"] != before["metrics_address"]
                and targets.get("upload") == (f"http://{states['upload']['metrics_address']}/metrics", "up")
                and targets.get("transcoder-1", ("", ""))[1] == "up")

    assert _eventually(scraped_where_they_are, timeout_s=90), platform.service_states()
    # The same instance with a new start time: ServiceFlapping's count sees the restart.
    restarts = 'job:process_restarts:changes30m{job="upload"}'
    assert _eventually(lambda: [r for r in live.query(restarts) if float(r["value"][1]) >= 1], timeout_s=30)
