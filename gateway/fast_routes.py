"""The hottest calls answered on a lean ASGI path ahead of FastAPI: an anonymous viewer's
get and watch calls on a cached video, and the bytes of signed origin URLs on the
embedded (filesystem) object store.

One job: answer those requests exactly as their FastAPI routes (gateway/routes/videos.py,
gateway/routes/media.py) would, for less. The routes' own helpers render the answers; what
is skipped is per-request machinery: routing, dependency solving, parameter validation,
the middleware stack and the generic ASGI tracing middleware. The watch and get calls are
still rate limited per address (the same gate as RateLimitMiddleware), traced (head
sampled, telemetry.HotPathSampler: the calls a sampled caller's traceparent asks for, a
share of the others, telemetry.fast_path_sample_ratio, and the slow ones) and counted in the same
`http.server.request.duration` histogram as every route. Anything this path is not sure of
(a signed-in request, a cache miss, a private, unready or absent video, an unusual
query, a bad token or Range, a big object) goes to the FastAPI app unchanged, which
answers it, errors included: the routes stay the reference, this is their cache.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import time
from collections import OrderedDict
import urllib.parse
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context, propagate, trace
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from longtail_common import telemetry
from longtail_common.telemetry import VIDEO_ID
from longtail_common.adapters.fs_objects import guess_content_type
from longtail_common.ports import MEDIA_BUCKET, InvalidKeyError, is_private_media_key, is_valid_id, validate_object_key
from gateway.errors import ApiError
from gateway.playback import client_platform, streaming_protocol
from gateway.ratelimit import RateLimitMiddleware
from gateway.routes.media import byte_range
from gateway.manifests_extra import manifest_video
from gateway.routes.videos import load_for_cache, playback_region, require_watchable, video_answer, watch_template
from gateway.signing import TokenRefused
from gateway.video_access import require_visible

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("gateway.fast_routes")

VIDEO_PATH = re.compile(r"/v1/videos/([^/]+)(/watch)?")
ORIGIN_PATH = re.compile(r"/origin/t/([^/]+)/(.+)")
WATCH_PARAMS = frozenset({"region", "client", "protocol"})
# Bigger objects take the FastAPI route, which streams them instead of reading them whole.
MAX_WHOLE_READ_BYTES = 8 * 1024 * 1024
# Hot objects kept in memory per gateway process (least recently served dropped first): a
# segment served from here costs a stat, not an open, a read of its bytes and a close.
HOT_FILES_BYTES = 64 * 1024 * 1024
SERVABLE_URLS = 16384  # signed URLs whose checks are memoised (FastRoutes._servable)
JSON_HEADERS = (b"content-type", b"application/json")
# Why a span left out by head sampling was kept after all (HotPathSampler.keep_slow).
KEPT_AS = "longtail.sampling.kept_as"
EMPTY_CONTEXT = otel_context.Context()
WATCH_ROUTE, GET_ROUTE = "/v1/videos/{video_id}/watch", "/v1/videos/{video_id}"
SPAN_NAMES = {route: f"GET {route}" for route in (WATCH_ROUTE, GET_ROUTE)}
# The attributes the ASGI instrumentation records a 200 of these routes with, made once.
DURATION_ATTRS = {route: {"http.request.method": "GET", "http.response.status_code": 200, "url.scheme": "http",
                          "network.protocol.version": "1.1", "http.route": route} for route in (WATCH_ROUTE, GET_ROUTE)}


class NotHere(Exception):
    """This request is the FastAPI app's to answer."""


