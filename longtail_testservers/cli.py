"""`longtail services start|stop|status --dir DIR`: the test servers from the command line."""
from __future__ import annotations

import argparse
import logging
import os
import pathlib
import sys

from longtail_testservers.cluster import start_all, stop_all
from longtail_testservers.errors import MISSING_JAVA_PREFIX, TestServerError
from longtail_testservers.jars import java_available, server_versions
from longtail_testservers.keycloak import MISSING_JAVA21_PREFIX, REALM_FILE, keycloak_available
from longtail_testservers.process import HOST, pid_alive, pid_cmdline
from longtail_testservers.prometheus import MISSING_PROMETHEUS_PREFIX, prometheus_available, start_observability
from longtail_testservers.state import add_to_state, read_state

log = logging.getLogger("longtail.testservers")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="longtail services",
                                     description="Local Kafka, Cassandra and S3Proxy for the real backends, "
                                                 "and Keycloak for the OIDC sign-in")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--dir", required=True, help="where the servers keep config, data and logs")
    parser.add_argument("--data-dir", default=".longtail",
                        help="the data dir of the platform Prometheus scrapes (`longtail up --data-dir`; default ./.longtail)")
    parser.add_argument("--without-keycloak", action="store_true",
                        help="start the backends only (Keycloak needs Java 21+ and a minute of CPU)")
    args = parser.parse_args(argv)
    root = pathlib.Path(args.dir).resolve()

    if args.action == "stop":
        stopped = stop_all(root)
        print(f"stopped {', '.join(stopped)}" if stopped else f"no servers running from {root}")
        return 0

    if args.action == "status":
        state = read_state(root)
        if not state:
            print(f"no servers started from {root}")
            return 1
        running = 0
        for name, info in state["servers"].items():
            alive = pid_alive(int(info["pid"])) and info["dir"] in pid_cmdline(int(info["pid"]))
            running += alive
            print(f"{name:10} pid {info['pid']:>7}  port {info['port']:>5}  {'running' if alive else 'stopped'}")
        print(f"config: {state['config']}")
        return 0 if running == len(state["servers"]) else 1

    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("  %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    state = read_state(root)
    if state and any(pid_alive(int(i["pid"])) and i["dir"] in pid_cmdline(int(i["pid"]))
                     for i in state["servers"].values()):
        print(f"servers from {root} are already running; `longtail services stop --dir {args.dir}` first",
              file=sys.stderr)
        return 1
    ok, reason = java_available()
    if not ok:
        print(MISSING_JAVA_PREFIX + reason, file=sys.stderr)
        return 2
    with_keycloak = not args.without_keycloak
    if with_keycloak:
        ok, why = keycloak_available()
        if not ok:
            print(MISSING_JAVA21_PREFIX + why + "\n(or start the backends alone with --without-keycloak)",
                  file=sys.stderr)
            return 2
        reason += f"; Keycloak on {why}"
    print(f"starting Kafka, Cassandra, S3Proxy{' and Keycloak' * with_keycloak} under {root} ({reason}) ...",
          flush=True)
    try:
        servers = start_all(root, with_keycloak=with_keycloak)
    except TestServerError as exc:
        print(f"longtail services start: {exc}", file=sys.stderr)
        return 1
    _print_started(servers)
    code = _start_observability(root, pathlib.Path(args.data_dir).resolve())
    _print_next_steps(servers, args.dir, args.data_dir)
    return code


def _print_started(servers: dict) -> None:
    versions = server_versions()
    for name, label in (("kafka", "Kafka"), ("cassandra", "Cassandra"), ("s3proxy", "S3Proxy"),
                        ("keycloak", "Keycloak")):
        if name not in servers:
            continue
        s = servers[name]
        print(f"  {label:9} {versions[name]:7} {HOST}:{s.port:<5}  pid {s.pid:<7}  ready in {s.startup_s:5.1f}s"
              f"  log {s.log_file}")
    print(f"config for the real backends: {servers['config_path']}")


def _print_next_steps(servers: dict, dir_arg: str, data_dir: str) -> None:
    print(f"  longtail up --config {servers['config_path']} --data-dir {data_dir}")
    if "keycloak" in servers:
        kc = servers["keycloak"]
        print(f"OIDC issuer {kc.issuer}, client {kc.client_id} (TEST secret {kc.client_secret}), "
              f"users {', '.join(kc.users)} (TEST passwords in deploy/keycloak/{REALM_FILE.name})")
    print(f"stop with: longtail services stop --dir {dir_arg}")


def _start_observability(root: pathlib.Path, data_dir: pathlib.Path) -> int:
    """Prometheus and Alertmanager after the JVM servers; without their binaries, a skip
    (exit code 0) outside CI and a failure (2) in CI, like Java for the others."""
    ok, reason = prometheus_available()
    if not ok:
        print(f"skipping Prometheus and Alertmanager: {MISSING_PROMETHEUS_PREFIX}{reason}", file=sys.stderr)
        return 2 if os.environ.get("CI", "").strip() else 0
    try:
        servers = start_observability(root, data_dir)
    except TestServerError as exc:
        print(f"longtail services start: {exc}", file=sys.stderr)
        return 1
    add_to_state(root, servers)
    for label, s in (("Prometheus", servers["prometheus"]), ("Alertmanager", servers["alertmanager"])):
        print(f"  {label:12} {s.url:<22}  pid {s.pid:<7}  ready in {s.startup_s:5.1f}s  log {s.log_file}")
    print(f"Prometheus scrapes what the launcher lists in {data_dir / 'run' / 'prometheus_targets.json'}")
    return 0
