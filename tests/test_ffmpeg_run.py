"""longtail_common.ffmpeg_run, the one way ffmpeg runs (transcoder, gateway frames and house
ad, the CLI's test clip): an ffmpeg dies with the process that started it, even a
multi-threaded one; starting it from a process busy with gRPC never kills it; a run past its
timeout is killed; a failure carries ffmpeg's stderr.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ffmpeg
import pytest

from longtail_common import ffmpeg_run

REPO = Path(__file__).resolve().parent.parent


def _endless(out: str = "-"):
    """An ffmpeg that never ends on its own (a live-rate pattern into nothing)."""
    pattern = ffmpeg.input("testsrc2=size=160x90:rate=10", f="lavfi", re=None)
    return ffmpeg_run.command(pattern.output(out, format="null"))


def _ffmpeg_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")"
        fields = stat.rsplit(")", 1)[-1].split()
        if entry.name.isdigit() and int(fields[1]) == pid and "ffmpeg" in stat.split(")", 1)[0]:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


CHILD = """
import asyncio, sys, threading
from longtail_common import ffmpeg_run
import tests.test_ffmpeg_run as t
# busy threads, as a gateway or a worker has (gRPC, the thread pool): the fork must not hang
for _ in range(4):
    threading.Thread(target=lambda: [sum(range(1000)) for _ in iter(int, 1)], daemon=True).start()
print("started", flush=True)
asyncio.run(ffmpeg_run.run_async(t._endless(), 600, "waiting") if sys.argv[1] == "async"
            else asyncio.to_thread(ffmpeg_run.run, t._endless(), 600, "waiting"))
"""


@pytest.mark.parametrize("how", ["async", "sync"])
def test_ffmpeg_dies_with_the_process_that_started_it(how):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "gen"), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", CHILD, how], cwd=REPO, env=env, stdout=subprocess.PIPE)
    try:
        assert parent.stdout.readline().strip() == b"started"
        deadline = time.monotonic() + 60
        while not (children := _ffmpeg_children(parent.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert children, "ffmpeg never started"
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphans = [pid for pid in children if _alive(pid)]
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    assert not orphans, "ffmpeg outlived the process that started it"


def test_a_run_past_its_timeout_is_killed_and_says_so():
    with pytest.raises(ffmpeg_run.FfmpegTimedOut, match="waiting took longer than 1 s"):
        asyncio.run(ffmpeg_run.run_async(_endless(), 1.0, "waiting"))
    assert not [pid for pid in _ffmpeg_children(os.getpid()) if _alive(pid)]
    with pytest.raises(ffmpeg_run.FfmpegTimedOut):
        ffmpeg_run.run(_endless(), 1.0, "waiting")
    assert not [pid for pid in _ffmpeg_children(os.getpid()) if _alive(pid)]


def test_a_cancelled_run_kills_its_ffmpeg():
    async def cancel_soon():
        task = asyncio.create_task(ffmpeg_run.run_async(_endless(), 600, "waiting"))
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(cancel_soon())
    assert not [pid for pid in _ffmpeg_children(os.getpid()) if _alive(pid)]


def test_a_failure_carries_ffmpegs_stderr(tmp_path):
    missing = str(tmp_path / "missing.mp4")
    args = ffmpeg_run.command(ffmpeg.input(missing).output(str(tmp_path / "out.jpg")))
    with pytest.raises(ffmpeg_run.FfmpegFailed) as err:
        ffmpeg_run.run(args, 60, "reading")
    assert not isinstance(err.value, (ffmpeg_run.FfmpegTimedOut, ffmpeg_run.FfmpegKilled))
    assert "missing.mp4" in err.value.detail and str(err.value).startswith("reading failed: ")
    with pytest.raises(ffmpeg_run.FfmpegFailed) as err:
        asyncio.run(ffmpeg_run.run_async(args, 60, "reading"))
    assert "missing.mp4" in err.value.detail


GRPC_BUSY = """
import os, sys, threading
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
import ffmpeg
from longtail_common import ffmpeg_run
server = grpc.server(futures.ThreadPoolExecutor(8))
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
def calls():  # a service's life: calls in and out on other threads while ffmpeg starts
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    while True:
        stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
for _ in range(4):
    threading.Thread(target=calls, daemon=True).start()
args = ffmpeg_run.command(ffmpeg.input("nullsrc=s=16x16:d=0.04", f="lavfi").output("-", format="null"))
failed = []
for _ in range(int(sys.argv[1])):
    try:
        ffmpeg_run.run(args, 60, "a tiny run")
    except ffmpeg_run.FfmpegFailed as exc:
        failed.append(str(exc))
stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
stub.Check(health_pb2.HealthCheckRequest(), timeout=5)  # the process's own gRPC still works
print(len(failed), failed[:3], flush=True)
os._exit(0)  # the calling threads never end; interpreter shutdown would wait on gRPC
"""


def test_runs_started_beside_busy_grpc_threads_never_die_of_the_fork():
    """A preexec_fn (Python in the forked child) ran gRPC's at-fork handlers: 18 of 400
    children died of SIGABRT before exec, and the transcoder's steps failed at random as
    "ffmpeg was killed by signal 6". 200 runs here: at that rate, none failing by chance
    is a 1-in-10,000 event."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "gen"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", GRPC_BUSY, "200"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)  # 200 runs take ~5 s; the old code hung here
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split(" ", 1)[0] == "0", out.stdout
