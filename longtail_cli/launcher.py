"""Runs the whole platform on one machine: every service a separate process, kept alive.

Used by `longtail up` and by the end-to-end tests. Ports are picked free at start, so
several platforms can run side by side (tests); the config is handed to each child as
one environment variable so they all see exactly the same settings.

A service that exits (other than by `stop()` or `kill()`) is restarted forever: after
`launcher.restart_initial_delay_s`, doubling at each consecutive restart up to
`launcher.restart_max_delay_s`; once it has been alive and SERVING (grpc.health.v1; the
gateway: accepting connections) for `launcher.restart_reset_after_s`, the doubling starts
over. Each service's state is kept in process (`Platform.service_states()`) and written,
atomically (temporary file + rename) on every change, to DATA_DIR/run/services.json:

    {"launcher_pid": 4242, "updated_at": 1718000000.5,
     "services": {"metadata": {
        "state": "running",          # running | restarting (waiting to respawn) | down (stopped, not restarted)
        "since": 1718000000.1,       # epoch seconds this state was entered
        "pid": 4250,                 # the current (or last) process
        "address": "127.0.0.1:21234",  # gRPC host:port (the gateway: its HTTP one; see below)
        "serving": true,             # the last health probe answered SERVING
        "restarts": 7,               # respawns since the launcher started
        "last_exit_code": -9,        # Popen returncode of the last exit (negative: signal); null if none
        "last_exit_reason": "killed by SIGKILL",
        "last_exit_at": 1717999999.2,
        "restart_delay_s": 4.0,      # what the pending (or last) restart waits
        "next_restart_delay_s": 8.0, # what the next one would wait (the initial delay after a healthy period)
        "metrics_address": "127.0.0.1:41234"  # its Prometheus /metrics (the last one known; "" before the first)
     }, ...}}

Prometheus finds the processes through file-based service discovery: DATA_DIR/run/
prometheus_targets.json, rewritten atomically whenever a process's metrics address changes
(a start, a restart on a new ephemeral port, an added worker), so nothing is reconfigured:

    [{"targets": ["127.0.0.1:41234"], "labels": {"job": "transcoder", "instance": "transcoder-0"}}, ...]

`job` is the service (every transcoder worker is job "transcoder", as in compose), `instance`
the launcher's name for the process, the same across its restarts (so a restart shows as a
new process_start_time_seconds, not as a new target). A process stays listed while it is down
or restarting: its failed scrape (`up` 0) is what says it is down. A process serving metrics
on an ephemeral port (telemetry.prometheus_port 0) writes it to DATA_DIR/metrics/
<service>-<pid>.port, where the supervisor picks it up.

The gateway runs as `gateway_workers` processes (`longtail up --gateway-workers N`, default
the core count): one is "gateway"; several are "gateway-0", "gateway-1", ..., sharing the
platform's HTTP port (SO_REUSEPORT), each also serving alone on a port of its own (its
`address`), where the supervisor probes it; each has its own cache, consumer and metrics.
"""
from __future__ import annotations

import copy
import dataclasses
import json
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

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from longtail_common.config import Config
from longtail_common.grpc_server import dial, wait_for_serving
from longtail_common.mesh_tls import ensure_local_ca, tls_dir_of
from longtail_common.runtime import PARENT_PID_ENV

log = logging.getLogger("longtail.launcher")

GRPC_SERVICES = ["metadata", "upload", "placement", "search", "webhook"]


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


# The supervisor looks at each service this often (health probe); an exit is seen at once.
PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 1.0


class RestartBackoff:
    """The wait before each consecutive restart of one service: the initial delay, doubling,
    capped; `reset()` once the service has been healthy for a while."""

    def __init__(self, initial_s: float, max_s: float):
        self.initial_s = initial_s
        self.max_s = max_s
        self.consecutive = 0

    def peek(self) -> float:
        """What the next restart would wait."""
        return min(self.initial_s * 2**self.consecutive, self.max_s)

    def next_delay(self) -> float:
        delay = self.peek()
        if delay < self.max_s:  # past the cap the count stops (2**n would overflow a float)
            self.consecutive += 1
        return delay

    def reset(self) -> None:
        self.consecutive = 0


@dataclasses.dataclass
class ServiceState:
    """One service as the supervisor sees it (the fields of DATA_DIR/run/services.json)."""

    address: str = ""
    state: str = "running"  # running | restarting | down
    since: float = 0.0
    pid: int = 0
    serving: bool = False
    restarts: int = 0
    last_exit_code: int | None = None
    last_exit_reason: str = ""
    last_exit_at: float | None = None
    restart_delay_s: float = 0.0
    next_restart_delay_s: float = 0.0
    metrics_address: str = ""


def prometheus_job(name: str) -> str:
    """The scrape job of a launcher process: its service (transcoder-0 -> transcoder)."""
    return name.split("-", 1)[0]


