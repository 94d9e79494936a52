"""The health probe a load balancer asks: 200 while every service is up, 503 (`degraded`)
while one is not, so the balancer takes this gateway out until it is back.

Each gRPC service the config names is asked over grpc.health.v1 (a short deadline; the
answers are reused for `http.health_cache_s`). When the platform was started by the
launcher (`longtail up`), its DATA_DIR/run/services.json adds each process's state
(running / restarting / down, restarts, last exit): any service not `running` is down,
transcoder workers included (they are many, with addresses only the launcher knows).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import BaseModel, ConfigDict

from longtail_common.config import Config
from longtail_common.grpc_server import aio_client_channel

log = logging.getLogger("gateway.health")

# The gRPC services the gateway's config addresses (transcoder workers are the launcher's).
PROBED_SERVICES = ("metadata", "upload", "search", "placement", "webhook")
# The services requests through the gateway wait on. Only these make it answer 503: placement
# and the transcoders work from topics (webhook_svc too, but for its own /v1/webhooks routes), so a load balancer draining every gateway because a
# transcoder died would turn a transcode backlog into a full outage. They are still reported
# (and alerted on: README "Runbook").
REQUEST_PATH = frozenset({"metadata", "upload", "search"})
SERVING = health_pb2.HealthCheckResponse.SERVING

router = APIRouter()


class ServiceReport(BaseModel):
    """One service: its health answer, and the launcher's fields when it runs the platform
    (state, since, pid, address, restarts, last_exit_code, last_exit_reason, ...)."""

    model_config = ConfigDict(extra="allow")
    serving: bool
    health: str  # SERVING | NOT_SERVING | UNREACHABLE | LAUNCHER (known from the launcher only)


class HealthReport(BaseModel):
    status: str  # ok | degraded
    services: dict[str, ServiceReport]


class ServiceHealth:
    """Asks the services, reads the launcher's state file, and caches the report briefly."""

    def __init__(self, cfg: Config):
        self._cfg = cfg
        self._addresses = {name: getattr(cfg.services, name) for name in PROBED_SERVICES}
        self._state_file = cfg.data_path / "run" / "services.json"
        self._timeout_s = cfg.http.health_timeout_s
        self._cache_s = cfg.http.health_cache_s
        self._stubs: dict[str, health_pb2_grpc.HealthStub] = {}  # opened on the serving loop
        self._report: tuple[float, dict] | None = None
        self._lock: asyncio.Lock | None = None

    async def report(self) -> dict:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # concurrent probes share one round of checks
            if self._report is None or time.monotonic() - self._report[0] >= self._cache_s:
                self._report = (time.monotonic(), await self._check())
            return self._report[1]

    async def _check(self) -> dict:
        answers = await asyncio.gather(*(self._ask(name) for name in self._addresses))
        services = {name: {"serving": answer == "SERVING", "health": answer}
                    for name, answer in zip(self._addresses, answers)}
        down = {name for name, s in services.items() if not s["serving"] and name in REQUEST_PATH}
        for name, launched in self._launcher_states().items():
            if name.split("-")[0] == "gateway":  # this process, or a sibling on the same port: it is answering
                continue
            entry = services.setdefault(name, {"serving": bool(launched.get("serving")), "health": "LAUNCHER"})
            entry.update({k: v for k, v in launched.items() if k not in ("serving", "health")})
            if launched.get("state") != "running" and name in REQUEST_PATH:
                down.add(name)
        return {"status": "degraded" if down else "ok", "services": services}

    async def _ask(self, name: str) -> str:
        if name not in self._stubs:
            self._stubs[name] = health_pb2_grpc.HealthStub(aio_client_channel(self._cfg, name))
        try:
            reply = await self._stubs[name].Check(health_pb2.HealthCheckRequest(), timeout=self._timeout_s)
        except grpc.aio.AioRpcError:
            return "UNREACHABLE"
        return "SERVING" if reply.status == SERVING else health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def _launcher_states(self) -> dict[str, dict]:
        """The launcher's per-service state, if a live launcher wrote it (a file left by a
        stopped one says nothing about the services running now)."""
        try:
            document = json.loads(self._state_file.read_text())
            os.kill(int(document["launcher_pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        services = document.get("services")
        return services if isinstance(services, dict) else {}


@router.get("/healthz", response_model=HealthReport, responses={
    503: {"model": HealthReport, "description": "A service is down: `status` is `degraded`."}})
async def healthz(request: Request):
    """Each service's state; 503 while one is down."""
    report = await request.app.state.health.report()
    return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)
