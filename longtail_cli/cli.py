"""The `longtail` command.

  longtail up [--data-dir DIR] [--port N] [--config FILE] [--workers N]
  longtail demo [--url URL] [--token T | --data-dir DIR | --config FILE]
  longtail services start|stop --dir DIR [--data-dir D]   (not in the service image)
  longtail traces VIDEO_ID [--data-dir DIR] [--config FILE] [--all]
  longtail status [--data-dir DIR] [--config FILE] [--json]
  longtail metadata migrate [--config FILE]
  longtail users add NAME --email E [--admin] | list | disable NAME | enable NAME | password-link NAME
  longtail tokens create NAME [--expires-days N] [--label L] | list NAME | revoke NAME TOKEN_ID
                                                (users/tokens: [--data-dir DIR] [--config FILE])
  longtail certs [--dir DIR | --data-dir DIR] [--config FILE] [NAME ...]
  longtail placement evaluate ...               (not in the service image)
  longtail placement run ...
  longtail placement qoe [--date D] [--days N] [--json]   (player-measured QoE, penalty per region)
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import pathlib
import signal
import sys
import tempfile
import threading
import time

import httpx

from longtail_common.config import load_config


def _load_config_or_exit(path: str | None, command: str):
    """The config, or a one-line error (exit 2) for a missing file or a bad key."""
    try:
        return load_config(path)
    except FileNotFoundError:
        sys.exit(f"longtail {command}: config file {path!r} not found")
    except (ValueError, OSError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        sys.exit(f"longtail {command}: bad config {path or '(environment)'}: {exc}")


def cmd_up(args) -> int:
    from longtail_cli.launcher import Platform

    cfg = _load_config_or_exit(args.config, "up")
    if args.data_dir:
        cfg.data_dir = args.data_dir
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    platform = Platform(cfg, gateway_port=args.port, transcoder_workers=args.workers,
                        gateway_workers=args.gateway_workers or len(os.sched_getaffinity(0)))
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"starting Longtail (data in {cfg.data_path}, logs in {platform.log_dir}) ...", flush=True)
    try:
        platform.start()
    except RuntimeError as exc:
        print(f"longtail up: {exc}", file=sys.stderr)
        return 1
    print(f"Longtail is up: {platform.gateway_url}  (try `longtail demo --url {platform.gateway_url}`; Ctrl-C stops)",
          flush=True)
    stop.wait()
    print("stopping ...", flush=True)
    platform.stop()
    print("stopped", flush=True)
    return 0


def make_test_clip(path: str, seconds: int = 10, height: int = 720) -> None:
    """A reproducible clip from ffmpeg's own sources (moving pattern + tone)."""
    import ffmpeg

    from longtail_common import ffmpeg_run

    width = height * 16 // 9
    pattern = ffmpeg.input(f"testsrc2=size={width}x{height}:rate=30:duration={seconds}", f="lavfi")
    tone = ffmpeg.input(f"sine=frequency=440:sample_rate=48000:duration={seconds}", f="lavfi")
    clip = ffmpeg.output(pattern, tone, path, **{"c:v": "libx264", "preset": "veryfast", "pix_fmt": "yuv420p",
                                                "c:a": "aac", "shortest": None})
    ffmpeg_run.run(ffmpeg_run.command(clip), 3600, "making the test clip")  # benches make long ones


def upload_file(client: httpx.Client, base: str, path: str, title: str, channel_id: str, chunk: int = 1 << 20) -> str:
    size = os.path.getsize(path)
    resp = client.post(f"{base}/v1/videos", json={"title": title, "description": "Uploaded by longtail demo",
                                                  "channel_id": channel_id, "size_bytes": size})
    resp.raise_for_status()
    created = resp.json()
    upload_url = created["upload_url"]
    with open(path, "rb") as fh:
        offset = 0
        while offset < size:
            data = fh.read(chunk)
            r = client.patch(upload_url, content=data, headers={
                "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream"})
            r.raise_for_status()
            offset = int(r.headers["Upload-Offset"])
    return created["id"]


def wait_ready(client: httpx.Client, base: str, video_id: str, timeout_s: float = 600) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        video = client.get(f"{base}/v1/videos/{video_id}").json()
        if video["status"] in ("READY", "FAILED"):
            return video
        time.sleep(0.5)
    raise TimeoutError(f"video {video_id} not READY after {timeout_s}s")


