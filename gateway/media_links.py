"""Where a client fetches a media object from, and with which signature.

Signed URLs carry their token as a path prefix, /origin/t/<token>/<key> (or
/edge/<REGION>/t/<token>/<key>): one token covers a whole video, so the relative URIs
inside HLS and DASH manifests inherit it and no playlist needs rewriting. On a backend
that presigns (S3) single objects get presigned URLs instead, and playlists, still served
by the gateway under the token, have their segment URIs rewritten to presigned URLs as
they are served, so the heavy bytes bypass the gateway.
"""
from __future__ import annotations

import functools
import re
import time
import urllib.parse
from typing import Callable

from fastapi import Request

from longtail_common.ports import MEDIA_BUCKET, InvalidKeyError, NotFoundError, ObjectStore, validate_object_key
from gateway.signing import MediaGrant

PLAYLIST_SUFFIXES = (".m3u8", ".mpd")
UNSIGNED_PRESIGN_S = 3600
_URI_ATTR = re.compile(r'URI="([^"]+)"')
HOST_RE = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def video_of_key(key: str) -> str:
    """The video a media key belongs to (keys are videos/<id>/...); "" for any other key."""
    parts = key.split("/", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "videos" else ""


def media_grant(request: Request, video_id: str, account: str | None = None) -> MediaGrant | None:
    """The grant this request's stream URLs of the video carry; None with playback.signed off."""
    if not request.app.state.config.playback.signed:
        return None
    return request.app.state.signer.media_grant(video_id, account)


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def public_base(request: Request) -> str:
    """What every absolute URL the gateway hands out starts with: `platform.public_url`; else
    (development) the Host header only when it names the very socket the client reached, or
    loopback on its port (so a page at http://localhost:8080 keeps its own origin), and that
    socket's address otherwise. Never an arbitrary Host header: the client chooses it, and it
    would end up inside stream URLs and the renderings cached for everyone."""
    configured = request.app.state.config.platform.public_url
    if configured:
        return configured.rstrip("/")
    server = request.scope.get("server") or ("127.0.0.1", 8080)
    return base_of(request.scope.get("scheme", "http"), tuple(server), request.headers.get("host", ""))


@functools.lru_cache(maxsize=256)
def base_of(scheme: str, server: tuple, given: str) -> str:
    """public_base without a configured URL (memoised: a hot call's URLs all start with it;
    a client naming many hosts only churns the cache)."""
    server_host, server_port = server
    try:
        parts = urllib.parse.urlsplit(f"//{given}")
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        parts, port = None, None
    if parts is not None and port == server_port and parts.hostname in LOOPBACK_NAMES | {server_host.lower()} \
            and HOST_RE.fullmatch(given):
        return f"{scheme}://{given}"
    host = f"[{server_host}]" if ":" in server_host else server_host
    return f"{scheme}://{host}:{server_port}"


def public_url_for(request: Request, name: str, **params: str) -> str:
    """The absolute URL of route `name` (see public_base)."""
    return public_base(request) + str(request.app.url_path_for(name, **params))


def object_url(request: Request, route: str, key: str, grant: MediaGrant | None, **params: str) -> str:
    """The gateway URL of `key` on `route` ("origin_object" or "edge_object"), signed by grant."""
    if grant is None:
        return public_url_for(request, route, key=key, **params)
    token = request.app.state.signer.media_token(grant)
    return public_url_for(request, f"signed_{route}", token=token, key=key, **params)


def presign_seconds(grant: MediaGrant | None, extra_s: int = 0) -> int:
    """How long a presigned URL made under grant lives: until the grant expires, plus extra_s."""
    if grant is None:
        return UNSIGNED_PRESIGN_S + extra_s
    return max(1, int(grant.expires - time.time())) + extra_s


def media_url(request: Request, objects: ObjectStore, key: str, account: str | None = None) -> str:
    """A URL a client can GET `key` of the media bucket from, until its grant expires."""
    grant = media_grant(request, video_of_key(key), account)
    # Playlists always come through the gateway: their relative URIs would lose a
    # presigned URL's signature; the origin route signs the segment URIs inside instead.
    if not key.endswith(PLAYLIST_SUFFIXES):
        url = objects.presigned_get_url(MEDIA_BUCKET, key, expires_s=presign_seconds(grant))
        if url:
            return url
    return object_url(request, "origin_object", key, grant)


def edge_url(request: Request, region: str, key: str, account: str | None = None) -> str:
    """The URL of `key` on a region's edge (the embedded CDN stand-in), signed like origin URLs."""
    return object_url(request, "edge_object", key, media_grant(request, video_of_key(key), account), region=region)


def signed_playlist(objects: ObjectStore, key: str, presign_s: int) -> bytes | None:
    """The playlist with its segment/init URIs as presigned object-store URLs living presign_s;
    None when nothing changes (no presigning backend, or a master playlist that only names
    other playlists)."""
    try:
        validate_object_key(key)
        if objects.presigned_get_url(MEDIA_BUCKET, key) is None:
            return None  # the embedded store: everything is served here anyway
        text = objects.get_bytes(MEDIA_BUCKET, key).decode("utf-8")
    except (InvalidKeyError, NotFoundError, UnicodeDecodeError):
        return None
    base = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    rewritten = rewrite_playlist_uris(
        text, lambda uri: objects.presigned_get_url(MEDIA_BUCKET, base + uri, expires_s=presign_s))
    return rewritten.encode() if rewritten != text else None


def rewrite_playlist_uris(text: str, sign: Callable[[str], str | None]) -> str:
    """Replaces relative non-playlist URIs (segment lines, URI="..." attributes) of an HLS
    playlist with sign(uri); URIs that sign() returns None for, absolute ones, ones that
    climb out with "..", and nested playlists are left alone."""

    def mapped(uri: str) -> str:
        if uri.endswith(".m3u8") or "://" in uri or uri.startswith("/") or ".." in uri.split("/"):
            return uri
        return sign(uri) or uri

    out = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            line = mapped(line.strip())
        elif line.startswith("#") and 'URI="' in line:
            line = _URI_ATTR.sub(lambda m: f'URI="{mapped(m.group(1))}"', line)
        out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")
