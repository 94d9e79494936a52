"""The launcher keeps services alive (issue 23): a service killed again and again comes back
every time, after a backoff that doubles up to its cap and starts over once the service has
been healthy for a while; each restart shows in DATA_DIR/run/services.json."""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

import pytest

from longtail_cli.launcher import Platform, RestartBackoff, exit_reason, free_port
from longtail_common.config import Config, LauncherConfig

INITIAL_S, CAP_S, RESET_AFTER_S = 0.2, 0.8, 4.0


def test_backoff_doubles_to_its_cap_and_starts_over():
    backoff = RestartBackoff(1.0, 30.0)
    assert [backoff.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    for _ in range(5000):  # forever: the count stops at the cap instead of overflowing
        assert backoff.next_delay() == 30
    backoff.reset()
    assert backoff.next_delay() == 1


def test_exit_reason_names_the_signal():
    assert exit_reason(-9) == "killed by SIGKILL"
    assert exit_reason(3) == "exited with code 3"


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _kill_and_wait_back(platform: Platform, name: str) -> dict:
    """SIGKILLs `name` (not through Platform.kill: the supervisor must not know) and waits
    until it is running and SERVING again; returns its state from the state file."""
    before = platform.service_states()[name]
    os.kill(before["pid"], signal.SIGKILL)

    def back():
        state = platform.service_states()[name]
        return state["restarts"] == before["restarts"] + 1 and state["state"] == "running" and state["serving"]

    _wait_for(back, 90, f"{name} to come back after restart {before['restarts'] + 1}")
    on_disk = json.loads(platform.state_file.read_text())
    assert on_disk["launcher_pid"] == os.getpid()
    state = on_disk["services"][name]
    assert state["pid"] != before["pid"] and state["restarts"] == before["restarts"] + 1, state
    assert (state["last_exit_code"], state["last_exit_reason"]) == (-9, "killed by SIGKILL"), state
    return state


@pytest.mark.slow
def test_killed_service_is_restarted_every_time_with_bounded_backoff(tmp_path):
    cfg = Config(data_dir=str(tmp_path / "lt"))
    cfg.launcher = LauncherConfig(restart_initial_delay_s=INITIAL_S, restart_max_delay_s=CAP_S,
                                  restart_reset_after_s=RESET_AFTER_S)
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=1) as platform:
        restarts = [_kill_and_wait_back(platform, "search") for _ in range(7)]
        assert [r["restarts"] for r in restarts] == [1, 2, 3, 4, 5, 6, 7]
        assert [r["restart_delay_s"] for r in restarts] == [0.2, 0.4, 0.8, 0.8, 0.8, 0.8, 0.8]
        for r in restarts:  # each respawn waited its delay after the exit was seen
            assert r["since"] - r["last_exit_at"] >= r["restart_delay_s"], r

        # Healthy for RESET_AFTER_S: the next restart waits the initial delay again.
        _wait_for(lambda: platform.service_states()["search"]["next_restart_delay_s"] == INITIAL_S,
                  RESET_AFTER_S + 30, "the backoff to start over")
        assert _kill_and_wait_back(platform, "search")["restart_delay_s"] == INITIAL_S

        # The gateway (HTTP, no gRPC health) comes back on its port too.
        assert _kill_and_wait_back(platform, "gateway")["restart_delay_s"] == INITIAL_S
        with urllib.request.urlopen(platform.gateway_url + "/healthz", timeout=10) as reply:
            assert reply.status == 200

        others = {n: s for n, s in platform.service_states().items() if n not in ("search", "gateway")}
        assert all(s["state"] == "running" and s["restarts"] == 0 for s in others.values()), others
    final = json.loads(platform.state_file.read_text())["services"]
    assert {s["state"] for s in final.values()} == {"down"}, final
