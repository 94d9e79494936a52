"""One server's JVM process: spawn it in its own session, wait until it really answers, stop it.

Everything a server writes (config, data, log) lives under the directory it is started in.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

from longtail_testservers.errors import MISSING_JAVA_PREFIX, JavaUnavailableError, TestServerError
from longtail_testservers.jars import java_exe

log = logging.getLogger("longtail.testservers")

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 30.0


def _port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: pathlib.Path, lines: int = 60) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(data.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


def pid_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


# Popen objects of the servers this process started, so stop() can reap them.
_LIVE: dict[int, subprocess.Popen] = {}


def stop_pid(pid: int, marker: str, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM the process group of `pid`, wait, then SIGKILL. Returns whether it ran.

    `marker` (a path that is on the server's command line) guards against killing an
    unrelated process that reused the pid.
    """
    proc = _LIVE.get(pid)
    if proc is not None and proc.poll() is not None:
        _LIVE.pop(pid, None)
        return False
    if proc is None and (not pid_alive(pid) or marker not in pid_cmdline(pid)):
        return False

    def signal_group(sig):
        try:
            os.killpg(pid, sig)  # each server leads its own session/process group
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def wait(limit: float) -> bool:
        if proc is not None:
            try:
                proc.wait(timeout=limit)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return True
            time.sleep(0.1)
        return not pid_alive(pid)

    signal_group(signal.SIGTERM)
    if not wait(timeout_s):
        log.warning("pid %d did not stop within %.0fs of SIGTERM; sending SIGKILL", pid, timeout_s)
        signal_group(signal.SIGKILL)
        wait(10)
    _LIVE.pop(pid, None)
    return True


@dataclass
class JavaServer:
    """One server process. Subclasses add their ports and client config."""

    name: str
    dir: pathlib.Path
    argv: list[str] = field(default_factory=list)
    pid: int = 0
    startup_s: float = 0.0  # from spawn to the first real answer
    log_path: pathlib.Path | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    kind = "java"

    @property
    def log_file(self) -> pathlib.Path:
        return self.log_path or (self.dir / f"{self.name}.log")

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.argv = argv
        self.log_path = self.log_file
        with open(self.log_path, "ab") as logfh:
            logfh.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            logfh.flush()
            self._proc = subprocess.Popen(
                argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=logfh, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, **(env or {})},
            )
        self.pid = self._proc.pid
        _LIVE[self.pid] = self._proc

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return bool(self.pid) and pid_alive(self.pid) and str(self.dir) in pid_cmdline(self.pid)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if self.pid:
            stop_pid(self.pid, str(self.dir), timeout_s)
        self._proc = None

    def wait_ready(self, check, deadline_s: float, port: int) -> None:
        """Poll `check()` (after `port` accepts connections) until it returns without raising."""
        started = time.monotonic()
        last_error: Exception | None = None
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise TestServerError(
                    f"{self.name} exited with code {self._proc.returncode} during start-up "
                    f"(log {self.log_file}):\n{_tail(self.log_file)}")
            if _port_open(port):
                try:
                    check()
                    return
                except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                    last_error = exc
            if time.monotonic() - started > deadline_s:
                self.stop(timeout_s=5)
                raise TestServerError(
                    f"{self.name} did not answer on {HOST}:{port} within {deadline_s:.0f}s "
                    f"(last error: {last_error!r}; log {self.log_file}):\n{_tail(self.log_file)}")
            time.sleep(0.25)

    def bind_failed(self) -> bool:
        text = _tail(self.log_file, 400)
        return any(s in text for s in ("Address already in use", "BindException", "Failed to bind"))

    def to_json(self) -> dict:
        data = {}
        for f in dataclasses.fields(self):
            if f.name.startswith("_") or f.name == "argv":
                continue
            value = getattr(self, f.name)
            data[f.name] = str(value) if isinstance(value, pathlib.Path) else value
        data["port"] = getattr(self, "port", 0)
        data["kind"] = self.kind
        return data


def java_base(xms: str, xmx: str, extra: list[str] | None = None) -> list[str]:
    java = java_exe()
    if not java:
        raise JavaUnavailableError(MISSING_JAVA_PREFIX + "no `java` on PATH")
    return [java, f"-Xms{xms}", f"-Xmx{xmx}", "-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true",
            *(extra or [])]


def retry_on_bind(start_once, attempts: int = 3):
    """Ports are picked free but another process may take one before the JVM binds it."""
    for attempt in range(attempts):
        try:
            return start_once()
        except TestServerError as exc:
            server = getattr(exc, "server", None)
            if server is None or not server.bind_failed() or attempt == attempts - 1:
                raise
            log.warning("%s could not bind its ports; retrying with new ones", server.name)
