"""Who may download a video, and the `downloads` list of its watch payload.

One job: the download rules. A video's downloads are open to whoever may watch it unless
its owner disabled them (its `download_policy`; unset: `downloads.allowed_by_default`); its
owner and admins always may. Each listed file's URL carries a download token
(gateway/signing.py) for that one file, with the watch call's expiry (and a private
video's account), served by the download route with `Content-Disposition: attachment`.
"""
from __future__ import annotations

from fastapi import Request

from longtail.metadata.v1 import video_pb2
from longtail_common.config import Config
from longtail_common.proto_enums import DOWNLOAD_KIND_NAMES
from gateway.signing import MediaGrant
from gateway.video_access import Actor, owns_channel

D = video_pb2.DownloadPolicy


def downloads_enabled(video: video_pb2.Video, cfg: Config) -> bool:
    """The video's own setting, else the platform's default."""
    if video.download_policy == D.DOWNLOAD_POLICY_UNSPECIFIED:
        return cfg.downloads.allowed_by_default
    return video.download_policy == D.DOWNLOAD_POLICY_ALLOWED


def may_download(video: video_pb2.Video, actor: Actor | None, cfg: Config) -> bool:
    """Whether this caller may fetch the video's download files (it may already see the video)."""
    return downloads_enabled(video, cfg) or owns_channel(actor, video.channel)


def download_json(request: Request, download: video_pb2.Download, grant: MediaGrant) -> dict:
    token = request.app.state.signer.download_token(grant, download.object_key)
    return {
        "kind": DOWNLOAD_KIND_NAMES.get(download.kind, "unknown"),
        "height": download.height or None,
        "size_bytes": download.size_bytes,
        "url": str(request.url_for("signed_download", token=token, key=download.object_key)),
    }


def downloads_json(request: Request, video: video_pb2.Video, account: str | None, allowed: bool) -> list[dict]:
    """The video's download files with signed URLs; none for a caller who may not download.
    Signed even with playback.signed off: the token is what carries the owner's permission."""
    if not allowed or not video.downloads:
        return []
    grant = request.app.state.signer.media_grant(video.id, account)
    order = sorted(video.downloads, key=lambda d: (d.kind, -d.height))
    return [download_json(request, d, grant) for d in order]


def attachment_name(video_id: str, key: str) -> str:
    """The file name a browser saves a download as: <video id>-<file> (both ASCII-safe)."""
    return f"{video_id}-{key.rsplit('/', 1)[-1]}"