def local_api_token(cfg, username: str, days: int = 1) -> str:
    """A new personal API token of `username` (made, password-less, if absent), written to
    the platform's account store directly as `longtail tokens create` does."""
    from longtail_common.adapters import make_account_store
    from longtail_common.ports import NotFoundError
    from metadata_svc.accounts import Accounts

    store = make_account_store(cfg)
    try:
        accounts = Accounts(store, cfg.auth)
        try:
            account = accounts.by_username(username)
        except NotFoundError:
            account = accounts.create(username)
        return accounts.create_token(account.account_id, display_name="demo",
                                     expire_time_us=accounts.now_us() + days * 86_400_000_000)[1]
    finally:
        store.close()


def cmd_demo(args) -> int:
    base = args.url.rstrip("/")
    token = args.token or os.environ.get("LONGTAIL_TOKEN", "")
    if not token:  # the platform runs on this machine: sign in as its "demo" account
        cfg = _load_config_or_exit(args.config, "demo")
        if args.data_dir:
            cfg.data_dir = args.data_dir
        token = local_api_token(cfg, "demo")
    with tempfile.TemporaryDirectory() as tmp, \
            httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        clip = os.path.join(tmp, "demo.mp4")
        print("generating a 10 s 720p test clip ...", flush=True)
        make_test_clip(clip)
        started = time.monotonic()
        video_id = upload_file(client, base, clip, "Longtail demo clip", "demo")
        print(f"uploaded video {video_id}; waiting for READY ...", flush=True)
        video = wait_ready(client, base, video_id)
        if video["status"] != "READY":
            print(f"video FAILED: {video.get('failure_reason')}", file=sys.stderr)
            return 1
        print(f"READY after {time.monotonic() - started:.1f}s from upload start", flush=True)
        watch = client.get(f"{base}/v1/videos/{video_id}/watch", params={"region": args.region, "client": "web"})
        watch.raise_for_status()
        print(json.dumps(watch.json(), indent=2))
    return 0


def cmd_certs(args) -> int:
    """Creates (or renews) the mesh CA and a certificate per service; what is valid is kept."""
    from longtail_common.mesh_tls import LOCAL_IDENTITIES, ensure_local_ca, tls_dir_of

    cfg = _load_config_or_exit(args.config, "certs")
    if args.data_dir:
        cfg.data_dir = args.data_dir
    directory = pathlib.Path(args.dir) if args.dir else tls_dir_of(cfg)
    issued = ensure_local_ca(directory, args.names or LOCAL_IDENTITIES)
    print(f"mesh CA and certificates in {directory.resolve()}; issued now: {', '.join(issued) or 'none'}")
    return 0


def cmd_traces(args) -> int:
    """Prints the traces of one video's journey as waterfalls (embedded setup: local span files)."""
    from longtail_common import telemetry
    from longtail_common.config import load_config

    cfg = load_config(args.config)
    if args.data_dir:
        cfg.data_dir = args.data_dir
    spans = telemetry.load_spans(cfg.data_path)
    found = telemetry.traces_for_video(spans, args.video_id)
    if not found:
        print(f"no spans for video {args.video_id} under {cfg.data_path / 'traces'}", file=sys.stderr)
        return 1
    for trace_spans in sorted(found.values(), key=lambda t: min(s["start_ns"] for s in t)):
        if args.all or any(s["service"] != "gateway" for s in trace_spans):
            print(telemetry.waterfall(trace_spans))
            print()
    return 0


def cmd_status(args) -> int:
    """One screen on a running platform (see longtail_cli/status.py)."""
    from longtail_cli import status

    cfg = _load_config_or_exit(args.config, "status")
    if args.data_dir:
        cfg.data_dir = str(pathlib.Path(args.data_dir).resolve())
    report = status.collect(cfg)
    print(json.dumps(report, indent=1) if args.json else status.render(report))
    return 0 if report["launcher"] and all(s["healthy"] for s in report["services"].values()) else 1


