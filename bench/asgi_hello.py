"""The ceiling of any Python handler in the load benchmark: a raw ASGI app under the same
uvicorn as the gateway (same HTTP parser, event loop and socket options), answering
`/hello` with a small JSON body and `/segment` with 176 kB from memory (a `Range:
bytes=a-b` header gets 206 and its slice), with no framework, middleware or work of its own.

Run: python bench/asgi_hello.py --port 8090 [--reuse-port]   (bench/load_bench.py starts it)
"""
from __future__ import annotations

import argparse
import os
import re
import socket

import uvicorn

SEGMENT = os.urandom(176_000)
HELLO = b'{"hello":"world"}'
RANGE = re.compile(rb"bytes=([0-9]+)-([0-9]+)")


def header(scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope["headers"] if k == name), None)


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    status, body, headers = 200, HELLO, [(b"content-type", b"application/json")]
    if scope["path"] == "/segment":
        body, headers = SEGMENT, [(b"content-type", b"video/iso.segment"), (b"accept-ranges", b"bytes")]
        match = RANGE.fullmatch(header(scope, b"range") or b"")
        if match:
            first, last = int(match.group(1)), min(int(match.group(2)), len(SEGMENT) - 1)
            status, body = 206, SEGMENT[first:last + 1]
            headers.append((b"content-range", b"bytes %d-%d/%d" % (first, last, len(SEGMENT))))
    headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reuse-port", action="store_true")
    args = parser.parse_args()
    # As gateway/__main__.py makes its socket (IPPROTO_TCP named: TCP_NODELAY).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", args.port))
    uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, proxy_headers=False)).run(sockets=[sock])


if __name__ == "__main__":
    main()
