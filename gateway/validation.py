"""Checks of what clients send that several routes share: video ids, viewer regions,
language tags, and the numbers and tokens read from headers and query strings, parsed strictly (ASCII digits
only, range-checked) so nothing malformed or out of range reaches protobuf or SQLite.

The id and region patterns live in longtail_common.ports (is_valid_id, is_valid_region),
the one place every service takes them from.
"""
from __future__ import annotations

import base64
import binascii
import json
import re

from fastapi import Request

from longtail_common.config import Config
from longtail_common.language_tags import LanguageTagError, canonical_language
from longtail_common.ports import is_valid_id, is_valid_region
from gateway.errors import ApiError

# The largest value an int64 protobuf field or an SQLite INTEGER holds.
MAX_INT64 = 2**63 - 1
# ASCII digits only: str.isdigit() also takes '²' or '٣', which int() then rejects (or reads).
ASCII_DIGITS = re.compile(r"[0-9]+")
# Page tokens are the services' own (url-safe base64 of JSON); longer than this is no token of theirs.
MAX_PAGE_TOKEN_CHARS = 512
PAGE_TOKEN = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def viewer_region(given: str, request: Request, cfg: Config) -> str:
    """The viewer's region: as given, else the X-Client-Region header, else the platform's
    default; upper-cased, and rejected (400) unless it is a two-letter code."""
    region = (given or request.headers.get("x-client-region") or cfg.platform.default_region).upper()
    if not is_valid_region(region):
        raise ApiError(400, "INVALID_ARGUMENT", "region must be a two-letter code")
    return region


def require_video_id(video_id: str) -> str:
    """The id, if it has the shape of one; else 404 at once, as no such video can exist."""
    if not is_valid_id(video_id):
        raise ApiError(404, "NOT_FOUND", f"video {video_id} not found")
    return video_id


def language_param(tag: str) -> str:
    """The canonical form of a BCP-47 tag from a request (captions, audio tracks); else 400."""
    try:
        return canonical_language(tag)
    except LanguageTagError as exc:
        raise ApiError(400, "INVALID_ARGUMENT", str(exc)) from None


def parse_count(name: str, raw: str, maximum: int = MAX_INT64) -> int:
    """A non-negative integer written in ASCII digits, at most `maximum`; else 400 naming `name`."""
    if not ASCII_DIGITS.fullmatch(raw):
        raise ApiError(400, "INVALID_ARGUMENT", f"{name} must be a non-negative integer in ASCII digits")
    if len(raw.lstrip("0")) > len(str(maximum)) or int(raw) > maximum:
        raise ApiError(400, "INVALID_ARGUMENT", f"{name} must be at most {maximum}")
    return int(raw)


def upload_length(request: Request, cfg: Config, default: int | None = None) -> int | None:
    """The tus Upload-Length header (else `default`): 400 if malformed, 413 beyond the
    platform's largest upload."""
    raw = request.headers.get("upload-length")
    length = default if raw is None else parse_count("Upload-Length", raw)
    if length is not None and length > cfg.platform.max_upload_bytes:
        raise ApiError(413, "TOO_LARGE", f"uploads are limited to {cfg.platform.max_upload_bytes} bytes")
    return length


def require_page_token(token: str) -> str:
    """`token` unless it cannot be one the services issued: theirs are url-safe base64 of
    JSON whose numbers fit int64 (search: an offset; metadata: a timestamp), so anything
    else, a forged huge offset above all, is refused here with 400 instead of failing in
    the service's database."""
    if not token:
        return token
    if len(token) > MAX_PAGE_TOKEN_CHARS or not PAGE_TOKEN.fullmatch(token):
        raise ApiError(400, "INVALID_ARGUMENT", "invalid page_token")
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.rstrip("=") + "=" * (-len(token.rstrip("=")) % 4)))
    except (binascii.Error, ValueError):
        raise ApiError(400, "INVALID_ARGUMENT", "invalid page_token") from None
    if not _numbers_fit_int64(decoded):
        raise ApiError(400, "INVALID_ARGUMENT", "page_token is out of range")
    return token


def _numbers_fit_int64(value) -> bool:
    """Whether every number in decoded JSON, and every string the services would read as
    one (they call int() on token fields), fits int64."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            return True  # not a number: the service refuses it itself
    if isinstance(value, dict):
        return all(_numbers_fit_int64(v) for v in value.values())
    if isinstance(value, list):
        return all(_numbers_fit_int64(v) for v in value)
    if isinstance(value, float):
        return abs(value) <= MAX_INT64
    if isinstance(value, int):
        return -MAX_INT64 - 1 <= value <= MAX_INT64
    return True
