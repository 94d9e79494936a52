"""Tracing and metrics of the gateway's HTTP side: a server span and a request-duration
histogram per route, with the request body read outside the request's trace context.
"""
from __future__ import annotations

from fastapi import FastAPI
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from longtail_common import telemetry


def instrument(app: FastAPI) -> None:
    # Byte serving is left out of traces (one span per segment fetch would drown the
    # upload/watch flows). With telemetry.tracing off the tracer is the API's no-op one:
    # route metrics stay.
    FastAPIInstrumentor.instrument_app(app, excluded_urls="/origin/.*,/edge/.*,/static/.*,/healthz",
                                       exclude_spans=["receive", "send"])
    if telemetry.tracing_enabled():
        app.add_middleware(DetachedReceiveMiddleware)


class DetachedReceiveMiddleware:
    """Reads request bodies outside the request's trace context.

    uvicorn resumes a paused socket from inside receive(), and asyncio's add_reader keeps
    the caller's context for the next read callback: the next request on a keep-alive
    connection would then inherit this request's span as its parent (one endless trace
    per connection). Receiving under an empty OpenTelemetry context stops that leak."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def detached_receive():
            token = otel_context.attach(otel_context.Context())
            try:
                return await receive()
            finally:
                otel_context.detach(token)

        return await self.app(scope, detached_receive, send)
