"""gRPC plumbing: the service server (grpc.health.v1, SIGTERM/SIGINT, tracing and metrics
interceptors) and the client channels every caller uses (which sign their calls: mesh_identity)."""
from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from typing import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors, client_interceptor, intercept_channel, server_interceptor

from longtail_common import mesh_identity, telemetry

log = logging.getLogger(__name__)


class ServiceServer:
    """Wraps grpc.server with a health servicer whose status the service controls.

    Services start NOT_SERVING and flip to SERVING once their backends answer, so a
    load balancer (or `longtail up`) never routes to a service that cannot work yet.
    """

    def __init__(self, service_name: str, address: str, max_workers: int = 16, interceptors=()):
        self.service_name = service_name
        self.serving = False
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=service_name),
            # Tracing first, so even calls refused while starting are visible in traces.
            interceptors=[*([server_interceptor()] if telemetry.tracing_enabled() else []),
                          _MetricsInterceptor(), _NotReadyInterceptor(self), *interceptors],
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ],
        )
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"{service_name}: cannot bind {address}")
        self.stopping = threading.Event()
        self.set_serving(False)

    def late_servicer(self, add_to_server) -> "LateServicer":
        """Registers a servicer that is built later, once the backends answer: gRPC takes
        method handlers only before start(). Until bind(), _NotReadyInterceptor answers
        UNAVAILABLE, so the stand-in is never called unbound."""
        late = LateServicer()
        add_to_server(late, self.server)
        return late

    def set_serving(self, serving: bool) -> None:
        self.serving = serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set("", status)
        self.health.set(self.service_name, status)

    def start(self) -> None:
        """Starts serving (health first) and turns SIGTERM/SIGINT into `stopping`."""

        def handle(signum, _frame):
            log.info("%s: signal %d, shutting down", self.service_name, signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        self.server.start()
        log.info("%s listening on port %d", self.service_name, self.port)

    def run_until_signalled(self, on_stop: Callable[[], None] | None = None) -> None:
        """Blocks until SIGTERM/SIGINT, then drains in-flight calls and stops."""
        while not self.stopping.wait(0.5):
            pass
        self.set_serving(False)
        if on_stop:
            on_stop()
        self.server.stop(grace=5).wait()


class LateServicer:
    """Forwards every RPC method to the servicer given to bind()."""

    def __init__(self):
        self._target = None

    def bind(self, servicer) -> None:
        self._target = servicer

    def __getattr__(self, method: str):
        def forward(request_or_iterator, context):
            if self._target is None:
                context.abort(grpc.StatusCode.UNAVAILABLE, "service is starting")
            return getattr(self._target, method)(request_or_iterator, context)

        return forward


class _NotReadyInterceptor(grpc.ServerInterceptor):
    """Until the service's backends are connected, every call but health checks gets
    UNAVAILABLE, which clients retry (instead of UNIMPLEMENTED for a missing handler)."""

    def __init__(self, owner: ServiceServer):
        self.owner = owner

    def intercept_service(self, continuation, handler_call_details):
        if self.owner.serving or handler_call_details.method.startswith("/grpc.health."):
            return continuation(handler_call_details)

        def unavailable(_request, context):
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.owner.service_name} is starting")

        return grpc.unary_unary_rpc_method_handler(unavailable)


class _MetricsInterceptor(grpc.ServerInterceptor):
    """Rate, errors and latency per gRPC method (rpc.server.duration, in seconds)."""

    def __init__(self):
        self.duration = telemetry.meter().create_histogram(
            "rpc.server.duration", unit="s", description="gRPC server call duration by method and status",
            explicit_bucket_boundaries_advisory=telemetry.LATENCY_BUCKETS_S)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith("/grpc.health."):
            return handler
        record = self.duration.record

        def wrap(behavior):
            def timed(request_or_iterator, context):
                start = time.perf_counter()
                try:
                    response = behavior(request_or_iterator, context)
                    code = _status_name(context, "OK")  # set_code() without raising
                    return response
                except Exception:
                    code = _status_name(context, "UNKNOWN")  # abort() raises with the code set
                    raise
                finally:
                    record(time.perf_counter() - start, {"rpc.method": method, "rpc.grpc.status_code": code})

            return timed

        if handler.unary_unary:
            return handler._replace(unary_unary=wrap(handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=wrap(handler.stream_unary))
        return handler


def _status_name(context, default: str) -> str:
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - older grpcio without ServicerContext.code()
        return default
    return code.name if isinstance(code, grpc.StatusCode) else default


def wait_for_serving(address: str, timeout_s: float = 30.0, service: str = "") -> bool:
    """Polls grpc.health.v1 until SERVING (used by the launcher and tests)."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    return False


def client_channel_options() -> list[tuple[str, object]]:
    """Channel options: calls wait for the server to come up instead of failing at once,
    and retry UNAVAILABLE a few times (services start in any order)."""
    import json

    service_config = json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{}],
                    "waitForReady": True,
                    "retryPolicy": {
                        "maxAttempts": 5,
                        "initialBackoff": "0.2s",
                        "maxBackoff": "3s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )
    return [
        ("grpc.service_config", service_config),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]


def client_channel(address: str) -> grpc.Channel:
    """A channel whose calls carry trace context (and open CLIENT spans) and this process's
    signed principal (mesh_identity)."""
    channel = grpc.intercept_channel(grpc.insecure_channel(address, options=client_channel_options()),
                                     mesh_identity.MeshClientInterceptor())
    return intercept_channel(channel, client_interceptor()) if telemetry.tracing_enabled() else channel


def aio_client_channel(address: str) -> grpc.aio.Channel:
    """The asyncio flavour, for the gateway."""
    interceptors = [*(aio_client_interceptors() if telemetry.tracing_enabled() else []),
                    *mesh_identity.aio_client_interceptors()]
    return grpc.aio.insecure_channel(address, options=client_channel_options(), interceptors=interceptors)
