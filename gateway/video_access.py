"""Who may see and who may change a video, from its privacy and its channel's owner.

One job: the gateway's answers for privacy and ownership (metadata_svc enforces the same
ownership on its side). As PeerTube has it: a PUBLIC video is listed and searchable, an
UNLISTED one plays for anyone with its link, a PRIVATE one exists only for its channel's
owner and admins (404 to anyone else, so its id reveals nothing). Changing a video takes
its owner or an admin (the routes answer 401 to anonymous requests first): 403 to another
account, 404 if the video is private.
"""
from __future__ import annotations

from typing import Protocol

from longtail.metadata.v1 import video_pb2
from gateway.errors import ApiError

P = video_pb2.Privacy
PRIVACY_NAMES = {P.PRIVACY_PUBLIC: "public", P.PRIVACY_UNLISTED: "unlisted", P.PRIVACY_PRIVATE: "private"}
PRIVACY_VALUES = {name: value for value, name in PRIVACY_NAMES.items()}


class Actor(Protocol):
    """What the checks need of a signed-in principal."""

    account_id: str
    admin: bool


def privacy_name(video: video_pb2.Video) -> str:
    """"public", "unlisted" or "private"; videos stored before privacy existed are public."""
    return PRIVACY_NAMES.get(video.privacy, "public")


def is_private(video: video_pb2.Video) -> bool:
    return video.privacy == P.PRIVACY_PRIVATE


def owns_channel(actor: Actor | None, channel: video_pb2.Channel) -> bool:
    """Its owner or an admin; a channel made before accounts existed is the admins' only."""
    if actor is None:
        return False
    return actor.admin or (bool(channel.owner_account_id) and channel.owner_account_id == actor.account_id)


def media_account(video: video_pb2.Video, actor: Actor | None) -> str | None:
    """Whom a video's media URLs are issued to: a private video's name the account (only it
    may fetch them), other videos' name nobody (the same URL for every viewer, cacheable)."""
    return actor.account_id if actor is not None and is_private(video) else None


def not_found(video_id: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"video {video_id} not found")


def require_visible(video: video_pb2.Video, actor: Actor | None) -> video_pb2.Video:
    """The video, unless it is private and not the actor's (then 404, as if it did not exist)."""
    if is_private(video) and not owns_channel(actor, video.channel):
        raise not_found(video.id)
    return video


def require_owner(video: video_pb2.Video, actor: Actor) -> Actor:
    """The signed-in actor, if it may change the video: else 404 (another account's private
    video) or 403 (another account's)."""
    require_visible(video, actor)
    if not owns_channel(actor, video.channel):
        raise ApiError(403, "PERMISSION_DENIED", f"video {video.id} belongs to another account")
    return actor
