"""servers.json: which servers run from a directory (pids, ports, dirs), for `stop` and `status`."""
from __future__ import annotations

import json
import os
import pathlib
import time

from longtail_testservers.jars import cache_dir, server_versions
from longtail_testservers.process import JavaServer


def write_state(root: pathlib.Path, servers: dict[str, JavaServer], resolve_s: float, total_s: float) -> None:
    state = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": str(root / "longtail.toml"),
        "versions": server_versions(),
        "jar_cache": str(cache_dir()),
        "resolve_s": resolve_s,
        "total_s": total_s,
        "servers": {name: server.to_json() for name, server in servers.items()},
    }
    tmp = root / "servers.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, root / "servers.json")


def add_to_state(root: pathlib.Path, servers: dict[str, JavaServer]) -> None:
    """Adds `servers` (started after the others: Prometheus, Alertmanager) to servers.json."""
    state = read_state(root)
    state["servers"].update({name: server.to_json() for name, server in servers.items()})
    tmp = root / "servers.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, root / "servers.json")


def update_state_pid(server: JavaServer) -> None:
    """After a restart, point servers.json (if this server is in one) at the new pid."""
    path = server.dir.parent / "servers.json"
    state = read_state(server.dir.parent)
    if not state or server.name not in state.get("servers", {}):
        return
    if state["servers"][server.name].get("dir") != str(server.dir):
        return
    state["servers"][server.name] = server.to_json()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def read_state(dir: str | os.PathLike) -> dict | None:
    path = pathlib.Path(dir).resolve() / "servers.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())
