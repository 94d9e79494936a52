"""gRPC plumbing: the service server (grpc.health.v1, SIGTERM/SIGINT, tracing and metrics
interceptors, mutual TLS) and the client channels every caller uses (round robin over the
replicas, deadlines, keepalive, retries of idempotent calls: the service config below), whose
calls carry this process's signed principal (mesh_identity)."""
from __future__ import annotations

import json
import logging
import signal
import threading
import time
from concurrent import futures
from typing import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors, client_interceptor, intercept_channel, server_interceptor
from opentelemetry.instrumentation.grpc.filters import health_check, negate

from longtail_common import mesh_identity, telemetry
from longtail_common.config import Config, MeshConfig
from longtail_common.mesh_tls import MeshIdentity, load_identity

log = logging.getLogger(__name__)


# Health checks are left out of tracing: they are noise on SREs' dashboards, and a wrapped
# handler loses the attributes below.
_NOT_HEALTH = negate(health_check())
# Every client channel keeps a Health/Watch stream open to each replica (client-side health
# checking): dozens in a fleet, each holding a thread for its life. They get a pool of their
# own, so they can never take the threads real calls need (two nodes' worth once starved
# metadata's 16). grpc_health's non-blocking Watch is not used: it sends its first answer
# while holding the servicer's lock, and a stream closing meanwhile blocks the server's
# polling thread on that lock, which stops the whole server (seen in CI).
HEALTH_THREADS = 512


class ServiceServer:
    """Wraps grpc.server with a health servicer whose status the service controls.

    Services start NOT_SERVING and flip to SERVING once their backends answer, so a
    load balancer (or `longtail up`) never routes to a service that cannot work yet.
    """

    def __init__(self, service_name: str, address: str, max_workers: int = 16, interceptors=(),
                 mesh: MeshConfig | None = None, identity: MeshIdentity | None = None):
        """`identity`: serve mutual TLS with it (clients without a certificate from its CA are
        refused); None: plain text."""
        self.service_name = service_name
        mesh = mesh or MeshConfig()
        self.serving = False
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=service_name),
            # Tracing first, so even calls refused while starting are visible in traces.
            interceptors=[*([server_interceptor(filter_=_NOT_HEALTH)] if telemetry.tracing_enabled() else []),
                          _MetricsInterceptor(), _NotReadyInterceptor(self), *interceptors],
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                # Clients' keepalive pings are welcome (not answered with GOAWAY as abuse).
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", int(mesh.keepalive_time_s * 500)),
                ("grpc.max_connection_age_ms", int(mesh.max_connection_age_s * 1000)),
                ("grpc.max_connection_age_grace_ms", int(mesh.max_connection_age_grace_s * 1000)),
            ],
        )
        self.health = health.HealthServicer(
            experimental_non_blocking=False,
            experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=HEALTH_THREADS,
                                                                thread_name_prefix=f"{service_name}-health"))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = (self.server.add_secure_port(address, identity.server_credentials()) if identity
                     else self.server.add_insecure_port(address))
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


def dial(address: str, cfg: Config | None = None, server_name: str = "", options=()) -> grpc.Channel:
    """A channel to `address` over mutual TLS as `cfg.mesh` says, verifying that the server's
    certificate names `server_name` (a service: "metadata", ...); plain text when `cfg` is
    None or mesh.tls is off."""
    credentials, options = _mesh_security(cfg, server_name, options)
    if credentials is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, credentials, options=options)


def _mesh_security(cfg: Config | None, server_name: str, options) -> tuple[grpc.ChannelCredentials | None, list]:
    """(credentials, options) of a mesh channel: None and `options` in plain text."""
    identity = load_identity(cfg) if cfg is not None else None
    if identity is None:
        return None, list(options)
    return identity.channel_credentials(), [*options, ("grpc.ssl_target_name_override", server_name)]


def wait_for_serving(address: str, timeout_s: float = 30.0, service: str = "", cfg: Config | None = None,
                     server_name: str = "") -> bool:
    """Polls grpc.health.v1 until SERVING (used by the launcher and tests); `cfg` and
    `server_name` as for dial()."""
    deadline = time.monotonic() + timeout_s
    with dial(address, cfg, server_name) as channel:
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


