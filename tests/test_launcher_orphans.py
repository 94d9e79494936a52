"""A launcher that is killed outright (SIGKILL: no chance to stop its services) leaves no
service running: orphans would stay in their consumer groups and take messages meant for the
next platform's services. Each service watches its launcher (LONGTAIL_PARENT_PID) and shuts
itself down gracefully when it is gone."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

LAUNCH = """
import sys, time
from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
p = Platform(Config(data_dir=sys.argv[1]), gateway_port=free_port(), transcoder_workers=1)
p.start()
print(" ".join(str(proc.pid) for proc in p.procs.values()), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            state = next(line for line in fh if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "Z" not in state.split()[1]  # a zombie has exited (only its parent's reaping is left)


def test_killed_launcher_leaves_no_service_running(tmp_path):
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCH, str(tmp_path / "lt")], stdout=subprocess.PIPE,
                                text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        pids = [int(p) for p in launcher.stdout.readline().split()]
        assert len(pids) == 7, pids  # metadata, upload, placement, search, webhook, 1 transcoder worker, the gateway
        assert all(_alive(p) for p in pids)
    finally:
        launcher.kill()
        launcher.wait()
    deadline = time.monotonic() + 30  # poll 1 s, then each service's graceful stop
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in pids if _alive(p)] == []
