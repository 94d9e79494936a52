"""A latency-injecting HTTP proxy for tests: forwards every request to one upstream and
holds back the answers to paths under given prefixes (e.g. /origin/) for a fixed delay,
as a far origin would. Real sleeps on real sockets, on 127.0.0.1 only."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


class LatencyProxy:
    def __init__(self, upstream: str, delays: dict[str, float]):
        self.upstream = upstream.rstrip("/")
        self.delays = dict(delays)  # path prefix -> seconds added before the answer
        self.delayed = 0  # requests held back so far
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                proxy._forward(self, "GET")

            def do_POST(self):
                proxy._forward(self, "POST")

        self._client = httpx.Client(timeout=60)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "LatencyProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def _forward(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        delay = next((d for prefix, d in self.delays.items() if handler.path.startswith(prefix)), 0.0)
        if delay:
            self.delayed += 1
            time.sleep(delay)
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_HEADERS}
        resp = self._client.request(method, self.upstream + handler.path, content=body, headers=headers)
        handler.send_response(resp.status_code)
        for k, v in resp.headers.items():
            if k.lower() not in HOP_HEADERS:
                handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(resp.content)))
        handler.end_headers()
        handler.wfile.write(resp.content)
