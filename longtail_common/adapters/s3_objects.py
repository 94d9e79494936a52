"""Real object backend: any S3 API (MinIO, S3Proxy, AWS S3) through the minio SDK.

Bucket names are `cfg.bucket_prefix + bucket`, lower-cased (S3 bucket names cannot hold
capitals, and the platform's edge buckets are named after regions, "edge-US").
Addressing is path-style for anything that is not AWS (what minio does by itself for
an `host:port` endpoint), which MinIO and S3Proxy both serve.

Every key passes `ports.validate_object_key`. Uploads are atomic (S3 makes an object
visible only once complete, multipart included). A put into a bucket that does not
exist yet creates it, as the filesystem backend does.

Conditional writes send `If-Match` / `If-None-Match: *` (AWS S3 and MinIO compare
atomically; S3Proxy's filesystem store does too for `If-None-Match` and within its one
process for `If-Match`). minio-py offers multipart uploads and header-carrying puts only as
its underscore methods (`_create_multipart_upload`, `_upload_part`, `_list_parts`, ...),
the ones its own `put_object` is built on; they are used here, pinned by the contract
tests.
"""
from __future__ import annotations

import datetime
import io
import logging
import mimetypes
import os
import re
import threading
import urllib.parse
from typing import Iterator

from longtail_common.config import S3Config
from longtail_common.ports import (
    MULTIPART_MAX_PARTS,
    BackendUnavailableError,
    ConflictError,
    InvalidKeyError,
    NotFoundError,
    ObjectInfo,
    ObjectPart,
    PortError,
    validate_object_key,
)

log = logging.getLogger(__name__)

PART_SIZE = 16 * 1024 * 1024  # multipart part size for put_file (files above it go multipart)
STREAM_CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0

_MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound", "NotFound", "NoSuchUpload"}
# A conditional write that lost: 412, 409 (a concurrent conditional write), 404 (If-Match on
# an absent key).
_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"}
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".vtt": "text/vtt",
    ".mp4": "video/mp4",
    ".json": "application/json",
}


def guess_content_type(key: str) -> str:
    ext = os.path.splitext(key)[1].lower()
    return _TYPES.get(ext) or mimetypes.guess_type(key)[0] or "application/octet-stream"


def _is_missing(exc) -> bool:
    from minio.error import S3Error

    if isinstance(exc, S3Error):
        status = getattr(getattr(exc, "response", None), "status", None)
        return exc.code in _MISSING_CODES or status == 404
    return False


def _presigning_client(cfg: S3Config):
    """A client that only signs URLs for browsers at `cfg.public_url` (None when unset).
    Signing is local: with the region given, the client never calls that address."""
    if not cfg.public_url:
        return None
    from minio import Minio

    url = urllib.parse.urlsplit(cfg.public_url)
    if url.scheme not in ("http", "https") or not url.netloc or url.path not in ("", "/") or url.query:
        raise ValueError(f"s3.public_url must be scheme://host[:port] with no path, not {cfg.public_url!r}")
    return Minio(url.netloc, access_key=cfg.access_key or None, secret_key=cfg.secret_key or None,
                 secure=url.scheme == "https", region=cfg.region or "us-east-1")