class FastRoutes:
    def __init__(self, app: "FastAPI", rate_gate: RateLimitMiddleware):
        self.app, self.state, self.rate_gate = app, app.state, rate_gate
        self.session_cookie = app.state.cookies.session.encode() + b"="
        self.tracer = telemetry.tracer("gateway.fast_routes")
        self.sampler = telemetry.HotPathSampler.from_config(app.state.config.telemetry)
        self._durations = None  # per route: the ASGI instrumentation's histogram, found on first use
        objects = app.state.objects
        self.local_path = getattr(objects, "local_path", None)  # the filesystem store only
        self.hot_files = HotFiles(HOT_FILES_BYTES)
        # Bad tokens are memoised too (as None): a client making up URLs only churns the cache.
        self._servable = functools.lru_cache(maxsize=SERVABLE_URLS)(self._servable_uncached)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """True once the request is answered here; False: the app's to answer."""
        method, path = scope["method"], scope["path"]
        try:
            if method == "GET" and path.startswith("/v1/videos/"):
                return await self._video_call(scope, receive, send, path)
            if method in ("GET", "HEAD") and path.startswith("/origin/t/") and self.local_path is not None:
                return await self._origin(scope, send, path)
        except (NotHere, ApiError):
            return False
        return False

    # -- get and watch -----------------------------------------------------------------------

    async def _video_call(self, scope: Scope, receive: Receive, send: Send, path: str) -> bool:
        match = VIDEO_PATH.fullmatch(path)
        if match is None or not is_valid_id(match.group(1)) or not self._anonymous(scope):
            return False
        video_id, metadata = match.group(1), self.state.links.metadata()
        entry = self.state.videos.fresh(video_id, lambda: load_for_cache(metadata, video_id))
        if entry is None:
            return False
        route = WATCH_ROUTE if match.group(2) else GET_ROUTE
        started = time.perf_counter()
        scope["app"] = self.app
        request = Request(scope)
        if match.group(2):
            video, params = require_watchable(entry.video(), None), watch_params(scope)
            region = playback_region(params.get("region", ""), request, self.state.config)
            client = client_platform(params.get("client", ""), request.headers.get("user-agent", ""))
            template = watch_template(request, entry, video, region, client,
                                      streaming_protocol(params.get("protocol", "")), None)
            answer = None
        else:
            answer = video_answer(request, entry, require_visible(entry.video(), None), None)
        # From here on the request is answered here: counted, limited, traced.
        if not await self.rate_gate.admit(scope, receive, send):
            return True
        self.state.videos.hits += 1
        parent = parent_context(scope)
        span = self._span(route, video_id, parent) if self.sampler.sampled(parent) else None
        try:
            if answer is None:
                now = time.time()
                playback_id, playback = self.state.signer.issue_playback(video_id, region, now)
                answer = template.answer(playback_id, playback, now)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [JSON_HEADERS, (b"content-length", b"%d" % len(answer))]})
            await send({"type": "http.response.body", "body": answer})
        finally:
            if span is not None:
                span.end()
        seconds = time.perf_counter() - started
        if span is None and self.sampler.keep_slow(seconds):
            self._slow_span(route, video_id, parent, seconds)
        self._record_duration(route, seconds)
        return True

    def _span(self, route: str, video_id: str, parent, **kwargs) -> trace.Span:
        # Not made the current span: nothing here calls out, so no child needs it as parent.
        # Few attributes: the SDK validates each one (the method is in the name, the path is
        # the route plus the video id, which every flow's spans carry under one name).
        return self.tracer.start_span(SPAN_NAMES[route], context=parent, kind=trace.SpanKind.SERVER,
                                      attributes={"http.route": route, VIDEO_ID: video_id,
                                                  "http.response.status_code": 200}, **kwargs)

    def _slow_span(self, route: str, video_id: str, parent, seconds: float) -> None:
        """A slow call left out by head sampling, traced after the fact: a trace of its own
        (its caller's, not sampled, would drop it) linked to the caller's span."""
        caller = trace.get_current_span(parent).get_span_context() if parent is not None else None
        links = [trace.Link(caller)] if caller is not None and caller.is_valid else None
        end = time.time_ns()
        span = self._span(route, video_id, EMPTY_CONTEXT, links=links, start_time=end - int(seconds * 1e9))
        span.set_attribute(KEPT_AS, "slow")
        span.end(end_time=end)

    def _anonymous(self, scope: Scope) -> bool:
        """No bearer token and no session cookie: the principal is None without asking anyone."""
        for name, value in scope["headers"]:
            if name == b"authorization" or (name == b"cookie" and self.session_cookie in value):
                return False
        return True

    def _record_duration(self, route: str, seconds: float) -> None:
        if self._durations is None:
            histogram = instrumentation_histogram(self.app)
            self._durations = {r: telemetry.BoundHistogram(histogram, attrs) for r, attrs in DURATION_ATTRS.items()} \
                if histogram is not None else {}
        if self._durations:
            self._durations[route].record(seconds)

    # -- origin bytes --------------------------------------------------------------------------

    async def _origin(self, scope: Scope, send: Send, path: str) -> bool:
        match = ORIGIN_PATH.fullmatch(path)
        if match is None or not self.state.config.playback.signed:
            return False  # unsigned setups take the route
        servable = self._servable(match.group(1), match.group(2))
        if servable is None or time.time() >= servable[2]:
            return False  # the route refuses an expired token
        return await self._send_file(scope, send, servable[0], servable[1])

    def _servable_uncached(self, token: str, key: str) -> tuple[str, bytes, int] | None:
        """(file, content type, expiry) of a signed URL this path serves until the expiry,
        None if it is the route's: a bad token or key, a private video's bytes (a sign-in
        check), a master or MPD (they get the tracks added since the transcode,
        routes/media.py). All of it but the time is the same on every request for the URL:
        memoised per (token, key) in self._servable."""
        signer = self.state.signer
        try:
            if signer.media_grant_of(token).account is not None:
                return None
            grant = signer.check_media(token, key, now=0)  # the expiry is checked per request
            validate_object_key(key)
        except (TokenRefused, InvalidKeyError):
            return None
        if is_private_media_key(key) or manifest_video(key) is not None:
            return None
        return self.local_path(MEDIA_BUCKET, key), content_type(key), grant.expires

    async def _send_file(self, scope: Scope, send: Send, file_path: str, media_type: bytes) -> bool:
        """The object's bytes (or the asked-for range) with serve_object's headers, from this
        process's copy of hot objects (HotFiles: a stat per request) or one read."""
        found = self.hot_files.get(file_path)
        if found is None:
            return False
        size, mtime_ns, data = found
        start, end, status = 0, size - 1, 200
        range_header = header(scope, b"range")
        if range_header is not None:
            start, end = byte_range(range_header.decode("latin-1"), size)
            status = 206
        length = end - start + 1
        headers = [(b"content-type", media_type), (b"accept-ranges", b"bytes"),
                   (b"etag", object_etag(size, mtime_ns)), (b"cache-control", b"public, max-age=3600"),
                   (b"access-control-allow-origin", b"*"), (b"content-length", b"%d" % length)]
        if status == 206:
            headers.append((b"content-range", b"bytes %d-%d/%d" % (start, end, size)))
        body = b"" if scope["method"] == "HEAD" else data if length == size else data[start:end + 1]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True


