"""HAProxy (Debian's package) as the load balancer in front of several gateways on one
machine: the fleet tests and the node-loss benchmark put their nodes behind it.

What it is configured to do is what a production balancer in front of the gateways does:

* round robin per request over the gateways, each health-checked on `GET /healthz` (200 =
  in; 503, a refused connection or a timeout = out after `fall` checks, back after `rise`);
* when every gateway fails its checks at once, traffic goes to all of them anyway (fail
  open, `fail_open`) rather than nowhere;
* a request that could not be sent (connection refused: a dead node not yet marked down)
  is sent to another gateway (`retry-on conn-failure`, `option redispatch`); an idempotent
  one (GET, HEAD) that got no answer (the node died while it was served) is sent again too
  (HAProxy's layer-7 retries), never a POST or a PATCH, whose effect may have happened;
* every answer names the gateway that gave it (`X-Longtail-Node`), for the test's report;
* tus PATCHes go through a backend of their own (the same servers, tracking the same
  checks), so `sessions_on(node, "uploads")` tells an upload in flight on a node.

`server_states()` reads each server's state (UP, DOWN, ...) from the admin socket.
"""
from __future__ import annotations

import csv
import io
import pathlib
import shutil
import socket
import subprocess
import time

from longtail_testservers.errors import TestServerError

HOST = "127.0.0.1"
MISSING_HAPROXY_PREFIX = "HAProxy is needed for the fleet tests (Debian's haproxy: `make haproxy`): "
# Health checks: every 500 ms while up, 250 ms while changing state; three failures take a
# gateway out (a dead node refuses the connection at once: out in about a second), two
# successes bring it back. A check may take `timeout check` (2 s): a gateway slow under load
# is not a dead one, and draining it would move its load onto the others (HAProxy's default,
# the 500 ms interval, drained the survivor of a lost node on a loaded machine).
CHECK = "inter 500ms fastinter 250ms downinter 1s fall 3 rise 2"
CHECK_TIMEOUT = "2s"


def haproxy_available() -> tuple[bool, str]:
    if shutil.which("haproxy") is None:
        return False, "no `haproxy` on PATH"
    return True, "haproxy found"


def config_text(port: int, servers: dict[str, str], socket_path: pathlib.Path) -> str:
    """The configuration: one frontend on `port`, one backend of `servers` (name -> host:port)."""
    lines = [
        "global",
        "  maxconn 4096",
        f"  stats socket {socket_path} mode 600 level admin",
        "  log stdout format raw local0",  # haproxy.log: one line per request, with its end state
        "defaults",
        "  mode http",
        "  log global",
        "  option httplog",
        "  timeout connect 2s",
        "  timeout client 120s",
        "  timeout server 120s",
        "  timeout http-request 30s",
        f"  timeout check {CHECK_TIMEOUT}",
        "  retries 3",
        "  option redispatch 1",
        "  retry-on conn-failure empty-response response-timeout",
        "frontend fleet",
        f"  bind {HOST}:{port}",
        "  use_backend uploads if { method PATCH } { path_beg /v1/uploads/ }",
        "  default_backend gateways",
        "backend gateways",
        "  balance roundrobin",
        "  option httpchk GET /healthz",
        "  http-check expect status 200",
        # Layer-7 retries replay a request: only those whose effect cannot have happened twice.
        "  http-request disable-l7-retry unless METH_GET || METH_HEAD",
        "  http-response set-header X-Longtail-Node %s",
        f"  default-server {CHECK}",
    ]
    lines += [f"  server {name} {address} check" for name, address in servers.items()]
    lines += fail_open(servers)
    # tus PATCHes: the same gateways (their state follows the checks above), a backend of their
    # own so that a long upload is told apart from the short calls (`sessions_on`).
    lines += ["backend uploads", "  balance roundrobin", "  http-request disable-l7-retry",
              "  http-response set-header X-Longtail-Node %s"]
    lines += [f"  server {name} {address} track gateways/{name}" for name, address in servers.items()]
    lines += fail_open(servers)
    return "\n".join(lines) + "\n"


def fail_open(servers: dict[str, str]) -> list[str]:
    """Every gateway again as an unchecked backup, used only while every checked one is out:
    when the checks fail everywhere at once (overload, or /healthz failing on all of them),
    sending traffic to whichever answers beats refusing all of it (Envoy's "panic
    threshold"); a dead one refuses the connection and the request goes to another."""
    return ["  option allbackups"] + [f"  server {name}.open {address} backup" for name, address in servers.items()]


class HAProxy:
    """One HAProxy process in the foreground, its config and admin socket under `directory`."""

    def __init__(self, directory: pathlib.Path, port: int, servers: dict[str, str]):
        self.directory = pathlib.Path(directory)
        self.port = port
        self.servers = dict(servers)
        self.socket_path = self.directory / "admin.sock"
        self.config_path = self.directory / "haproxy.cfg"
        self.log_path = self.directory / "haproxy.log"
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        """Starts it and waits until every server passed its health checks."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(config_text(self.port, self.servers, self.socket_path))
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(self.config_path)], capture_output=True, text=True)
        if check.returncode != 0:
            raise TestServerError(f"haproxy rejects {self.config_path}: {check.stderr or check.stdout}")
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.config_path)], stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise TestServerError(f"haproxy exited with {self._proc.returncode}; see {self.log_path}")
            try:
                if set(self.server_states().values()) == {"UP"}:
                    return
            except OSError:
                pass  # the socket is not there yet
            time.sleep(0.2)
        self.stop()
        raise TestServerError(f"haproxy's servers did not all pass their health checks in {timeout_s}s: "
                              f"see {self.log_path}")

    def command(self, line: str) -> str:
        """One admin socket command's answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def _stats(self, backend: str) -> dict[str, dict]:
        text = self.command("show stat").lstrip("# ")
        return {row["svname"]: row for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == backend and row["svname"] in self.servers}

    def server_states(self) -> dict[str, str]:
        """Each gateway server's state as the balancer sees it: UP, DOWN, `UP 1/2`, ..."""
        return {name: row["status"] for name, row in self._stats("gateways").items()}

    def sessions_on(self, server: str, backend: str = "gateways") -> int:
        """Requests of `backend` being served by `server` now (its `scur`)."""
        return int(self._stats(backend)[server]["scur"] or 0)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