def cmd_metadata(args) -> int:
    """`longtail metadata migrate`: bring the metadata schema up to date (idempotent)."""
    cfg = _load_config_or_exit(args.config, "metadata migrate")
    if cfg.backends.metadata == "sqlite":
        print("metadata backend is sqlite: its schema is created when the store opens; nothing to migrate")
        return 0
    if cfg.backends.metadata != "scylla":
        print(f"longtail metadata migrate: unknown metadata backend {cfg.backends.metadata!r}", file=sys.stderr)
        return 2
    from longtail_common.adapters import scylla_metadata
    from longtail_common.ports import PortError

    try:
        applied = scylla_metadata.migrate(cfg.scylla)
    except (PortError, ValueError) as exc:
        print(f"longtail metadata migrate: {exc}", file=sys.stderr)
        return 1
    where = f"keyspace {cfg.scylla.keyspace} at {','.join(cfg.scylla.contact_points)}:{cfg.scylla.port}"
    if applied:
        print(f"applied schema versions {', '.join(map(str, applied))} to {where}")
    else:
        print(f"schema of {where} is up to date (version {scylla_metadata.MIGRATIONS[-1][0]})")
    return 0


# -- accounts ------------------------------------------------------------------------------
# `longtail users` and `longtail tokens` open the account store directly, as `longtail up`'s
# metadata_svc does, rather than calling metadata_svc over gRPC: they then work before the
# platform's first start (to make the first admin) as well as while it runs (SQLite in WAL
# mode takes a second writer, Scylla any number), need no service address (`longtail up`
# picks its ports at start), and never need a principal from the gateway: whoever can open
# the data directory or the Scylla keyspace is already trusted with everything in it. The
# rules are the service's own (`metadata_svc.accounts.Accounts`), and metadata_svc caches
# nothing, so a disabled account or a new token counts at once.

def _open_accounts(args, command: str):
    """(config, Accounts on the configured store); exits 1 if a read-only command finds no store."""
    from longtail_common.adapters import make_account_store
    from longtail_common.ports import PortError
    from metadata_svc.accounts import Accounts

    cfg = _load_config_or_exit(args.config, command)
    if args.data_dir:
        cfg.data_dir = args.data_dir
    sqlite_file = cfg.data_path / "metadata.sqlite3"
    if cfg.backends.metadata == "sqlite" and command != "users add" and not sqlite_file.exists():
        sys.exit(f"longtail {command}: no Longtail data in {cfg.data_path} (wrong --data-dir?)")
    try:
        return cfg, Accounts(make_account_store(cfg), cfg.auth)
    except (PortError, ValueError) as exc:
        sys.exit(f"longtail {command}: cannot open the account store: {exc}")


def _when(us: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(us / 1e6)) if us else "never"


def _users_add(cfg, accounts, args) -> None:
    account = accounts.create(args.name, email=args.email, admin=args.admin)
    token, expire_us = accounts.create_password_link(account.account_id)
    base = (cfg.platform.public_url or f"http://127.0.0.1:{args.port}").rstrip("/")
    print(f"created {'admin ' if account.admin else ''}account {account.username} ({account.account_id})")
    print(f"its password can be set once, until {_when(expire_us)}, at:")
    print(f"{base}/account/set-password?token={token}")


