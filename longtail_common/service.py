"""The one start-up and shut-down sequence every service runs: `run_service`.

A service hands over its gRPC registration, the backends it needs and a `start` function
that builds its servicer (and any consumers) from them; `run_service` does the rest in the
same order for every service:

1. gRPC server (mutual TLS unless mesh.tls is off) with health up at once, NOT_SERVING (calls
   get UNAVAILABLE meanwhile), every call checked against its RPC's declared access
   (mesh_identity);
2. backends connected with backoff, bucket and topics made sure of (a backend that is
   down keeps the service up and retrying, never crash-looping);
3. `start(backends)`; its servicer bound, its consumer and background threads started;
4. SERVING, until SIGTERM/SIGINT;
5. NOT_SERVING, consumer threads joined, in-flight calls drained, resources closed.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import grpc

from longtail_common.adapters import make_metadata_store, make_object_store, make_topic_bus
from longtail_common.config import Config
from longtail_common.consumer import run_consumer
from longtail_common.grpc_server import ServiceServer
from longtail_common.mesh_identity import (
    MeshIdentityInterceptor,
    MeshPrincipal,
    configure_client_identity,
    make_mesh_signer,
)
from longtail_common.mesh_tls import load_identity
from longtail_common.ports import DEFAULT_TOPICS, Message, MetadataStore, ObjectStore, TopicBus

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Needs:
    """The backends a service connects before it can serve."""

    metadata_store: bool = False
    bucket: str | None = None  # an object store, with this bucket made sure of
    topics: bool = False  # a topic bus, with every platform topic made sure of

    def describe(self) -> str:
        """What is being connected, for the retry log line."""
        parts = [name for name, needed in (("metadata store", self.metadata_store),
                                            ("object store", self.bucket is not None),
                                            ("topics", self.topics)) if needed]
        return " and ".join(parts)


@dataclass
class Backends:
    """The connected backends; those not needed stay None."""

    metadata_store: MetadataStore | None = None
    objects: ObjectStore | None = None
    bus: TopicBus | None = None


@dataclass
class Consumer:
    """A consume loop (`run_consumer`) on its own thread, joined on shutdown so the message
    in hand is finished or left uncommitted, never half-handled."""

    thread_name: str
    bus: TopicBus
    topics: list[str]
    group_id: str
    handler: Callable[[Message], None]
    max_attempts: int
    join_timeout_s: float


@dataclass
class Background:
    """Housekeeping on a daemon thread: `run(stopping)` returns once `stopping` is set, and
    the process may exit before it does (nothing is lost by cutting it short)."""

    thread_name: str
    run: Callable[[threading.Event], None]


@dataclass
class Running:
    """What a service's `start` hands back."""

    servicer: object
    consumers: list[Consumer] = field(default_factory=list)
    background: list[Background] = field(default_factory=list)
    close: list[Callable[[], None]] = field(default_factory=list)  # in this order, once the server stopped


def run_service(
    cfg: Config,
    *,
    name: str,
    address: str,
    add_servicer: Callable[[object, grpc.Server], None],
    needs: Needs,
    start: Callable[[Backends], Running],
) -> None:
    """Runs a service until SIGTERM/SIGINT (see the module docstring for the sequence).

    `name` is the gRPC service name that health reports; `add_servicer` is the generated
    `add_<Service>Servicer_to_server`.
    """
    signer = make_mesh_signer(cfg)
    # Calls in must carry a principal their RPC's access allows; calls out carry this
    # service's own.
    configure_client_identity(signer, MeshPrincipal(service=name))
    # services.listen: this replica's own address when `address` names the whole fleet.
    server = ServiceServer(name, cfg.services.listen or address, interceptors=[MeshIdentityInterceptor(signer)],
                           mesh=cfg.mesh,
                           identity=load_identity(cfg))
    # gRPC takes handlers only before start(), but the servicer needs the backends first.
    servicer = server.late_servicer(add_servicer)
    server.start()
    backends = connect_with_backoff(needs.describe(), lambda: connect_backends(cfg, needs), server.stopping)
    if backends is None:
        return  # signalled while still connecting
    running = start(backends)
    servicer.bind(running.servicer)
    consumers = [(_start_consumer(c, server.stopping), c.join_timeout_s) for c in running.consumers]
    for job in running.background:
        threading.Thread(target=job.run, args=(server.stopping,), name=job.thread_name, daemon=True).start()
    server.set_serving(True)

    def join_consumers() -> None:
        for thread, timeout_s in consumers:
            thread.join(timeout=timeout_s)

    server.run_until_signalled(on_stop=join_consumers)
    for close in running.close:
        close()


def connect_backends(cfg: Config, needs: Needs) -> Backends:
    """One attempt at every backend in `needs` (an exception means: try again later)."""
    backends = Backends()
    if needs.metadata_store:
        backends.metadata_store = make_metadata_store(cfg)
    if needs.bucket is not None:
        backends.objects = make_object_store(cfg)
        backends.objects.ensure_bucket(needs.bucket)
    if needs.topics:
        backends.bus = make_topic_bus(cfg)
        backends.bus.ensure_topics(DEFAULT_TOPICS)
    return backends


def _start_consumer(consumer: Consumer, stopping: threading.Event) -> threading.Thread:
    thread = threading.Thread(
        target=run_consumer,
        args=(consumer.bus, consumer.topics, consumer.group_id, consumer.handler, stopping),
        kwargs={"max_attempts": consumer.max_attempts},
        name=consumer.thread_name,
    )
    thread.start()
    return thread


def connect_with_backoff(
    what: str, factory: Callable[[], T], stopping: threading.Event, max_delay_s: float = 10.0
) -> T | None:
    """Calls `factory` until it succeeds, backing off exponentially; None if stopped first.

    A backend that is down at start-up must not crash the service (a crash loop hides
    the cause); the service stays up, reports NOT_SERVING, and keeps trying.
    """
    delay = 0.5
    while not stopping.is_set():
        try:
            return factory()
        except Exception as exc:  # noqa: BLE001 - any failure to connect is retried
            log.warning("cannot connect to %s (%s); retrying in %.1fs", what, exc, delay)
            stopping.wait(delay)
            delay = min(delay * 2, max_delay_s)
    return None
