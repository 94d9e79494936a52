"""Rate limits: how many reads, writes, view beacons and sign-in attempts one client address
(and one account) may make, counted with the `limits` library's sliding window counter in
a store every gateway process shares (longtail_common.adapters.make_rate_limit_storage).

Over a limit the answer is 429 with `Retry-After` (whole seconds) and the usual error
body, before the route runs or reads a body. The client is the socket peer, or, when the
peer is one of `limits.trusted_proxies`, the address X-Forwarded-For names (the nearest
one that is not itself a trusted proxy); a malformed X-Forwarded-For from such a proxy is
answered 400. Addresses in `limits.exempt_addresses` (loopback by default) are not limited.
Stream bytes, static assets and /healthz are not limited either: the signatures
guard the bytes, and a load balancer probes often from one address.
"""
from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request
from limits import RateLimitItem, parse
from limits.strategies import SlidingWindowCounterRateLimiter
from prometheus_client import Counter
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from longtail_common.config import LimitsConfig
from gateway.dependencies import CurrentPrincipal
from gateway.errors import ERROR_DESCRIPTIONS, ApiError

log = logging.getLogger("gateway.ratelimit")

READS, WRITES, BEACONS, SIGN_IN = "reads", "writes", "beacons", "sign_in"
BY_ADDRESS, BY_ACCOUNT = "address", "account"
# Set on request.state for a client in limits.exempt_addresses (no account limit either).
EXEMPT_STATE = "rate_limit_exempt"
UNLIMITED_PREFIXES = ("/static/", "/origin/", "/edge/", "/ads/")
UNLIMITED_PATHS = frozenset({"/healthz"})
BEACON_PATH = re.compile(r"^/v1/(views|videos/[^/]+/views)$")
# The checks run on a few threads of their own: a busy store never takes the threads
# the routes' own blocking work (publishing beacons) needs.
CHECK_THREADS = 4
# A store that fails lets requests through (rate limits must not take the site down); the
# failure is logged at most this often.
FAILURE_LOG_INTERVAL_S = 60.0
ADDRESSES_MEMOISED = 4096

# A busy client's hits are counted in the shared store in blocks of 1/LEASE_FRACTION of its
# limit (at most LEASE_MAX_HITS), taken ahead and spent by this process within LEASE_S: one
# store round trip per block, not per request. Hits taken and not spent count against the
# client (never for it): with P processes a client may be refused up to P blocks early, never
# let past its limit. Limits under 2 * LEASE_FRACTION are counted hit by hit. A refused
# client is refused for LEASE_S without asking the store again (it was told to wait longer).
LEASE_FRACTION = 20
LEASE_MAX_HITS = 100
LEASE_S = 1.0
LEASES_KEPT = 100_000


