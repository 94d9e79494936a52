"""Run the gateway: `python -m gateway --port 8080` (config from LONGTAIL_* env).

Several gateway processes share one port with `--reuse-port` (SO_REUSEPORT: the kernel
spreads new connections over them), each with its own cache, consumer and metrics; the
launcher (`longtail up --gateway-workers N`) starts them. `--own-port` also serves this
process alone on a second port, for the probes and checks that must reach one process.
"""
import argparse
import socket

import uvicorn

from gateway.app import create_app
from longtail_common.config import load_config
from longtail_common.runtime import setup_logging


def listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say they are TCP (a
    # response's second write would otherwise wait ~40 ms for the client's delayed ACK).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--reuse-port", action="store_true", help="share --port with other gateway processes")
    parser.add_argument("--own-port", type=int, default=0, help="also serve on this port, this process alone")
    args = parser.parse_args()
    setup_logging("gateway")
    cfg = load_config()
    sockets = [listening_socket(args.host, args.port, args.reuse_port)]
    if args.own_port:
        sockets.append(listening_socket(args.host, args.own_port, reuse_port=False))
    app = create_app(cfg)
    app.state.freeze_heap_at_startup = True  # gateway/app.py freeze_heap
    server = uvicorn.Server(uvicorn.Config(
        app, log_config=None, access_log=False, timeout_graceful_shutdown=5,
        timeout_keep_alive=cfg.http.keep_alive_timeout_s,
        # The client address is limits.trusted_proxies' business (gateway/ratelimit.py).
        proxy_headers=False))
    server.run(sockets=sockets)


main()
