"""CDN edge stores: push a video's renditions to a region's edge, or evict them.

In the embedded setup each region's edge is the object-store bucket `edge-<region>` that
the gateway serves under /edge/<REGION>/ (a push CDN's storage zone in a deployment). A
push copies every object under videos/<id>/ from the media bucket (except the transcoder's
private records, the files named "_*") and is idempotent; it checks each copy's size, so a decision that
says "cdn" is only published after the bytes are all there. Eviction deletes them.
"""
from __future__ import annotations

import os
import tempfile

from longtail_common.ports import (EDGE_BUCKET_PREFIX, MEDIA_BUCKET, ObjectStore, is_origin_only_media_key,
                                   is_private_media_key, validate_id)


def edge_bucket(region: str) -> str:
    return f"{EDGE_BUCKET_PREFIX}{region.lower()}"


def video_keys(objects: ObjectStore, video_id: str) -> list[str]:
    prefix = f"videos/{validate_id(video_id, 'video id')}/"
    return sorted(k for k in objects.list_keys(MEDIA_BUCKET, prefix)
                  if not is_private_media_key(k) and not is_origin_only_media_key(k))


def video_size_bytes(objects: ObjectStore, video_id: str) -> int:
    total = 0
    for key in video_keys(objects, video_id):
        info = objects.stat(MEDIA_BUCKET, key)
        total += info.size if info else 0
    return total


def push(objects: ObjectStore, video_id: str, region: str) -> int:
    """Copies the video's objects to the region's edge; returns bytes copied (0 if all there)."""
    bucket = edge_bucket(region)
    objects.ensure_bucket(bucket)
    keys = video_keys(objects, video_id)
    if not keys:
        raise RuntimeError(f"video {video_id} has no media objects to push")
    copied = 0
    with tempfile.TemporaryDirectory(prefix="lt-push-") as tmp:
        for key in keys:
            src = objects.stat(MEDIA_BUCKET, key)
            if src is None:
                raise RuntimeError(f"media object {key} vanished during push")
            have = objects.stat(bucket, key)
            if have is not None and have.size == src.size:
                continue
            local = os.path.join(tmp, "obj")
            objects.download_file(MEDIA_BUCKET, key, local)
            objects.put_file(bucket, key, local, content_type=src.content_type)
            os.unlink(local)
            got = objects.stat(bucket, key)
            if got is None or got.size != src.size:
                raise RuntimeError(f"push of {key} to {bucket} incomplete")
            copied += src.size
    return copied


def is_pushed(objects: ObjectStore, video_id: str, region: str) -> bool:
    bucket = edge_bucket(region)
    keys = video_keys(objects, video_id)
    return bool(keys) and all(objects.stat(bucket, k) is not None for k in keys)


def evict(objects: ObjectStore, video_id: str, region: str) -> int:
    """Deletes the video's objects from the region's edge; returns how many were deleted."""
    bucket = edge_bucket(region)
    prefix = f"videos/{validate_id(video_id, 'video id')}/"
    try:
        keys = list(objects.list_keys(bucket, prefix))
    except Exception:  # noqa: BLE001 - no such bucket: nothing to evict
        return 0
    for key in keys:
        objects.delete(bucket, key)
    return len(keys)