# Per-method policies: (deadline, retried on UNAVAILABLE, {gRPC service: [methods]}). A call's
# own timeout, when shorter, wins. Only calls that are safe to send twice are retried: reads,
# and CreateUpload (it returns an existing upload as it is). Writes are not: a CreateVideo
# whose reply was lost would come back ALREADY_EXISTS, an etag-guarded UpdateVideo ABORTED,
# an AppendUpload FAILED_PRECONDITION (tus resumes it from the client instead).
METHOD_POLICIES = [
    ("30s", True, {"longtail.metadata.v1.MetadataService": ["GetVideo", "GetChannel"],
                   "longtail.upload.v1.UploadService": ["GetUpload", "CreateUpload"],
                   "longtail.placement.v1.PlacementService": ["GetPlacement", "ListRegions", "BatchGetViewCounts"],
                   "longtail.transcoder.v1.TranscoderService": ["GetWorkerStatus"],
                   "longtail.accounts.v1.AccountService": ["GetAccount", "VerifyPassword", "ResolveToken",
                                                           "ResolveSession", "DeleteSession"],
                   "grpc.health.v1.Health": ["Check"]}),
    ("60s", True, {"longtail.metadata.v1.MetadataService": ["BatchGetVideos", "ListVideos", "ListChannels",
                                                           "ListCaptions"],
                   "longtail.accounts.v1.AccountService": ["ListAccounts", "ListTokens"],
                   "longtail.search.v1.SearchService": ["SearchVideos", "ListLatestVideos"],
                   "longtail.webhook.v1.WebhookService": ["GetWebhook", "ListWebhooks", "ListDeliveries"]}),
    # Writes: a retry after a lost reply would answer ALREADY_EXISTS, ABORTED (etag) or
    # NOT_FOUND (a delete that did happen), or spend a one-time link twice.
    ("30s", False, {"longtail.metadata.v1.MetadataService": ["CreateVideo", "UpdateVideo", "DeleteVideo", "CreateChannel",
                                                            "CreateCaption", "DeleteCaption"],
                    "longtail.accounts.v1.AccountService": ["CreateAccount", "UpdateAccount", "CreatePasswordLink",
                                                            "SetPassword", "CreateToken", "RevokeToken",
                                                            "CreateSession", "SignInExternal"],
                    "longtail.webhook.v1.WebhookService": ["CreateWebhook", "DeleteWebhook", "RedeliverDelivery"]}),
    ("3600s", False, {"longtail.upload.v1.UploadService": ["AppendUpload"]}),
]
RETRY_POLICY = {"maxAttempts": 5, "initialBackoff": "0.2s", "maxBackoff": "3s", "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"]}


def service_config() -> dict:
    """The gRPC service config of every client channel.

    round_robin over every address the target resolves to; client-side health checking
    (grpc.health.v1 Watch) so a replica that is starting, draining or NOT_SERVING gets no
    calls; waitForReady everywhere, so a call made while no replica is ready yet waits for
    one (services start in any order) instead of failing; retry throttling, so retries stop
    piling onto a fleet that is failing anyway.
    """
    method_config = [{"name": [{}], "waitForReady": True}]
    for timeout, retried, services in METHOD_POLICIES:
        names = [{"service": service, "method": method} for service, methods in services.items() for method in methods]
        method_config.append({"name": names, "waitForReady": True, "timeout": timeout,
                              **({"retryPolicy": RETRY_POLICY} if retried else {})})
    return {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""},
            "retryThrottling": {"maxTokens": 100, "tokenRatio": 0.1}, "methodConfig": method_config}


def client_channel_options(mesh: MeshConfig) -> list[tuple[str, object]]:
    return [
        ("grpc.service_config", json.dumps(service_config())),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", int(mesh.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(mesh.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]


def client_channel(cfg: Config, service: str, address: str | None = None) -> grpc.Channel:
    """A channel to every replica of `service` ("metadata", ...; at cfg.services.<service>
    unless `address` is given) with the service config above, over mutual TLS unless
    mesh.tls is off; its calls carry trace context (and open CLIENT spans)."""
    channel = dial(address or getattr(cfg.services, service), cfg, service, client_channel_options(cfg.mesh))
    channel = grpc.intercept_channel(channel, mesh_identity.MeshClientInterceptor())
    return intercept_channel(channel, client_interceptor(filter_=_NOT_HEALTH)) if telemetry.tracing_enabled() else channel


def aio_client_channel(cfg: Config, service: str) -> grpc.aio.Channel:
    """The asyncio flavour of client_channel, for the gateway."""
    interceptors = [*(aio_client_interceptors(filter_=_NOT_HEALTH) if telemetry.tracing_enabled() else []),
                    *mesh_identity.aio_client_interceptors()]
    target = getattr(cfg.services, service)
    credentials, options = _mesh_security(cfg, service, client_channel_options(cfg.mesh))
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
