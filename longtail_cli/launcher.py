"""Runs the whole platform on one machine: every service a separate process.

Used by `longtail up` and by the end-to-end tests. Ports are picked free at start, so
several platforms can run side by side (tests); the config is handed to each child as
one environment variable so they all see exactly the same settings.
"""
from __future__ import annotations

import copy
import logging
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from longtail_common.config import Config
from longtail_common.grpc_server import wait_for_serving
from longtail_common.runtime import PARENT_PID_ENV

log = logging.getLogger("longtail.launcher")

GRPC_SERVICES = ["metadata", "upload", "placement", "search"]


# Ports are handed out below the kernel's ephemeral range (32768-60999 on Linux): a port is
# bound by its service a moment after it is chosen, and an ephemeral one can be taken in that
# moment by any outgoing connection (a test lost a service's port that way). Ports handed out
# by this process are not handed out again.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()
_port_lock = threading.Lock()


def free_port() -> int:
    with _port_lock:
        for _ in range(500):
            port = random.randint(*_PORT_RANGE)
            if port in _handed_out:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue  # in use
            _handed_out.add(port)
            return port
    with socket.socket() as s:  # the range is crowded: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Platform:
    def __init__(self, cfg: Config, gateway_port: int = 8080, transcoder_workers: int = 1, log_dir: str | None = None):
        self.cfg = copy.deepcopy(cfg)
        self.gateway_port = gateway_port
        self.transcoder_workers = transcoder_workers
        self.procs: dict[str, subprocess.Popen] = {}
        self.addresses: dict[str, str] = {}
        self.log_dir = pathlib.Path(log_dir) if log_dir else self.cfg.data_path / "logs"
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def _env_for(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.cfg.to_env())
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(self, name: str, args: list[str], cfg: Config | None = None) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logfile = open(self.log_dir / f"{name}.log", "ab")
        env = dict(os.environ)
        env.update((cfg or self.cfg).to_env())
        env[PARENT_PID_ENV] = str(os.getpid())  # the service stops when this launcher is gone
        proc = subprocess.Popen(
            [sys.executable, *args], env=env, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        logfile.close()
        self.procs[name] = proc
        return proc

    def start(self, timeout_s: float = 60.0) -> None:
        self.cfg.data_path.mkdir(parents=True, exist_ok=True)
        for name in GRPC_SERVICES:
            addr = f"127.0.0.1:{free_port()}"
            setattr(self.cfg.services, name, addr)
            self.addresses[name] = addr
        for name in GRPC_SERVICES:
            self._spawn(name, ["-m", f"{name}_svc"])
        for i in range(self.transcoder_workers):
            self.start_transcoder(i)
        self._spawn("gateway", ["-m", "gateway", "--port", str(self.gateway_port)])
        deadline = time.monotonic() + timeout_s
        for name, addr in self.addresses.items():
            if not wait_for_serving(addr, max(1.0, deadline - time.monotonic())):
                self.stop()
                raise RuntimeError(f"{name} did not become SERVING at {addr}; see {self.log_dir / (name + '.log')}")
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.gateway_url + "/healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError(f"gateway did not answer on {self.gateway_url}; see {self.log_dir / 'gateway.log'}")
        self._supervisor = threading.Thread(target=self._supervise, daemon=True, name="supervisor")
        self._supervisor.start()

    def start_transcoder(self, index: int) -> str:
        """Starts transcoder worker `index` on a fresh port; returns its gRPC address."""
        name = f"transcoder-{index}"
        cfg = copy.deepcopy(self.cfg)
        cfg.services.transcoder = f"127.0.0.1:{free_port()}"
        self.addresses[name] = cfg.services.transcoder
        self._spawn(name, ["-m", "transcoder_svc"], cfg)
        return cfg.services.transcoder

    def _supervise(self) -> None:
        """Restarts a service that died (with backoff), like a process manager would."""
        restarts: dict[str, int] = {}
        while not self._stopping.wait(1.0):
            for name, proc in list(self.procs.items()):
                if proc.poll() is None or self._stopping.is_set() or getattr(proc, "_killed_on_purpose", False):
                    continue
                count = restarts.get(name, 0)
                if count >= 5:
                    continue
                restarts[name] = count + 1
                log.warning("%s exited with %s; restarting (%d)", name, proc.returncode, count + 1)
                time.sleep(min(2**count, 10))
                if name.startswith("transcoder-"):
                    self.start_transcoder(int(name.split("-")[1]))
                elif name == "gateway":
                    self._spawn("gateway", ["-m", "gateway", "--port", str(self.gateway_port)])
                else:
                    self._spawn(name, ["-m", f"{name}_svc"])

    def kill(self, name: str) -> None:
        """SIGKILL one process (fault tests); the supervisor will not restart it."""
        proc = self.procs[name]
        proc._killed_on_purpose = True  # type: ignore[attr-defined]
        proc.kill()
        proc.wait()

    def stop(self, grace_s: float = 15.0) -> None:
        self._stopping.set()
        # Gateway first (no new work), then workers, metadata last (others call it on the way out).
        order = ["gateway"] + [n for n in self.procs if n.startswith("transcoder-")] + ["upload", "placement", "search", "metadata"]
        for name in order:
            proc = self.procs.get(name)
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for name in order:
            proc = self.procs.get(name)
            if not proc:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing", name)
                proc.kill()
                proc.wait()

    def __enter__(self) -> "Platform":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