def _users_list(cfg, accounts, args) -> None:
    records, cursor = accounts.list_accounts(500, None)
    while cursor:
        page, cursor = accounts.list_accounts(500, cursor)
        records += page
    rows = [("USERNAME", "EMAIL", "ADMIN", "DISABLED", "PASSWORD", "CREATED")]
    rows += [(r.username, r.email or "-", "yes" if r.admin else "no", "yes" if r.disabled else "no",
              "set" if r.password_hash else "not set", _when(r.create_time_us))
             for r in sorted(records, key=lambda r: r.username)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _users_set_disabled(cfg, accounts, args) -> None:
    disabled = args.action == "disable"
    account = accounts.update(accounts.by_username(args.name).account_id, disabled=disabled)
    print(f"account {account.username} disabled: it cannot sign in and its API tokens stop working" if disabled
          else f"account {account.username} enabled")


def _users_password_link(cfg, accounts, args) -> None:
    token, expire_us = accounts.create_password_link(accounts.by_username(args.name).account_id)
    base = (cfg.platform.public_url or f"http://127.0.0.1:{args.port}").rstrip("/")
    print(f"the password of {args.name} can be set once, until {_when(expire_us)}, at:")
    print(f"{base}/account/set-password?token={token}")


def _tokens_create(cfg, accounts, args) -> None:
    if args.expires_days is not None and args.expires_days <= 0:
        raise ValueError("--expires-days must be a positive number of days")
    account = accounts.by_username(args.name)
    expire_us = accounts.now_us() + args.expires_days * 86_400_000_000 if args.expires_days else 0
    record, secret = accounts.create_token(account.account_id, display_name=args.label, expire_time_us=expire_us)
    print(f"created API token {record.token_id} for {account.username} (expires: {_when(record.expire_time_us)})")
    print("it is shown only now; send it as `Authorization: Bearer <token>`:")
    print(secret)


def _tokens_list(cfg, accounts, args) -> None:
    now = accounts.now_us()
    for t in accounts.list_tokens(accounts.by_username(args.name).account_id):
        expired = " (expired)" if t.expire_time_us and t.expire_time_us <= now else ""
        print(f"{t.token_id}  {t.display_name or '-'}  created {_when(t.create_time_us)}  "
              f"expires {_when(t.expire_time_us)}{expired}")


def _tokens_revoke(cfg, accounts, args) -> None:
    accounts.revoke_token(accounts.by_username(args.name).account_id, args.token_id)
    print(f"revoked API token {args.token_id} of {args.name}")


def cmd_accounts(args) -> int:
    """`longtail users ...` / `longtail tokens ...`: exit 2 for input the rules refuse, 1 for
    an unknown account or token, a taken username, or a store that cannot be reached."""
    from longtail_common.ports import AlreadyExistsError, NotFoundError, PortError
    from metadata_svc.accounts import FailedPreconditionError

    command = f"{args.command} {args.action}"
    cfg, accounts = _open_accounts(args, command)
    try:
        args.run(cfg, accounts, args)
        return 0
    except ValueError as exc:
        print(f"longtail {command}: {exc}", file=sys.stderr)
        return 2
    except (NotFoundError, AlreadyExistsError, FailedPreconditionError, PortError) as exc:
        print(f"longtail {command}: {exc}", file=sys.stderr)
        return 1
    finally:
        accounts.store.close()


def _add_account_parsers(sub) -> None:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--data-dir", default=None, help="the platform's data dir (default ./.longtail)")
    where.add_argument("--config", default=None, help="TOML config file (or LONGTAIL_CONFIG)")
    link = argparse.ArgumentParser(add_help=False)
    link.add_argument("--port", type=int, default=8080,
                      help="gateway port for the link when platform.public_url is not set (default 8080)")

    users = sub.add_parser("users", help="accounts: add, list, disable, enable, password-link")
    users.set_defaults(func=cmd_accounts)
    actions = users.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", parents=[where, link], help="create an account; prints a one-time password link")
    add.add_argument("name")
    add.add_argument("--email", required=True)
    add.add_argument("--admin", action="store_true", help="may act on every channel and account")
    add.set_defaults(run=_users_add)
    actions.add_parser("list", parents=[where], help="every account").set_defaults(run=_users_list)
    for action, what in (("disable", "no sign-in, API tokens stop working"), ("enable", "undo disable")):
        p = actions.add_parser(action, parents=[where], help=what)
        p.add_argument("name")
        p.set_defaults(run=_users_set_disabled)
    reset = actions.add_parser("password-link", parents=[where, link], help="a new one-time password link")
    reset.add_argument("name")
    reset.set_defaults(run=_users_password_link)

    tokens = sub.add_parser("tokens", help="personal API tokens: create, list, revoke")
    tokens.set_defaults(func=cmd_accounts)
    actions = tokens.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=[where], help="a new token, printed on the last line")
    create.add_argument("name")
    create.add_argument("--expires-days", type=int, default=None, help="stop working after N days (default never)")
    create.add_argument("--label", default="", help="a name for the token, e.g. ci")
    create.set_defaults(run=_tokens_create)
    listing = actions.add_parser("list", parents=[where], help="an account's tokens (never their secrets)")
    listing.add_argument("name")
    listing.set_defaults(run=_tokens_list)
    revoke = actions.add_parser("revoke", parents=[where], help="a token stops working at once")
    revoke.add_argument("name")
    revoke.add_argument("token_id")
    revoke.set_defaults(run=_tokens_revoke)