def prometheus_targets(states: dict[str, ServiceState]) -> list[dict]:
    """The file-SD target groups for `states`: one per process whose metrics address is known."""
    return [{"targets": [state.metrics_address], "labels": {"job": prometheus_job(name), "instance": name}}
            for name, state in sorted(states.items()) if state.metrics_address]


def write_atomically(path: pathlib.Path, text: str) -> None:
    """Temporary file + rename: a reader (Prometheus, `longtail status`) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text)
    os.replace(staging, path)


def exit_reason(returncode: int) -> str:
    """A Popen returncode in words: the signal that killed the process, or its exit code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _server_name(process: str) -> str:
    """The service a process is (its mesh certificate's name): transcoder-1 is a transcoder."""
    return process.split("-")[0]


class _HealthProbe:
    """Whether one service is SERVING: grpc.health.v1 on a channel kept open, or for the
    gateway (HTTP, no gRPC health) whether it accepts connections."""

    def __init__(self, address: str, grpc_health: bool, cfg: Config, server_name: str):
        self.address = address
        self._channel = dial(address, cfg, server_name) if grpc_health else None

    def serving(self) -> bool:
        if self._channel is None:
            host, port = self.address.rsplit(":", 1)
            try:
                with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
                    return True
            except OSError:
                return False
        try:
            reply = health_pb2_grpc.HealthStub(self._channel).Check(health_pb2.HealthCheckRequest(),
                                                                    timeout=PROBE_TIMEOUT_S)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()


