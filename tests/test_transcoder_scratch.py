"""A killed transcode's scratch folder is removed when a worker next starts (issue 23);
live workers' folders on the same machine are left alone."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from longtail_cli.cli import make_test_clip, upload_file, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from tests.auth_helpers import bearer
from transcoder_svc.jobs.base import remove_dead_workers_scratch, scratch_root


def _gone_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: nothing has this pid now
    return proc.pid


def test_only_the_folders_of_gone_workers_are_removed(tmp_path):
    cfg = Config(data_dir=str(tmp_path / "lt"))
    root = scratch_root(cfg)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folders = {name: root / str(pid) for name, pid in
                   (("gone", _gone_pid()), ("live", live.pid), ("ours", os.getpid()))}
        folders["not a worker's"] = root / "notes"
        for folder in folders.values():
            (folder / "job-abc").mkdir(parents=True)
            (folder / "job-abc" / "source").write_bytes(b"x" * 1024)
        removed = remove_dead_workers_scratch(cfg)
        # "ours": a folder with our pid before we made one is a dead predecessor's
        assert sorted(removed) == sorted([folders["gone"], folders["ours"]])
        assert {name for name, folder in folders.items() if folder.exists()} == {"live", "not a worker's"}
    finally:
        live.kill()
        live.wait()


def test_no_scratch_folder_yet_is_fine(tmp_path):
    assert remove_dead_workers_scratch(Config(data_dir=str(tmp_path / "lt"))) == []


@pytest.mark.slow
def test_killed_transcode_scratch_is_cleaned_when_the_worker_restarts(tmp_path):
    clip = tmp_path / "clip.mp4"
    make_test_clip(str(clip), seconds=10, height=720)
    cfg = Config(data_dir=str(tmp_path / "lt"))
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=1) as platform, \
            httpx.Client(timeout=60, headers=bearer(cfg, "uploader")) as client:
        worker = platform.procs["transcoder-0"]
        folder = scratch_root(platform.cfg) / str(worker.pid)
        vid = upload_file(client, platform.gateway_url, str(clip), "scratch test", "testchan")
        deadline = time.monotonic() + 60
        while not (folder.is_dir() and any(folder.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert folder.is_dir() and any(folder.iterdir()), "the job made no scratch folder"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        assert any(folder.iterdir()), "the killed job's folder should be left behind"
        video = wait_ready(client, platform.gateway_url, vid, timeout_s=240)  # redone by the restarted worker
        assert video["status"] == "READY", video
        assert platform.service_states()["transcoder-0"]["restarts"] == 1
        assert not folder.exists()
