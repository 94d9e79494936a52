"""Running ffmpeg, for every process that starts it (the transcoder, the gateway's frames
and house ad, the CLI's test clip): the binary (imageio-ffmpeg's), the command line of
ffmpeg-python outputs, and one way to run it.

A run captures stderr (its last lines become the error), is killed on timeout, and dies
with the thread that started it (PR_SET_PDEATHSIG, `runtime.dying_with_parent`), so a
killed service leaves no orphan ffmpeg. Each caller turns the errors into its own
(the transcoder's MediaError, the gateway's 503).
"""
from __future__ import annotations

import asyncio
import subprocess

import ffmpeg
import imageio_ffmpeg

from longtail_common.runtime import dying_with_parent

# Every run: no stdin (no caller has any to give), only errors on stderr (they become the reason).
GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-loglevel", "error")


class FfmpegFailed(RuntimeError):
    """ffmpeg exited non-zero; `detail` is the last lines of its stderr."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


class FfmpegTimedOut(FfmpegFailed):
    """ffmpeg ran past its timeout and was killed."""


class FfmpegKilled(FfmpegFailed):
    """ffmpeg died of a signal (a crash, the OOM killer): not its input's fault."""


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def command(*outputs, global_args: tuple[str, ...] = ()) -> list[str]:
    """The command line of one ffmpeg run writing every one of `outputs` (ffmpeg-python
    output streams), overwriting existing files; `global_args` after the house ones."""
    merged = ffmpeg.merge_outputs(*outputs).global_args(*GLOBAL_ARGS, *global_args)
    return merged.compile(cmd=ffmpeg_exe(), overwrite_output=True)


def _check(returncode: int, stderr: bytes, what: str) -> None:
    if returncode < 0:
        raise FfmpegKilled(f"{what}: ffmpeg was killed by signal {-returncode}")
    if returncode != 0:
        lines = [ln for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
        detail = "; ".join(lines[-3:])[:500]
        raise FfmpegFailed(f"{what} failed: {detail or f'exit code {returncode}'}", detail)


def _timed_out(what: str, timeout_s: float) -> FfmpegTimedOut:
    return FfmpegTimedOut(f"{what} took longer than {timeout_s:.0f} s and was stopped")


def run(args: list[str], timeout_s: float, what: str, capture: bool = False) -> bytes:
    """Runs one ffmpeg command line; returns what it wrote to its standard output if
    `capture` ("pipe:" outputs), else b"". Raises an FfmpegFailed naming `what`."""
    proc = subprocess.Popen(dying_with_parent(args), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE if capture else subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise _timed_out(what, timeout_s) from None
    _check(proc.returncode, stderr, what)
    return stdout or b""


async def run_async(args: list[str], timeout_s: float, what: str) -> None:
    """`run` for an event loop: ffmpeg runs as an asyncio subprocess, killed on timeout and
    when the awaiting task is cancelled (a client gone)."""
    proc = await asyncio.create_subprocess_exec(
        *dying_with_parent(args), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout_s)
    except BaseException as exc:
        proc.kill()
        await proc.wait()
        if isinstance(exc, asyncio.TimeoutError):
            raise _timed_out(what, timeout_s) from None
        raise
    _check(proc.returncode, stderr, what)
