"""The Prometheus that `longtail services start` and the live tests run, without running it:
its config is the repo's (rules, file-SD job) pointed at this machine, the launcher's targets
carry the labels the rules group by, and missing binaries skip outside CI, fail in CI."""
from __future__ import annotations

import pathlib

import yaml

from longtail_cli.launcher import ServiceState, prometheus_targets
from longtail_testservers import cli as services_cli
from longtail_testservers.prometheus import PROMETHEUS_YML, prometheus_config


def test_config_keeps_the_repo_rules_and_file_sd_job():
    config = prometheus_config(["/data/run/prometheus_targets.json"], "127.0.0.1:9093", "1s", "2s")
    repo = yaml.safe_load(PROMETHEUS_YML.read_text())
    rules = {str(p) for pattern in repo["rule_files"] for p in PROMETHEUS_YML.parent.glob(pattern)}
    assert set(config["rule_files"]) == rules and all(pathlib.Path(r).is_absolute() for r in rules)
    assert config["global"] == {"scrape_interval": "1s", "evaluation_interval": "2s"}
    assert config["alerting"]["alertmanagers"] == [{"static_configs": [{"targets": ["127.0.0.1:9093"]}]}]
    file_sd_jobs = [job["job_name"] for job in repo["scrape_configs"] if job.get("file_sd_configs")]
    assert [job["job_name"] for job in config["scrape_configs"]] == file_sd_jobs == ["longtail"]
    assert config["scrape_configs"][0]["file_sd_configs"][0]["files"] == ["/data/run/prometheus_targets.json"]


def test_targets_name_the_service_as_job_and_the_process_as_instance():
    states = {"transcoder-1": ServiceState(metrics_address="127.0.0.1:2"), "gateway": ServiceState(metrics_address="127.0.0.1:1"),
              "upload": ServiceState()}  # its port is not known yet
    assert prometheus_targets(states) == [
        {"targets": ["127.0.0.1:1"], "labels": {"job": "gateway", "instance": "gateway"}},
        {"targets": ["127.0.0.1:2"], "labels": {"job": "transcoder", "instance": "transcoder-1"}},
    ]


def test_missing_binaries_skip_outside_ci_and_fail_in_ci(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(services_cli, "prometheus_available", lambda: (False, "no prometheus on PATH"))
    monkeypatch.delenv("CI", raising=False)
    assert services_cli._start_observability(tmp_path, tmp_path / "data") == 0
    assert "skipping Prometheus and Alertmanager" in capsys.readouterr().err
    monkeypatch.setenv("CI", "1")
    assert services_cli._start_observability(tmp_path, tmp_path / "data") == 2