class HotFiles:
    """Recently served objects' bytes, each checked against a stat of its file per request
    (inode, size, mtime: an object rewritten in place or replaced is read anew), like
    nginx's open_file_cache with the page cache's copy kept in the process."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.held = max_bytes, 0
        self._files: OrderedDict[str, tuple[tuple[int, int, int], bytes]] = OrderedDict()

    def get(self, path: str) -> tuple[int, int, bytes] | None:
        """(size, mtime_ns, bytes) of the file now; None if it is absent or too big."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        if st.st_size > MAX_WHOLE_READ_BYTES:
            return None
        held = self._files.get(path)
        if held is not None and held[0] == (st.st_ino, st.st_size, st.st_mtime_ns):
            self._files.move_to_end(path)
            return st.st_size, st.st_mtime_ns, held[1]
        return self._read(path)

    def _read(self, path: str) -> tuple[int, int, bytes] | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            st = os.fstat(fd)  # what was read is this file's, whatever the path names now
            data = os.pread(fd, st.st_size, 0)
        finally:
            os.close(fd)
        if len(data) != st.st_size:
            return None  # it changed while read: the route answers
        self._keep(path, (st.st_ino, st.st_size, st.st_mtime_ns), data)
        return st.st_size, st.st_mtime_ns, data

    def _keep(self, path: str, signature: tuple[int, int, int], data: bytes) -> None:
        old = self._files.pop(path, None)
        if old is not None:
            self.held -= len(old[1])
        self._files[path] = (signature, data)
        self.held += len(data)
        while self.held > self.max_bytes and self._files:
            self.held -= len(self._files.popitem(last=False)[1][1])


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def watch_params(scope: Scope) -> dict[str, str]:
    """The watch call's query parameters, if they are plain: each known one at most once,
    in ASCII; else NotHere (FastAPI's parsing decides)."""
    params = plain_params(scope["query_string"])
    if params is None:
        raise NotHere
    return params


@functools.lru_cache(maxsize=1024)
def plain_params(raw: bytes) -> dict[str, str] | None:
    """Memoised: players send a handful of distinct query strings (client x region x protocol).
    The dict is shared: read it, never change it."""
    if not raw:
        return {}
    if not raw.isascii():
        return None
    pairs = urllib.parse.parse_qsl(raw.decode("ascii"), keep_blank_values=True)
    params = dict(pairs)
    if len(params) != len(pairs) or not params.keys() <= WATCH_PARAMS or not all(v.isascii() for v in params.values()):
        return None
    return params


def parent_context(scope: Scope):
    """The caller's trace context (W3C traceparent), None without one."""
    carrier = {}
    for name, value in scope["headers"]:
        if name in (b"traceparent", b"tracestate", b"baggage"):
            carrier[name.decode()] = value.decode("latin-1")
    return propagate.extract(carrier) if carrier else None


def instrumentation_histogram(app: "FastAPI"):
    """The OpenTelemetry ASGI middleware's request-duration histogram (its dashboards and
    alerts read http_server_request_duration_seconds by route), None if it is absent."""
    stack = app.middleware_stack or app.build_middleware_stack()
    seen = set()
    while stack is not None and id(stack) not in seen:
        seen.add(id(stack))
        histogram = getattr(stack, "duration_histogram_new", None)
        if histogram is not None:
            return histogram
        stack = getattr(stack, "app", None)
    return None


def content_type(key: str) -> bytes:
    """The store's content type of the key (by its suffix), as Starlette sends it."""
    return suffix_content_type(os.path.splitext(key)[1])


@functools.lru_cache(maxsize=64)
def suffix_content_type(suffix: str) -> bytes:
    media_type = guess_content_type("object" + suffix)
    if media_type.startswith("text/") and "charset=" not in media_type:
        media_type += "; charset=utf-8"
    return media_type.encode("latin-1")


@functools.lru_cache(maxsize=4096)
def object_etag(size: int, mtime_ns: int) -> bytes:
    """The filesystem store's ETag (its stat()), quoted."""
    return b'"%s"' % hashlib.md5(f"{size}-{mtime_ns}".encode()).hexdigest().encode()
