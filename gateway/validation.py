"""Checks of what clients send that several routes share: video ids and viewer regions.

The patterns themselves live in longtail_common.ports (is_valid_id, is_valid_region),
the one place every service takes them from.
"""
from __future__ import annotations

from fastapi import Request

from longtail_common.config import Config
from longtail_common.ports import is_valid_id, is_valid_region
from gateway.errors import ApiError


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
