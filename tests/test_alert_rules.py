"""The alert rules and their configs under deploy/observability/, as code.

promtool checks the rule files and runs their unit tests (prometheus/tests/*_test.yml:
each alert fires on its fault and stays quiet when healthy), and checks prometheus.yml;
amtool checks alertmanager.yml. Without those binaries (`make prometheus` installs
Debian's packages) these are skipped locally with the reason; with CI set they fail
instead, like the real-server suites. The static tests need no binary: every alert is
labelled and documented in the README's runbook, every metric a rule reads is one the
code exports, and compose mounts what prometheus.yml loads.
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

from tests.test_deploy import ALLOWED, EXPORTED, SCRAPE_LABELS, promql_names

ROOT = pathlib.Path(__file__).resolve().parents[1]
OBS = ROOT / "deploy" / "observability"
PROMETHEUS_YML = OBS / "prometheus.yml"
ALERTMANAGER_YML = OBS / "alertmanager.yml"
RULE_FILES = sorted((OBS / "prometheus" / "rules").glob("*.rules.yml"))
RULE_TESTS = sorted((OBS / "prometheus" / "tests").glob("*_test.yml"))
README = ROOT / "README.md"

# Series the rules read that no OpenTelemetry instrument declares: `up` is Prometheus's own
# per target, process_start_time_seconds comes from prometheus_client's process collector,
# served beside the instruments by telemetry._setup_metrics.
SCRAPE_METRICS = {"up", "process_start_time_seconds"}
SEVERITIES = {"page", "ticket"}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").strip():
        pytest.fail(f"{reason} (CI is set, so a missing tool fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        _unavailable(f"{name} is not installed (make prometheus installs Debian's prometheus packages)")
    return path


def _run(*args: str | pathlib.Path, cwd: pathlib.Path = ROOT) -> None:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"


def _rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


def _alerts() -> list[dict]:
    return [rule for rule in _rules() if "alert" in rule]


def test_rule_files_and_their_tests_exist():
    assert RULE_FILES and RULE_TESTS
    loaded = yaml.safe_load(PROMETHEUS_YML.read_text())["rule_files"]
    found = {p for pattern in loaded for p in PROMETHEUS_YML.parent.glob(pattern)}
    assert found == set(RULE_FILES), "prometheus.yml must load every rule file, and no test file"


def test_promtool_checks_the_rules():
    _run(_tool("promtool"), "check", "rules", *RULE_FILES)


def test_promtool_unit_tests_pass():
    promtool = _tool("promtool")
    for path in RULE_TESTS:  # rule_files in a test are relative to it
        _run(promtool, "test", "rules", path.name, cwd=path.parent)


def test_promtool_checks_the_prometheus_config():
    _run(_tool("promtool"), "check", "config", PROMETHEUS_YML)


def test_amtool_checks_the_alertmanager_config():
    _run(_tool("amtool"), "check-config", ALERTMANAGER_YML)


def test_every_alert_has_a_severity_a_message_and_a_runbook_entry():
    readme = README.read_text()
    runbook = readme.split("\n## Runbook\n", 1)
    assert len(runbook) == 2, "README.md needs a '## Runbook' section"
    entries = set(re.findall(r"^### (\w+)$", runbook[1].split("\n## ", 1)[0], re.M))
    names = [rule["alert"] for rule in _alerts()]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in _alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        assert name in entries, f"{name} has no '### {name}' entry in the README's Runbook"
        assert rule["annotations"]["runbook_url"] == f"README.md#{name.lower()}", name


def test_every_alert_is_tested_firing_and_quiet():
    firing, quiet = set(), set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert names - firing == set(), "alerts no test shows firing"
    assert names - quiet == set(), "alerts no test shows staying quiet"


def test_rules_read_only_metrics_the_code_exports():
    recorded = {rule["record"]: rule["expr"] for rule in _rules() if "record" in rule}

    def sources(name: str) -> set[str]:
        """The scraped metrics behind a name, through recording rules."""
        if name not in recorded:
            return {name}
        return set().union(*(sources(n) for n in promql_names(recorded[name])[0]))

    for rule in _rules():
        names, labels = promql_names(rule["expr"])
        where = rule.get("alert") or rule.get("record")
        raw = set().union(*(sources(n) for n in names))
        for name in raw - SCRAPE_METRICS:
            assert name in ALLOWED, f"{where}: {name} is not an exported metric"
        known = set().union(*(EXPORTED[ALLOWED[n]][1] for n in raw if n in ALLOWED)) | SCRAPE_LABELS | {"le"}
        assert labels <= known, f"{where}: unknown labels {labels - known}"


def test_every_longtail_process_serves_its_start_time():
    # ServiceFlapping counts restarts in place by process_start_time_seconds; the process
    # collector is in prometheus_client's default registry, which telemetry serves.
    from prometheus_client import REGISTRY

    assert "process_start_time_seconds" in {s.name for family in REGISTRY.collect() for s in family.samples}


def test_compose_mounts_the_rules_and_runs_alertmanager():
    services = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    prometheus = next(s for s in services.values() if s.get("image", "").startswith("prom/prometheus:"))
    config_in_container = pathlib.PurePosixPath(
        next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file=")))
    mounts = dict(v.split(":")[:2] for v in prometheus["volumes"] if v.startswith("."))
    for pattern in yaml.safe_load(PROMETHEUS_YML.read_text())["rule_files"]:
        # The rule files' folder, as the container sees it, is mounted from the repo's.
        folder = str(config_in_container.parent / pathlib.PurePosixPath(pattern).parent)
        host = next((h for h, target in mounts.items() if target == folder), None)
        assert host is not None, f"compose does not mount {folder}"
        assert (ROOT / "deploy" / host).resolve() == (PROMETHEUS_YML.parent / pattern).parent.resolve()

    alertmanager = next(name for name, s in services.items() if s.get("image", "").startswith("prom/alertmanager:"))
    assert any(v.startswith("./observability/alertmanager.yml:") for v in services[alertmanager]["volumes"])
    targets = [t for am in yaml.safe_load(PROMETHEUS_YML.read_text())["alerting"]["alertmanagers"]
               for static in am["static_configs"] for t in static["targets"]]
    assert targets == [f"{alertmanager}:9093"]


def test_routes_the_rules_name_are_gateway_routes(tmp_path):
    # http_route is the route template, so a renamed route would leave its SLO reading nothing.
    from fastapi.routing import iter_route_contexts

    from gateway.app import create_app
    from longtail_common.config import Config

    # app.routes holds one node per included router; iter_route_contexts walks into them.
    routes = {route.path for route in iter_route_contexts(create_app(Config(data_dir=str(tmp_path))).routes)}
    named = {value for rule in _rules() for value in re.findall(r'http_route="([^"]+)"', rule["expr"])}
    assert named and named <= routes, f"not gateway routes: {named - routes}"