def lease_size(item: RateLimitItem) -> int:
    return max(1, min(LEASE_MAX_HITS, item.amount // LEASE_FRACTION))


RATE_LIMITED = Counter("longtail_rate_limited_total", "Requests answered 429 by the gateway's rate limits",
                       ["category", "key"])


def category_of(method: str, path: str, sign_in_paths: list[str] | tuple[str, ...]) -> str | None:
    """Which limit a request counts against; None: no limit."""
    if method == "OPTIONS" or path in UNLIMITED_PATHS or path.startswith(UNLIMITED_PREFIXES):
        return None
    if method in ("GET", "HEAD"):
        return READS
    if method == "POST" and path in sign_in_paths:
        return SIGN_IN
    if method == "POST" and BEACON_PATH.fullmatch(path):
        return BEACONS
    return WRITES


class BadForwardedFor(ValueError):
    pass


def networks(name: str, entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries]
    except ValueError as exc:
        raise ValueError(f"limits.{name}: {exc}") from None


def in_networks(address: str, among: list) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in among)


class ClientAddresses:
    """The client address of a request: the peer, or what trusted proxies forwarded."""

    def __init__(self, cfg: LimitsConfig):
        self.trusted = networks("trusted_proxies", cfg.trusted_proxies)
        self.exempt = networks("exempt_addresses", cfg.exempt_addresses)
        # Memoised per address: parsing one costs more than the rest of a cached watch call.
        self.is_trusted = functools.lru_cache(maxsize=ADDRESSES_MEMOISED)(self._is_trusted)
        self.is_exempt = functools.lru_cache(maxsize=ADDRESSES_MEMOISED)(self._is_exempt)

    def _is_trusted(self, address: str) -> bool:
        return in_networks(address, self.trusted)

    def _is_exempt(self, address: str) -> bool:
        return in_networks(address, self.exempt)

    def of(self, scope: Scope) -> str:
        peer = scope["client"][0] if scope.get("client") else ""
        if not self.is_trusted(peer):
            return peer or "unknown"
        values = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
        if not values:
            return peer
        hops = [self.parse_hop(hop) for hop in ",".join(values).split(",")]
        # The nearest hop a trusted proxy did not add is the client; all trusted: the first.
        return next((hop for hop in reversed(hops) if not self.is_trusted(hop)), hops[0])

    @staticmethod
    def parse_hop(hop: str) -> str:
        hop = hop.strip()
        if not hop.isascii():
            raise BadForwardedFor("X-Forwarded-For must be ASCII IP addresses")
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:
            raise BadForwardedFor(f"X-Forwarded-For entry {hop[:60]!r} is not an IP address") from None


def parse_rate(name: str, rate: str) -> RateLimitItem | None:
    """A config rate ("50 per 10 seconds") as a limits item; "" = no limit."""
    if not rate.strip():
        return None
    try:
        return parse(rate)
    except ValueError as exc:
        raise ValueError(f"limits.{name}: {exc}") from None


class RateLimits:
    """The configured limits, counted in a shared `limits` storage."""

    def __init__(self, cfg: LimitsConfig, storage):
        self.storage = storage
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self.items: dict[tuple[str, str], RateLimitItem] = {}
        for category in (READS, WRITES, BEACONS, SIGN_IN):
            for kind in (BY_ADDRESS, BY_ACCOUNT):
                name = f"{category}_per_{kind}"
                item = parse_rate(name, getattr(cfg, name, "")) if cfg.enabled else None
                if item is not None:
                    self.items[category, kind] = item
        self._executor = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="ratelimit")
        # Hits counted in the store ahead of the requests they are for (lease_size), per
        # (category, kind, who): what is left of each, spent here without a store round trip.
        # A plain dict (a TTLCache's bookkeeping cost more than the rest of a check), pruned of
        # expired leases when it grows past LEASES_KEPT.
        self._leases: dict[tuple[str, str, str], tuple[int, float]] = {}  # (left, expires)
        self._taking: dict[tuple[str, str, str], asyncio.Future] = {}  # store calls in flight
        self._last_failure_log = 0.0

    def applies(self, category: str | None, kind: str) -> bool:
        return (category, kind) in self.items

    def _hit(self, item: RateLimitItem, key: tuple[str, ...], cost: int = 1) -> int:
        """0 if `cost` hits are counted; else the seconds until one would be."""
        try:
            if self.limiter.hit(item, *key, cost=cost):
                return 0
            reset = self.limiter.get_window_stats(item, *key).reset_time
        except Exception as exc:  # noqa: BLE001 - any store failure: let the request through
            now = time.monotonic()
            if now - self._last_failure_log > FAILURE_LOG_INTERVAL_S:
                self._last_failure_log = now
                log.warning("rate limit store failed; requests are not limited meanwhile: %s", exc)
            return 0
        return max(1, math.ceil(reset - time.time()))

    async def retry_after(self, category: str, kind: str, who: str) -> int:
        """Counts one request of `category` by `who` (an address or an account id): 0 if
        it is within the limit, else the whole seconds to wait (Retry-After)."""
        item = self.items.get((category, kind))
        if item is None:
            return 0
        key = (category, kind, who)
        while True:
            lease, now = self._leases.get(key), time.monotonic()
            if lease is not None and now < lease[1]:
                if lease[0] > 0:
                    self._leases[key] = (lease[0] - 1, lease[1])  # the expiry stays the one taken
                    return 0
                if lease[0] < 0:  # refused a moment ago: refused again without asking the store
                    RATE_LIMITED.labels(category, kind).inc()
                    return max(1, -lease[0] - int(now - (lease[1] - LEASE_S)))
            taking = self._taking.get(key)
            if taking is None:
                break
            await asyncio.shield(taking)  # one store call at a time per key; then its lease
        taking = self._taking[key] = asyncio.get_running_loop().create_future()
        try:
            return await self._take(item, key)
        finally:
            del self._taking[key]
            taking.set_result(None)

    async def _take(self, item: RateLimitItem, key: tuple[str, str, str]) -> int:
        """Asks the store for a block of hits (one spent now, the rest leased), else one hit."""
        loop = asyncio.get_running_loop()
        block = lease_size(item)
        if block > 1:
            taken = time.monotonic()
            if not await loop.run_in_executor(self._executor, self._hit, item, key, block):
                self._lease(key, block - 1, taken + LEASE_S)
                return 0
        # Near the limit (a block no longer fits), or a small limit: hit by hit.
        wait = await loop.run_in_executor(self._executor, self._hit, item, key)
        if wait:
            RATE_LIMITED.labels(key[0], key[1]).inc()
            self._lease(key, -wait, time.monotonic() + LEASE_S)
        return wait

    def _lease(self, key: tuple[str, str, str], left: int, expires: float) -> None:
        if len(self._leases) >= LEASES_KEPT:
            now = time.monotonic()
            self._leases = {k: v for k, v in self._leases.items() if v[1] > now}
            if len(self._leases) >= LEASES_KEPT:
                self._leases.clear()  # that many clients within a second: forget the leases
        self._leases[key] = (left, expires)

    def describe(self, category: str, kind: str) -> str:
        """The limit as people say it: "50 per 10 seconds", "20 per day"."""
        item = self.items[category, kind]
        unit = item.GRANULARITY.name
        return f"{item.amount} per {unit}" if item.multiples == 1 else f"{item.amount} per {item.multiples} {unit}s"

    def close(self) -> None:
        self._executor.shutdown(wait=False)
        close = getattr(self.storage, "close", None)
        if close is not None:
            close()


