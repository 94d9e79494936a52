"""What one request may hold at the gateway: its body is capped (`http.max_body_bytes`,
413) and must keep arriving (`http.body_idle_timeout_s`, 408 and the connection closed).
Idle keep-alive connections are closed by uvicorn (`http.keep_alive_timeout_s`,
gateway/__main__.py).
"""
from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Where a route that takes bodies beyond the cap (the tus PATCH) says so, before reading.
BODY_CAP_SCOPE_KEY = "longtail.max_body_bytes"


def lift_body_cap(request: Request) -> None:
    """Lets this request's body be any size (the route bounds it itself)."""
    request.scope[BODY_CAP_SCOPE_KEY] = None


class RequestLimits:
    """ASGI middleware. The checks run as the route reads the body, so a route that never
    reads one pays nothing, and one that lifts the cap (lift_body_cap) first is not held
    to it. A stalled body raises 408 out of the route's read; a long body 413 (by its
    Content-Length before any byte is read, else once the bytes pass the cap); both are
    answered with `Connection: close`. Once the body is complete, `receive` is the server's
    own again (a long response still hears a disconnect)."""

    def __init__(self, app: ASGIApp, idle_timeout_s: float, max_body_bytes: int):
        self.app = app
        self.idle_timeout_s = idle_timeout_s
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[BODY_CAP_SCOPE_KEY] = self.max_body_bytes
        declared = Request(scope).headers.get("content-length")
        received, body_done = 0, False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:
                return await receive()
            cap = scope[BODY_CAP_SCOPE_KEY]
            if cap is not None and declared is not None and declared.isascii() and declared.isdigit() \
                    and int(declared) > cap:
                raise self.too_large(cap)
            try:
                async with asyncio.timeout(self.idle_timeout_s):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, f"no request body bytes arrived for {self.idle_timeout_s:g} s",
                                    headers={"Connection": "close"}) from None
            received += len(message.get("body", b""))
            if cap is not None and received > cap:
                raise self.too_large(cap)
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    def too_large(cap: int) -> HTTPException:
        return HTTPException(413, f"request bodies are limited to {cap} bytes", headers={"Connection": "close"})
