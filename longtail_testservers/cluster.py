"""All the servers at once (the three backends, optionally Keycloak): starts them in parallel,
writes the config that uses the backends, stops them."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import pathlib
import time

from longtail_common.config import load_config
from longtail_testservers.cassandra import CASSANDRA_DEADLINE_S, CassandraServer, start_cassandra
from longtail_testservers.errors import MISSING_JAVA_PREFIX, JavaUnavailableError, TestServerError
from longtail_testservers.jars import java_available, resolve_jars
from longtail_testservers.kafka import KAFKA_DEADLINE_S, KafkaServer, start_kafka
from longtail_testservers.keycloak import KEYCLOAK_DEADLINE_S, MISSING_JAVA21_PREFIX, keycloak_available, start_keycloak
from longtail_testservers.process import STOP_TIMEOUT_S, JavaServer, stop_pid
from longtail_testservers.s3proxy import S3PROXY_DEADLINE_S, S3ProxyServer, start_s3proxy
from longtail_testservers.state import read_state, write_state


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def config_toml(kafka: KafkaServer, cassandra: CassandraServer, s3: S3ProxyServer) -> str:
    lines = ["# Written by `longtail services start`: the real backends on this machine.",
             "# Use with `longtail up --config <this file>`.", "",
             "[backends]", 'metadata = "scylla"', 'objects = "s3"', 'topics = "kafka"', ""]
    sections = (("scylla", cassandra.scylla_config()), ("s3", s3.s3_config()), ("kafka", kafka.kafka_config()))
    for section, cfg in sections:
        lines.append(f"[{section}]")
        for key, value in dataclasses.asdict(cfg).items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def start_all(dir: str | os.PathLike, deadlines: dict[str, float] | None = None,
              with_keycloak: bool = False) -> dict:
    """Start Kafka, Cassandra and S3Proxy (and Keycloak, if asked) in parallel under `dir`.

    Writes `dir/longtail.toml` (a config using all three) and `dir/servers.json`. Returns
    {"kafka": KafkaServer, "cassandra": CassandraServer, "s3proxy": S3ProxyServer,
     ["keycloak": KeycloakServer,] "config": Config, "config_path": Path, "dir": Path, "resolve_s": float}.
    If any server fails, the others are stopped and TestServerError is raised.
    """
    root = pathlib.Path(dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    ok, reason = java_available()
    if not ok:
        raise JavaUnavailableError(MISSING_JAVA_PREFIX + reason)
    ok, reason = keycloak_available() if with_keycloak else (True, "")
    if not ok:
        raise JavaUnavailableError(MISSING_JAVA21_PREFIX + reason)
    deadlines = deadlines or {}
    t0 = time.monotonic()
    resolve_jars()
    resolve_s = round(time.monotonic() - t0, 2)
    starters = {
        "cassandra": lambda: start_cassandra(root / "cassandra", deadlines.get("cassandra", CASSANDRA_DEADLINE_S)),
        "kafka": lambda: start_kafka(root / "kafka", deadlines.get("kafka", KAFKA_DEADLINE_S)),
        "s3proxy": lambda: start_s3proxy(root / "s3proxy", deadlines.get("s3proxy", S3PROXY_DEADLINE_S)),
    }
    if with_keycloak:
        starters["keycloak"] = lambda: start_keycloak(root / "keycloak", deadlines.get("keycloak", KEYCLOAK_DEADLINE_S))
    started: dict[str, JavaServer] = {}
    errors: dict[str, BaseException] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(starters), thread_name_prefix="testserver") as pool:
        futures = {pool.submit(fn): name for name, fn in starters.items()}
        for fut in concurrent.futures.as_completed(futures):
            name = futures[fut]
            try:
                started[name] = fut.result()
            except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
                errors[name] = exc
    if errors:
        for server in started.values():
            server.stop()
        msg = "\n\n".join(f"[{name}] {exc}" for name, exc in errors.items())
        raise TestServerError(f"could not start {', '.join(errors)}:\n{msg}")
    kafka, cassandra, s3 = started["kafka"], started["cassandra"], started["s3proxy"]
    config_path = root / "longtail.toml"
    config_path.write_text(config_toml(kafka, cassandra, s3))
    total_s = round(time.monotonic() - t0, 2)
    write_state(root, started, resolve_s, total_s)
    cfg = load_config(config_path, env={})
    return {**started, "config": cfg, "config_path": config_path, "dir": root, "resolve_s": resolve_s,
            "total_s": total_s}


def stop_all(dir: str | os.PathLike, timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    """Stop the servers recorded in `dir/servers.json` (in parallel). Returns the names stopped."""
    state = read_state(dir)
    if not state:
        return []
    stopped: list[str] = []

    def stop_one(name, info):
        if stop_pid(int(info["pid"]), info["dir"], timeout_s):
            stopped.append(name)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda item: stop_one(*item), state.get("servers", {}).items()))
    return sorted(stopped)