def limit_message(limits: RateLimits, category: str, kind: str, who: str, wait: int) -> str:
    noun = {READS: "reads", WRITES: "writes", BEACONS: "view beacons", SIGN_IN: "sign-in attempts"}[category]
    whom = f"address {who}" if kind == BY_ADDRESS else "this account"
    return f"too many {noun} from {whom}: the limit is {limits.describe(category, kind)}; retry in {wait} s"


def too_many(limits: RateLimits, category: str, kind: str, who: str, wait: int) -> JSONResponse:
    return JSONResponse({"error": {"code": "RATE_LIMITED", "message": limit_message(limits, category, kind, who, wait)}},
                        status_code=429, headers={"Retry-After": str(wait)})


# Set in the scope once a request's address limit was counted (gateway/fast_routes.py
# counts the requests it answers; one it hands on is not counted twice).
ADMITTED_SCOPE_KEY = "longtail.rate_limit_admitted"


class RateLimitMiddleware:
    """ASGI middleware: the per-address limits, before anything else reads the request. A
    client address from X-Forwarded-For becomes the request's `client` for the routes."""

    def __init__(self, app: ASGIApp, limits: RateLimits, addresses: ClientAddresses, sign_in_paths: list[str]):
        self.app, self.limits, self.addresses = app, limits, addresses
        self.sign_in_paths = tuple(sign_in_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get(ADMITTED_SCOPE_KEY):
            await self.app(scope, receive, send)
            return
        if await self.admit(scope, receive, send):
            await self.app(scope, receive, send)

    async def admit(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Counts the request against its address's limit: True if it may go on, False once
        it has been answered (429 over the limit, 400 for a malformed X-Forwarded-For)."""
        scope[ADMITTED_SCOPE_KEY] = True
        try:
            address = self.addresses.of(scope)
        except BadForwardedFor as exc:
            response = JSONResponse({"error": {"code": "INVALID_ARGUMENT", "message": str(exc)}}, status_code=400)
            await response(scope, receive, send)
            return False
        if scope.get("client") and address != scope["client"][0]:
            scope["client"] = (address, 0)
        category = category_of(scope["method"], scope["path"], self.sign_in_paths)
        if self.addresses.is_exempt(address):
            scope.setdefault("state", {})[EXEMPT_STATE] = True
        elif self.limits.applies(category, BY_ADDRESS):
            wait = await self.limits.retry_after(category, BY_ADDRESS, address)
            if wait:
                await too_many(self.limits, category, BY_ADDRESS, address, wait)(scope, receive, send)
                return False
        return True


async def limit_account(request: Request, principal: CurrentPrincipal) -> None:
    """Router dependency: the per-account limits of a signed-in request (after the
    middleware's per-address ones), so one account is one budget whatever its addresses."""
    limits: RateLimits = request.app.state.rate_limits
    category = category_of(request.method, request.url.path, request.app.state.config.limits.sign_in_paths)
    if principal is None or request.scope.get("state", {}).get(EXEMPT_STATE) \
            or not limits.applies(category, BY_ACCOUNT):
        return
    wait = await limits.retry_after(category, BY_ACCOUNT, principal.account_id)
    if wait:
        raise ApiError(429, "RATE_LIMITED", limit_message(limits, category, BY_ACCOUNT, principal.account_id, wait),
                       headers={"Retry-After": str(wait)})


RETRY_AFTER_HEADER = {"Retry-After": {"description": "Whole seconds to wait before trying again.",
                                      "schema": {"type": "string", "pattern": "^[0-9]+$"}}}


def document_rate_limits(app: FastAPI, sign_in_paths: list[str]) -> None:
    """Adds the 429 answer (JSON error body, Retry-After) to every operation a limit may
    refuse, in the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                if category_of(method.upper(), path, sign_in_paths) is None:
                    continue
                answer = operation["responses"].setdefault("429", {"description": ERROR_DESCRIPTIONS[429]})
                answer.setdefault("content", {})["application/json"] = {
                    "schema": {"$ref": "#/components/schemas/ErrorBody"}}
                answer.setdefault("headers", {}).update(RETRY_AFTER_HEADER)
        return schema

    app.openapi = openapi