class Platform:
    """One node: every service a process of its own, supervised.

    Alone, its clients dial its own services. As one node of a fleet, `service_addresses`
    gives the addresses its services bind (fixed ahead, so every node can name them) and
    `service_targets` what its clients dial instead, e.g. `ipv4:A,B` for every node's
    replica of a service (each process binds its own through `services.listen`).
    """

    def __init__(self, cfg: Config, gateway_port: int = 8080, transcoder_workers: int = 1, log_dir: str | None = None,
                 gateway_workers: int = 1, service_addresses: dict[str, str] | None = None,
                 service_targets: dict[str, str] | None = None):
        if gateway_workers < 1:
            raise ValueError("gateway_workers must be at least 1")
        self.service_addresses = dict(service_addresses or {})
        self.service_targets = dict(service_targets or {})
        self.cfg = copy.deepcopy(cfg)
        self.gateway_port = gateway_port
        self.transcoder_workers = transcoder_workers
        self.gateway_workers = gateway_workers
        self.procs: dict[str, subprocess.Popen] = {}
        self.addresses: dict[str, str] = {}
        self.log_dir = pathlib.Path(log_dir) if log_dir else self.cfg.data_path / "logs"
        self._stopping = threading.Event()
        self._commands: dict[str, tuple[list[str], Config]] = {}
        self._states: dict[str, ServiceState] = {}
        self._state_lock = threading.Lock()
        self._spawn_lock = threading.Lock()  # a respawn never slips in after stop() or kill()
        self._killed: set[str] = set()
        self._supervisors: dict[str, threading.Thread] = {}
        self._supervising = False
        self._metrics_pids: dict[str, int] = {}  # the process whose metrics address each state holds

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def gateway_names(self) -> list[str]:
        """The gateway processes' names: "gateway" alone, else gateway-0, gateway-1, ..."""
        if self.gateway_workers == 1:
            return ["gateway"]
        return [f"gateway-{i}" for i in range(self.gateway_workers)]

    def _start_gateways(self) -> None:
        shared = ["-m", "gateway", "--port", str(self.gateway_port)]
        if self.gateway_workers == 1:
            self._spawn("gateway", shared, address=f"127.0.0.1:{self.gateway_port}")
            return
        for name in self.gateway_names():
            own_port = free_port()
            self._spawn(name, [*shared, "--reuse-port", "--own-port", str(own_port)], address=f"127.0.0.1:{own_port}")

    def _wait_for_gateways(self, deadline: float) -> None:
        """Until each gateway process answers /healthz on its own address."""
        for name in self.gateway_names():
            url = f"http://{self._states[name].address}/healthz"
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(url, timeout=2):
                        break
                except OSError:
                    time.sleep(0.2)
            else:
                self.stop()
                raise RuntimeError(f"{name} did not answer on {url}; see {self.log_dir / (name + '.log')}")

    @property
    def state_file(self) -> pathlib.Path:
        return self.cfg.data_path / "run" / "services.json"

    @property
    def targets_file(self) -> pathlib.Path:
        """Prometheus file-SD targets (see the module docstring)."""
        return self.cfg.data_path / "run" / "prometheus_targets.json"

    def service_states(self) -> dict[str, dict]:
        """Each service's state, as written to `state_file` (see the module docstring)."""
        with self._state_lock:
            return {name: dataclasses.asdict(state) for name, state in self._states.items()}

    def _spawn(self, name: str, args: list[str], cfg: Config | None = None, address: str = "") -> subprocess.Popen:
        """Starts service `name` (`address`: what it listens on, its gRPC address by default)."""
        self._commands[name] = (args, cfg or self._service_cfg(name))
        return self._start_process(name, address=address or self.addresses[name])

    def _start_process(self, name: str, **state_changes) -> subprocess.Popen:
        """Starts `name`'s command (again); `state_changes` go into its state with the new pid."""
        args, cfg = self._commands[name]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logfile = open(self.log_dir / f"{name}.log", "ab")
        env = dict(os.environ)
        env.update(cfg.to_env())
        env[PARENT_PID_ENV] = str(os.getpid())  # the service stops when this launcher is gone
        proc = subprocess.Popen(
            [sys.executable, *args], env=env, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        logfile.close()
        self.procs[name] = proc
        self._set_state(name, state="running", pid=proc.pid, serving=False, **state_changes)
        return proc

    def _set_state(self, name: str, **changes) -> None:
        """Updates `name`'s state; a change is written to `state_file` at once."""
        with self._state_lock:
            current = self._states.get(name) or ServiceState()
            updated = dataclasses.replace(current, **changes)
            if name in self._states and updated == current:
                return
            if name not in self._states or updated.state != current.state:
                updated.since = time.time()
            self._states[name] = updated
            self._write_state_file()
            if updated.metrics_address != current.metrics_address:
                write_atomically(self.targets_file, json.dumps(prometheus_targets(self._states), indent=1))

    def _write_state_file(self) -> None:
        """Called with the state lock held."""
        document = {"launcher_pid": os.getpid(), "updated_at": time.time(),
                    "services": {name: dataclasses.asdict(state) for name, state in self._states.items()}}
        write_atomically(self.state_file, json.dumps(document, indent=1))

    def _discover_metrics(self, name: str, pid: int) -> None:
        """Records the metrics address process `pid` of `name` wrote (telemetry.setup), once it has."""
        if self._metrics_pids.get(name) == pid:
            return
        port_files = sorted((self.cfg.data_path / "metrics").glob(f"*-{pid}.port"))
        try:
            port = int(port_files[0].read_text()) if port_files else 0
        except (OSError, ValueError):
            port = 0  # written a moment from now
        if port:
            self._metrics_pids[name] = pid
            self._set_state(name, metrics_address=f"127.0.0.1:{port}")

    def _service_cfg(self, name: str) -> Config:
        """The config `name` runs with: the platform's, presenting its own mesh certificate."""
        cfg = copy.deepcopy(self.cfg)
        cfg.mesh.identity = _server_name(name)
        if name in GRPC_SERVICES and getattr(cfg.services, name) != self.addresses[name]:
            cfg.services.listen = self.addresses[name]  # its target names the fleet: bind its own
        return cfg

    def start(self, timeout_s: float = 60.0) -> None:
        self.cfg.data_path.mkdir(parents=True, exist_ok=True)
        if self.cfg.mesh.tls and not (self.cfg.mesh.tls_dir or self.cfg.mesh.cert_file):  # else the operator's
            issued = ensure_local_ca(tls_dir_of(self.cfg))
            if issued:
                log.info("mesh certificates issued under %s: %s", tls_dir_of(self.cfg), ", ".join(issued))
        for name in GRPC_SERVICES:
            addr = self.service_addresses.get(name) or f"127.0.0.1:{free_port()}"
            setattr(self.cfg.services, name, self.service_targets.get(name) or addr)
            self.addresses[name] = addr
        for name in GRPC_SERVICES:
            self._spawn(name, ["-m", f"{name}_svc"])
        for i in range(self.transcoder_workers):
            self.start_transcoder(i)
        self._start_gateways()
        deadline = time.monotonic() + timeout_s
        for name, addr in self.addresses.items():
            if not wait_for_serving(addr, max(1.0, deadline - time.monotonic()), cfg=self.cfg,
                                    server_name=_server_name(name)):
                self.stop()
                raise RuntimeError(f"{name} did not become SERVING at {addr}; see {self.log_dir / (name + '.log')}")
        self._wait_for_gateways(deadline)
        self._supervising = True
        for name in self.procs:
            self._supervise_in_background(name)

    def start_transcoder(self, index: int) -> str:
        """Starts transcoder worker `index` on a fresh port; returns its gRPC address."""
        name = f"transcoder-{index}"
        cfg = self._service_cfg(name)
        cfg.services.transcoder = f"127.0.0.1:{free_port()}"
        self.addresses[name] = cfg.services.transcoder
        self._spawn(name, ["-m", "transcoder_svc"], cfg)
        if self._supervising:
            self._supervise_in_background(name)
        return cfg.services.transcoder

    def _supervise_in_background(self, name: str) -> None:
        thread = threading.Thread(target=self._supervise, args=(name,), daemon=True, name=f"supervise-{name}")
        self._supervisors[name] = thread
        thread.start()

    def _supervise(self, name: str) -> None:
        """Keeps `name` running until the platform stops or `kill()`s it: restarts it after
        each exit, with the backoff the module docstring describes, forever."""
        backoff = RestartBackoff(self.cfg.launcher.restart_initial_delay_s, self.cfg.launcher.restart_max_delay_s)
        probe = _HealthProbe(self._states[name].address, grpc_health=_server_name(name) != "gateway", cfg=self.cfg,
                             server_name=_server_name(name))
        try:
            while True:
                proc = self.procs[name]
                self._watch(name, proc, probe, backoff)
                reason = exit_reason(proc.returncode)
                exit_fields = {"serving": False, "last_exit_code": proc.returncode, "last_exit_reason": reason,
                               "last_exit_at": time.time()}
                if self._stopping.is_set() or name in self._killed:
                    self._set_state(name, state="down", **exit_fields)
                    return
                delay = backoff.next_delay()
                log.warning("%s %s; restarting it in %.1fs (restart %d)", name, reason, delay,
                            self._states[name].restarts + 1)
                self._set_state(name, state="restarting", restart_delay_s=delay,
                                next_restart_delay_s=backoff.peek(), **exit_fields)
                if self._stopping.wait(delay) or not self._respawn(name):
                    self._set_state(name, state="down")
                    return
        finally:
            probe.close()

    def _watch(self, name: str, proc: subprocess.Popen, probe: _HealthProbe, backoff: RestartBackoff) -> None:
        """Returns when `proc` exits; meanwhile probes its health, and resets `backoff` once
        it has been SERVING for `launcher.restart_reset_after_s` without a break."""
        healthy_since: float | None = None
        while True:
            try:
                proc.wait(timeout=PROBE_INTERVAL_S)
                return
            except subprocess.TimeoutExpired:
                pass
            serving = probe.serving()
            self._discover_metrics(name, proc.pid)
            now = time.monotonic()
            healthy_since = (now if healthy_since is None else healthy_since) if serving else None
            if (healthy_since is not None and backoff.consecutive
                    and now - healthy_since >= self.cfg.launcher.restart_reset_after_s):
                backoff.reset()
                log.info("%s healthy for %.0fs: its restart backoff starts over", name, now - healthy_since)
            self._set_state(name, serving=serving, next_restart_delay_s=backoff.peek())

    def _respawn(self, name: str) -> bool:
        """Starts `name` again unless the platform is stopping or `name` was killed meanwhile."""
        with self._spawn_lock:
            if self._stopping.is_set() or name in self._killed:
                return False
            self._start_process(name, restarts=self._states[name].restarts + 1)
            return True

    def kill(self, name: str) -> None:
        """SIGKILL one process (fault tests); the supervisor will not restart it."""
        with self._spawn_lock:
            self._killed.add(name)
        proc = self.procs[name]
        proc.kill()
        proc.wait()

    def kill_all(self) -> list[int]:
        """SIGKILL every process of this platform and their children (ffmpeg) at once, as if
        its machine were lost (fault tests; psutil is a development dependency). None is
        restarted. Returns the pids killed."""
        import psutil

        with self._spawn_lock:
            self._killed.update(self.procs)
        live = [proc for proc in self.procs.values() if proc.poll() is None]
        for proc in live:  # frozen at once: finding the children takes a while on a busy machine
            os.kill(proc.pid, signal.SIGSTOP)
        victims = []
        for proc in live:
            try:
                parent = psutil.Process(proc.pid)
                victims += [parent, *parent.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for victim in victims:
            try:
                victim.kill()
            except psutil.NoSuchProcess:
                pass
        for proc in self.procs.values():
            proc.wait()
        return [v.pid for v in victims]

    def stop(self, grace_s: float = 15.0) -> None:
        with self._spawn_lock:
            self._stopping.set()
        # Gateway first (no new work), then workers, metadata last (others call it on the way out).
        order = (self.gateway_names() + [n for n in self.procs if n.startswith("transcoder-")]
                 + ["upload", "placement", "search", "webhook", "metadata"])
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
        for thread in self._supervisors.values():
            thread.join(timeout=PROBE_INTERVAL_S + PROBE_TIMEOUT_S)
        for name, proc in self.procs.items():  # those no supervisor watched yet (a failed start)
            if self._states[name].state != "down":
                self._set_state(name, state="down", serving=False, last_exit_code=proc.returncode,
                                last_exit_reason=exit_reason(proc.returncode), last_exit_at=time.time())

    def __enter__(self) -> "Platform":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