def _import_dev_only(module: str, command: str):
    """`module`, from a package the service image does not ship (the test servers, placement
    research); where it is not installed, exit 2 saying so instead of a traceback."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if not exc.name or not module.startswith(exc.name):
            raise  # the package is there but one of its own imports failed
        print(f"longtail {command}: {module.split('.')[0]} is not installed (the service image does not ship it)",
              file=sys.stderr)
        sys.exit(2)


def cmd_services(args) -> int:
    services_cli = _import_dev_only("longtail_testservers.cli", "services")
    return services_cli.main([args.action, "--dir", args.dir, "--data-dir", args.data_dir])


def cmd_placement(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: longtail placement {evaluate,run,qoe} ...")
        return 0 if argv else 2
    if argv[0] == "evaluate":
        evaluate_cli = _import_dev_only("placement_research.evaluate_cli", "placement evaluate")
        return evaluate_cli.main(argv[1:])
    if argv[0] == "run":
        from placement_svc.daily import main as daily_main

        return daily_main(argv[1:])
    if argv[0] == "qoe":
        from placement_svc.qoe_report import main as qoe_main

        return qoe_main(argv[1:])
    print(f"longtail placement: unknown command {argv[0]!r}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "placement":
        sys.exit(cmd_placement(argv[1:]))
    parser = argparse.ArgumentParser(prog="longtail", description="Longtail video platform")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run every service and the gateway on this machine")
    up.add_argument("--data-dir", default=None, help="where all data lives (default ./.longtail)")
    up.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    up.add_argument("--config", default=None, help="TOML config file (default: embedded backends)")
    up.add_argument("--workers", type=int, default=1, help="transcoder workers (default 1)")
    up.add_argument("--gateway-workers", type=int, default=0,
                    help="gateway processes sharing the port, each with its own cache (default: the core count)")
    up.set_defaults(func=cmd_up)

    demo = sub.add_parser("demo", help="upload a generated clip, wait for READY, print its watch payload")
    demo.add_argument("--url", default="http://127.0.0.1:8080")
    demo.add_argument("--region", default="US")
    demo.add_argument("--token", default="", help="personal API token (default: $LONGTAIL_TOKEN, else one made "
                                                   "for the account `demo` in the local platform's data)")
    demo.add_argument("--data-dir", default=None, help="the local platform's data (default ./.longtail)")
    demo.add_argument("--config", default=None, help="the local platform's TOML config")
    demo.set_defaults(func=cmd_demo)

    services = sub.add_parser("services", help="start/stop local Kafka, Cassandra, S3Proxy (Java), Prometheus, Alertmanager")
    services.add_argument("action", choices=["start", "stop"])
    services.add_argument("--dir", required=True)
    services.add_argument("--data-dir", default=".longtail", help="the platform Prometheus scrapes (longtail up --data-dir)")
    services.set_defaults(func=cmd_services)

    traces = sub.add_parser("traces", help="print one video's traces as a waterfall (embedded: local span files)")
    traces.add_argument("video_id")
    traces.add_argument("--data-dir", default=None, help="the platform's data dir (default ./.longtail)")
    traces.add_argument("--config", default=None)
    traces.add_argument("--all", action="store_true", help="also traces that stayed in the gateway (reads, polls)")
    traces.set_defaults(func=cmd_traces)

    status = sub.add_parser("status", help="health, restarts, topic lag, dead letters, videos, last errors")
    status.add_argument("--data-dir", default=None, help="the platform's data dir (default ./.longtail)")
    status.add_argument("--config", default=None)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    metadata = sub.add_parser("metadata", help="metadata store administration")
    metadata.add_argument("action", choices=["migrate"], help="migrate: create/upgrade the schema (idempotent)")
    metadata.add_argument("--config", default=None, help="TOML config file (or LONGTAIL_CONFIG)")
    metadata.set_defaults(func=cmd_metadata)

    _add_account_parsers(sub)
    certs = sub.add_parser("certs", help="create the service mesh's CA and certificates (mutual TLS), or renew them")
    certs.add_argument("names", nargs="*", help="identities (default: every service, gateway and admin)")
    certs.add_argument("--dir", default=None, help="where to write them (default mesh.tls_dir, or DATA_DIR/tls: where `longtail up` looks)")
    certs.add_argument("--data-dir", default=None, help="the platform's data dir (default ./.longtail)")
    certs.add_argument("--config", default=None)
    certs.set_defaults(func=cmd_certs)

    sub.add_parser("placement", help="placement model: evaluate | run | qoe")

    args = parser.parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
