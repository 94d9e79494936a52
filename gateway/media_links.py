"""Where a client fetches a media object from: a presigned object-store URL when the
backend signs them, else the gateway's own origin route; and playlists whose segment
URIs are rewritten to presigned URLs, so the heavy bytes bypass the gateway.
"""
from __future__ import annotations

import re
from typing import Callable

from fastapi import Request

from longtail_common.ports import MEDIA_BUCKET, InvalidKeyError, NotFoundError, ObjectStore, validate_object_key

PLAYLIST_SUFFIXES = (".m3u8", ".mpd")
_URI_ATTR = re.compile(r'URI="([^"]+)"')


def media_url(request: Request, objects: ObjectStore, key: str) -> str:
    # Playlists always come through the gateway: their relative URIs would lose a
    # presigned URL's signature; origin_object signs the segment URIs inside instead.
    if not key.endswith(PLAYLIST_SUFFIXES):
        url = objects.presigned_get_url(MEDIA_BUCKET, key)
        if url:
            return url
    return str(request.url_for("origin_object", key=key))


def signed_playlist(objects: ObjectStore, key: str) -> bytes | None:
    """The playlist with its segment/init URIs as presigned object-store URLs; None when
    nothing changes (no presigning backend, or a master playlist that only names other
    playlists)."""
    try:
        validate_object_key(key)
        if objects.presigned_get_url(MEDIA_BUCKET, key) is None:
            return None  # the embedded store: everything is served here anyway
        text = objects.get_bytes(MEDIA_BUCKET, key).decode("utf-8")
    except (InvalidKeyError, NotFoundError, UnicodeDecodeError):
        return None
    base = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    rewritten = rewrite_playlist_uris(text, lambda uri: objects.presigned_get_url(MEDIA_BUCKET, base + uri))
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
