"""Per-account upload quotas: the bytes an account's videos may take (`limits.
storage_quota_bytes`) and the uploads it may start in 24 h (`limits.uploads_per_day`).
Admins are exempt. Over either, the answer is 413 with the quota in the message.

Checked when an upload is created, from its declared size (tus Upload-Length or the JSON
`size_bytes`), which the video then records as its size: a reservation the account's
other uploads count against. An upload whose size is deferred is checked again at each
PATCH, before any byte of the PATCH is stored, from the size that PATCH would bring it to
(its Content-Length, or the Upload-Length it declares); the video's recorded size grows
to that. What the account already uses comes from metadata_svc (metadata_svc/usage.py
says why it is summed, not counted). The checks are not locks: uploads started at the
same instant may together pass a quota by at most what they each declared.
"""
from __future__ import annotations

from google.protobuf import field_mask_pb2

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail.upload.v1 import upload_service_pb2 as upb
from longtail_common.config import LimitsConfig
from longtail_common.mesh_identity import acting_as
from gateway.auth.principal import GATEWAY
from gateway.errors import ApiError, grpc_call
from gateway.validation import parse_count


def size_text(n: int) -> str:
    """Bytes as people read them: 10 GiB, 1.5 MiB, 700 bytes."""
    for unit, scale in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def quota_exceeded(message: str) -> ApiError:
    return ApiError(413, "QUOTA_EXCEEDED", message)


def applies(limits: LimitsConfig, admin: bool) -> bool:
    return not admin and (limits.storage_quota_bytes > 0 or limits.uploads_per_day > 0)


async def usage_of(metadata: mpb_grpc.MetadataServiceStub, account_id: str) -> mpb.AccountUsage:
    answer = await grpc_call(metadata.ListChannels(
        mpb.ListChannelsRequest(owner_account_id=account_id, include_usage=True), timeout=15))
    return answer.usage


def check_storage(limits: LimitsConfig, used_elsewhere: int, size: int) -> None:
    """413 unless `size` more bytes fit beside `used_elsewhere`."""
    quota = limits.storage_quota_bytes
    if quota > 0 and used_elsewhere + size > quota:
        raise quota_exceeded(
            f"storage quota exceeded: the quota is {size_text(quota)} ({quota} bytes) per account; "
            f"{size_text(used_elsewhere)} is used, and this upload needs {size_text(size)}")


async def check_creation(metadata: mpb_grpc.MetadataServiceStub, limits: LimitsConfig, account_id: str,
                         admin: bool, length: int | None) -> None:
    """Before a video is created: the uploads of the last 24 h, and its declared size (a
    deferred size needs the quota not to be full already)."""
    if not applies(limits, admin):
        return
    usage = await usage_of(metadata, account_id)
    if 0 < limits.uploads_per_day <= usage.uploads_last_day:
        raise quota_exceeded(f"upload quota exceeded: {limits.uploads_per_day} uploads per day per account, "
                             f"and {usage.uploads_last_day} were started in the last 24 hours")
    check_storage(limits, usage.stored_bytes, length if length is not None else 1)


async def reserve_deferred_patch(metadata: mpb_grpc.MetadataServiceStub, limits: LimitsConfig, account_id: str,
                                 admin: bool, header: upb.AppendUploadRequest.Header,
                                 content_length: str | None) -> None:
    """Before a PATCH of an upload whose size is deferred stores anything: 413 unless the
    upload may grow to what this PATCH brings it to; else the video records that size."""
    if not applies(limits, admin) or limits.storage_quota_bytes <= 0:
        return
    if content_length is None:
        raise ApiError(400, "INVALID_ARGUMENT", "Content-Length is required on a PATCH of an upload whose size "
                                                "is deferred: the storage quota is checked before any byte is stored")
    new_size = header.offset + parse_count("Content-Length", content_length)
    if header.HasField("length"):
        new_size = max(new_size, header.length)
    video = await grpc_call(metadata.GetVideo(mpb.GetVideoRequest(id=header.video_id), timeout=15))
    if new_size <= video.size_bytes:
        return  # within what it already holds (a PATCH resumed after a stall)
    usage = await usage_of(metadata, account_id)
    check_storage(limits, usage.stored_bytes - video.size_bytes, new_size)
    # Written as the gateway itself: an account may not write its videos' sizes (it could
    # shrink them under its quota), the service that checked the quota does.
    with acting_as(GATEWAY):
        await grpc_call(metadata.UpdateVideo(mpb.UpdateVideoRequest(
            video=video_pb2.Video(id=header.video_id, size_bytes=new_size),
            update_mask=field_mask_pb2.FieldMask(paths=["size_bytes"])), timeout=15))