class S3ObjectStore:
    def __init__(self, cfg: S3Config, part_size: int = PART_SIZE):
        import urllib3
        from minio import Minio

        self.cfg = cfg
        self._part_size = part_size
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
            maxsize=16,
            retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self._client = Minio(cfg.endpoint, access_key=cfg.access_key or None, secret_key=cfg.secret_key or None,
                             secure=cfg.secure, region=cfg.region or "us-east-1", http_client=http)
        self._presigner = _presigning_client(cfg) or self._client
        self._buckets: set[str] = set()
        self._lock = threading.Lock()

    # -- helpers --------------------------------------------------------------------------

    def bucket_name(self, bucket: str) -> str:
        """The S3 bucket that holds the platform bucket `bucket`."""
        if not isinstance(bucket, str) or "/" in bucket:
            raise InvalidKeyError(f"invalid bucket {bucket!r}")
        validate_object_key(bucket)
        name = (self.cfg.bucket_prefix + bucket).lower().replace("_", "-")
        if not _BUCKET_RE.fullmatch(name) or ".." in name:
            raise InvalidKeyError(f"bucket {bucket!r} maps to {name!r}, which is not a valid S3 bucket name")
        return name

    def _fail(self, what: str, exc: BaseException) -> PortError:
        from minio.error import S3Error

        if isinstance(exc, S3Error):
            status = getattr(getattr(exc, "response", None), "status", 0) or 0
            if status >= 500 or exc.code in ("SlowDown", "ServiceUnavailable", "InternalError"):
                return BackendUnavailableError(f"S3 at {self.cfg.endpoint}: {what}: {exc.code}: {exc.message}")
            return PortError(f"S3 at {self.cfg.endpoint}: {what}: {exc.code}: {exc.message}")
        return BackendUnavailableError(f"S3 at {self.cfg.endpoint}: {what} failed: {exc}")

    def _errors(self) -> tuple[type[BaseException], ...]:
        import urllib3
        from minio.error import MinioException

        return (MinioException, urllib3.exceptions.HTTPError, OSError)

    def _with_bucket(self, bucket: str, what: str, op):
        """Run op(bucket_name); a missing bucket is created once and op retried."""
        from minio.error import S3Error

        name = self.bucket_name(bucket)
        try:
            return op(name)
        except S3Error as exc:
            if exc.code != "NoSuchBucket":
                raise self._fail(what, exc) from exc
        except self._errors() as exc:
            raise self._fail(what, exc) from exc
        with self._lock:
            self._buckets.discard(name)
        self.ensure_bucket(bucket)
        try:
            return op(name)
        except self._errors() as exc:
            raise self._fail(what, exc) from exc

    # -- ObjectStore ----------------------------------------------------------------------

    def ensure_bucket(self, bucket: str) -> None:
        from minio.error import S3Error

        name = self.bucket_name(bucket)
        with self._lock:
            if name in self._buckets:
                return
        try:
            if not self._client.bucket_exists(name):
                try:
                    self._client.make_bucket(name)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        except self._errors() as exc:
            raise self._fail(f"creating bucket {name}", exc) from exc
        with self._lock:
            self._buckets.add(name)

    def put_file(self, bucket: str, key: str, path: str, content_type: str | None = None) -> None:
        validate_object_key(key)
        ctype = content_type or guess_content_type(key)
        self._with_bucket(bucket, f"uploading {bucket}/{key}", lambda name: self._client.fput_object(
            name, key, str(path), content_type=ctype, part_size=self._part_size))

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        validate_object_key(key)
        ctype = content_type or guess_content_type(key)
        data = bytes(data)
        self._with_bucket(bucket, f"writing {bucket}/{key}", lambda name: self._client.put_object(
            name, key, io.BytesIO(data), len(data), content_type=ctype))

    def get_bytes(self, bucket: str, key: str) -> bytes:
        return b"".join(self.open_stream(bucket, key))

    def open_stream(self, bucket: str, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        from minio.error import S3Error

        validate_object_key(key)
        name = self.bucket_name(bucket)
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range {start}-{end}")
        length = 0 if end is None else end - start + 1  # minio: length 0 = to the end
        try:
            resp = self._client.get_object(name, key, offset=start, length=length)
        except S3Error as exc:
            if _is_missing(exc):
                raise NotFoundError(f"{bucket}/{key} not found") from None
            if exc.code == "InvalidRange":  # start at or past the end: nothing to send
                return iter(())
            raise self._fail(f"reading {bucket}/{key}", exc) from exc
        except self._errors() as exc:
            raise self._fail(f"reading {bucket}/{key}", exc) from exc

        def gen():
            try:
                yield from resp.stream(STREAM_CHUNK)
            except self._errors() as exc:
                raise self._fail(f"reading {bucket}/{key}", exc) from exc
            finally:
                resp.close()
                resp.release_conn()

        return gen()

    def download_file(self, bucket: str, key: str, path: str) -> None:
        from minio.error import S3Error

        validate_object_key(key)
        name = self.bucket_name(bucket)
        try:
            self._client.fget_object(name, key, str(path))
        except S3Error as exc:
            if _is_missing(exc):
                raise NotFoundError(f"{bucket}/{key} not found") from None
            raise self._fail(f"downloading {bucket}/{key}", exc) from exc
        except self._errors() as exc:
            raise self._fail(f"downloading {bucket}/{key}", exc) from exc

    def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        from minio.error import S3Error

        validate_object_key(key)
        name = self.bucket_name(bucket)
        try:
            obj = self._client.stat_object(name, key)
        except S3Error as exc:
            if _is_missing(exc):
                return None
            raise self._fail(f"stat {bucket}/{key}", exc) from exc
        except self._errors() as exc:
            raise self._fail(f"stat {bucket}/{key}", exc) from exc
        return ObjectInfo(key=key, size=int(obj.size or 0),
                          content_type=obj.content_type or "application/octet-stream",
                          etag=(obj.etag or "").strip('"'))

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        from minio.error import S3Error

        if prefix:
            validate_object_key(prefix[:-1] if prefix.endswith("/") else prefix)
        name = self.bucket_name(bucket)

        def gen():
            try:
                for obj in self._client.list_objects(name, prefix=prefix or None, recursive=True):
                    if not obj.is_dir:
                        yield obj.object_name
            except S3Error as exc:
                if exc.code == "NoSuchBucket":
                    return
                raise self._fail(f"listing {bucket}/{prefix}", exc) from exc
            except self._errors() as exc:
                raise self._fail(f"listing {bucket}/{prefix}", exc) from exc

        return gen()

    def delete(self, bucket: str, key: str) -> None:
        from minio.error import S3Error

        validate_object_key(key)
        name = self.bucket_name(bucket)
        try:
            self._client.remove_object(name, key)
        except S3Error as exc:
            if _is_missing(exc):
                return
            raise self._fail(f"deleting {bucket}/{key}", exc) from exc
        except self._errors() as exc:
            raise self._fail(f"deleting {bucket}/{key}", exc) from exc

    def presigned_get_url(self, bucket: str, key: str, expires_s: int = 3600) -> str | None:
        validate_object_key(key)
        name = self.bucket_name(bucket)
        expires = datetime.timedelta(seconds=max(1, min(int(expires_s), 7 * 24 * 3600)))
        try:
            return self._presigner.presigned_get_object(name, key, expires=expires)
        except self._errors() as exc:
            raise self._fail(f"signing a URL for {bucket}/{key}", exc) from exc

    # -- conditional writes ---------------------------------------------------------------

    def _call(self, what: str, op, missing: str | None = None):
        """op(); S3 errors become port errors (NotFoundError with `missing` for a 404)."""
        from minio.error import S3Error

        try:
            return op()
        except S3Error as exc:
            if missing is not None and _is_missing(exc):
                raise NotFoundError(missing) from None
            raise self._fail(what, exc) from exc
        except self._errors() as exc:
            raise self._fail(what, exc) from exc

    def get_versioned(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        validate_object_key(key)
        name = self.bucket_name(bucket)

        def read():
            resp = self._client.get_object(name, key)
            try:
                return resp.read(), (resp.headers.get("ETag") or "").strip('"')
            finally:
                resp.close()
                resp.release_conn()

        try:
            return self._call(f"reading {bucket}/{key}", read, missing=f"{bucket}/{key} not found")
        except NotFoundError:
            return None

    def put_bytes_if(self, bucket: str, key: str, data: bytes, if_match: str | None) -> str:
        from minio.error import S3Error

        validate_object_key(key)
        headers = {"Content-Type": guess_content_type(key)}
        if if_match is None:
            headers["If-None-Match"] = "*"
        else:
            headers["If-Match"] = f'"{if_match}"'
        data = bytes(data)

        def put(name):
            try:
                return self._client._put_object(name, key, data, headers=dict(headers)).etag
            except S3Error as exc:
                if exc.code in _CONFLICT_CODES:
                    raise ConflictError(f"{bucket}/{key} is not at {if_match or 'absent'}: {exc.code}") from None
                raise

        return self._with_bucket(bucket, f"writing {bucket}/{key} conditionally", put)

    # -- multipart uploads ------------------------------------------------------------------

    def create_multipart(self, bucket: str, key: str, content_type: str | None = None) -> str:
        validate_object_key(key)
        headers = {"Content-Type": content_type or guess_content_type(key)}
        return self._with_bucket(bucket, f"starting an upload of {bucket}/{key}", lambda name: (
            self._client._create_multipart_upload(name, key, headers)))

    def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int, data: bytes) -> ObjectPart:
        validate_object_key(key)
        if not 1 <= part_number <= MULTIPART_MAX_PARTS:
            raise ValueError(f"part number {part_number} outside 1..{MULTIPART_MAX_PARTS}")
        name, data = self.bucket_name(bucket), bytes(data)
        etag = self._call(f"uploading part {part_number} of {bucket}/{key}", lambda: self._client._upload_part(
            name, key, data, None, upload_id, part_number), missing=f"no upload {upload_id} of {bucket}/{key}")
        return ObjectPart(number=part_number, size=len(data), etag=etag)

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[ObjectPart]:
        validate_object_key(key)
        name = self.bucket_name(bucket)
        parts, marker = [], None
        while True:
            page = self._call(f"listing the parts of {bucket}/{key}", lambda: self._client._list_parts(
                name, key, upload_id, part_number_marker=marker), missing=f"no upload {upload_id} of {bucket}/{key}")
            parts += [ObjectPart(number=p.part_number, size=int(p.size or 0), etag=p.etag) for p in page.parts]
            if not page.is_truncated or not page.next_part_number_marker:
                return parts
            marker = page.next_part_number_marker

    def complete_multipart(self, bucket: str, key: str, upload_id: str, parts: list[ObjectPart]) -> None:
        from minio.datatypes import Part

        validate_object_key(key)
        name = self.bucket_name(bucket)
        listed = [Part(p.number, p.etag) for p in parts]
        self._call(f"completing the upload of {bucket}/{key}", lambda: self._client._complete_multipart_upload(
            name, key, upload_id, listed), missing=f"no upload {upload_id} of {bucket}/{key}")

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        validate_object_key(key)
        name = self.bucket_name(bucket)
        try:
            self._call(f"aborting the upload of {bucket}/{key}", lambda: self._client._abort_multipart_upload(
                name, key, upload_id), missing="gone")
        except NotFoundError:
            pass  # idempotent

    def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[tuple[str, str]]:
        name = self.bucket_name(bucket)
        found, key_marker, id_marker = [], None, None
        while True:
            try:
                page = self._call(f"listing the uploads of {bucket}/{prefix}", lambda: (
                    self._client._list_multipart_uploads(name, prefix=prefix or None, key_marker=key_marker,
                                                         upload_id_marker=id_marker)), missing="no bucket")
            except NotFoundError:
                return found  # no bucket, no uploads
            found += [(u.object_name, u.upload_id) for u in page.uploads]
            if not page.is_truncated:
                return found
            key_marker, id_marker = page.next_key_marker, page.next_upload_id_marker
