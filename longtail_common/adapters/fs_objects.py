"""Embedded object backend: one directory per bucket on the local filesystem.

Writes go to a temporary file and are renamed into place, so a reader sees a whole
object or none (the same guarantee S3 gives). Keys are validated so they cannot
escape their bucket directory.
"""
from __future__ import annotations

import hashlib
import mimetypes
import os
import pathlib
import shutil
import tempfile
from typing import Iterator

from longtail_common.ports import InvalidKeyError, NotFoundError, ObjectInfo, validate_object_key

_CHUNK = 256 * 1024

mimetypes.add_type("application/vnd.apple.mpegurl", ".m3u8")
mimetypes.add_type("application/dash+xml", ".mpd")
mimetypes.add_type("video/mp2t", ".ts")
mimetypes.add_type("video/iso.segment", ".m4s")
mimetypes.add_type("text/vtt", ".vtt")


def guess_content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class FilesystemObjectStore:
    def __init__(self, root: str | pathlib.Path):
        self.root = pathlib.Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _bucket_dir(self, bucket: str) -> pathlib.Path:
        validate_object_key(bucket)
        if "/" in bucket:
            raise InvalidKeyError(f"invalid bucket {bucket!r}")
        return self.root / bucket

    def _path(self, bucket: str, key: str) -> pathlib.Path:
        validate_object_key(key)
        path = (self._bucket_dir(bucket) / key).resolve()
        if self._bucket_dir(bucket).resolve() not in path.parents:
            raise InvalidKeyError(f"object key {key!r} escapes its bucket")
        return path

    def ensure_bucket(self, bucket: str) -> None:
        self._bucket_dir(bucket).mkdir(parents=True, exist_ok=True)

    def _atomic_write(self, path: pathlib.Path, writer) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                writer(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def put_file(self, bucket: str, key: str, path: str, content_type: str | None = None) -> None:
        def copy(fh):
            with open(path, "rb") as src:
                shutil.copyfileobj(src, fh, _CHUNK)

        self._atomic_write(self._path(bucket, key), copy)

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        self._atomic_write(self._path(bucket, key), lambda fh: fh.write(data))

    def get_bytes(self, bucket: str, key: str) -> bytes:
        path = self._path(bucket, key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{bucket}/{key} not found") from None

    def open_stream(self, bucket: str, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self._path(bucket, key)
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            raise NotFoundError(f"{bucket}/{key} not found") from None

        def gen():
            with fh:
                fh.seek(start)
                remaining = None if end is None else end - start + 1
                while remaining is None or remaining > 0:
                    chunk = fh.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
                    if not chunk:
                        break
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk

        return gen()

    def download_file(self, bucket: str, key: str, path: str) -> None:
        src = self._path(bucket, key)
        if not src.exists():
            raise NotFoundError(f"{bucket}/{key} not found")
        shutil.copyfile(src, path)

    def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        path = self._path(bucket, key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        etag = hashlib.md5(f"{st.st_size}-{st.st_mtime_ns}".encode()).hexdigest()
        return ObjectInfo(key=key, size=st.st_size, content_type=guess_content_type(key), etag=etag)

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        base = self._bucket_dir(bucket)
        if not base.exists():
            return iter(())
        keys = []
        for dirpath, _dirnames, filenames in os.walk(base):
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                key = pathlib.Path(dirpath, name).relative_to(base).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return iter(sorted(keys))

    def delete(self, bucket: str, key: str) -> None:
        try:
            self._path(bucket, key).unlink()
        except FileNotFoundError:
            pass

    def presigned_get_url(self, bucket: str, key: str, expires_s: int = 3600) -> str | None:
        return None  # the gateway serves embedded objects itself
