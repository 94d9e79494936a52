"""The pieces of the node-loss fleet that can be checked without servers: HAProxy's
configuration, the search replicas' own consumer groups, and the lag exporter's view of them."""
from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from longtail_common.adapters.local_log import LocalTopicBus
from longtail_common.lag_exporter import GroupLagExporter
from longtail_common.ports import DEFAULT_TOPICS, TOPIC_VIDEO_PUBLISHED
from longtail_testservers.haproxy import MISSING_HAPROXY_PREFIX, config_text, haproxy_available
from search_svc.server import replica_groups


def test_haproxy_accepts_the_fleet_config(tmp_path):
    ok, reason = haproxy_available()
    if not ok:
        if os.environ.get("CI", "").strip():
            pytest.fail(MISSING_HAPROXY_PREFIX + reason, pytrace=False)
        pytest.skip(MISSING_HAPROXY_PREFIX + reason)
    text = config_text(20001, {"node-a": "127.0.0.1:20002", "node-b": "127.0.0.1:20003"}, tmp_path / "admin.sock")
    (tmp_path / "haproxy.cfg").write_text(text)
    check = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "option httpchk GET /healthz" in text and "track gateways/node-b" in text
    # A PATCH or POST is never replayed (its effect may have happened); GET and HEAD may be.
    assert "disable-l7-retry unless METH_GET || METH_HEAD" in text


def test_each_search_replica_has_groups_of_its_own(tmp_path):
    first = replica_groups(tmp_path / "a" / "search")
    assert replica_groups(tmp_path / "a" / "search") == first  # a restart resumes its groups
    other = replica_groups(tmp_path / "b" / "search")
    assert first != other and first[0].startswith("search.") and other[0].startswith("search.")
    assert first[1].startswith("search-deleted.")


def test_lag_exporter_reports_live_replica_groups_only(tmp_path: pathlib.Path):
    bus = LocalTopicBus(tmp_path / "log", session_timeout_s=1.0, heartbeat_interval_s=0.2)
    bus.ensure_topics(DEFAULT_TOPICS)
    bus.producer().publish(TOPIC_VIDEO_PUBLISHED, b"event", key=b"v1")
    live = bus.consumer([TOPIC_VIDEO_PUBLISHED], "search.aaa")
    gone = bus.consumer([TOPIC_VIDEO_PUBLISHED], "search.bbb")
    for consumer in (live, gone):
        for message in consumer.poll(timeout_s=2.0, max_records=10):
            consumer.commit(message)
    gone.close()
    assert bus.list_groups("search.") == ["search.aaa", "search.bbb"]
    exporter = GroupLagExporter(bus, groups={})
    exporter.refresh()
    try:
        assert set(exporter._members) == {"search.aaa"}  # the lost replica's group is no backlog
        assert {group for _topic, group in exporter._lags} == {"search.aaa"}
    finally:
        live.close()
