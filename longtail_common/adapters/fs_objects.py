"""Embedded object backend: one directory per bucket on the local filesystem.

Writes go to a temporary file and are renamed into place, so a reader sees a whole
object or none (the same guarantee S3 gives). Keys are validated so they cannot
escape their bucket directory.

Conditional writes compare an md5 of the content, under an flock of `<root>/.cas.lock`
(so they hold across the processes of one machine). A multipart upload is a folder
`<root>/.multipart/<upload id>/` of part files, concatenated into place on completion.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import mimetypes
import os
import pathlib
import shutil
import re
import tempfile
import uuid
from contextlib import contextmanager
from typing import Iterator

from longtail_common.ports import (
    MULTIPART_MAX_PARTS,
    ConflictError,
    InvalidKeyError,
    NotFoundError,
    ObjectInfo,
    ObjectPart,
    validate_object_key,
)

_CHUNK = 256 * 1024
_UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")

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

    def local_path(self, bucket: str, key: str) -> str:
        """Where an object's bytes are, for the gateway to read directly. The key must have
        passed validate_object_key (no "." or ".." segments, a safe alphabet), so it cannot
        leave its bucket; no resolve() (a realpath per segment fetch)."""
        return f"{self._bucket_dir(bucket)}/{key}"

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

    # -- conditional writes -------------------------------------------------------------

    @contextmanager
    def _cas_lock(self):
        with open(self.root / ".cas.lock", "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def get_versioned(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        try:
            data = self._path(bucket, key).read_bytes()
        except FileNotFoundError:
            return None
        return data, hashlib.md5(data).hexdigest()

    def put_bytes_if(self, bucket: str, key: str, data: bytes, if_match: str | None) -> str:
        path = self._path(bucket, key)
        with self._cas_lock():
            current = self.get_versioned(bucket, key)
            if (current[1] if current else None) != if_match:
                found = "absent" if current is None else f"etag {current[1]}"
                raise ConflictError(f"{bucket}/{key} is {found}, not {if_match or 'absent'}")
            self._atomic_write(path, lambda fh: fh.write(data))
        return hashlib.md5(data).hexdigest()

    # -- multipart uploads ----------------------------------------------------------------

    def _upload_dir(self, bucket: str, key: str, upload_id: str) -> pathlib.Path:
        """The upload's part folder; NotFoundError unless it exists and was made for bucket/key."""
        validate_object_key(key)
        directory = self.root / ".multipart" / upload_id
        if not _UPLOAD_ID_RE.fullmatch(upload_id or ""):
            raise NotFoundError(f"no multipart upload {upload_id!r}")
        try:
            target = json.loads((directory / "target.json").read_text())
        except FileNotFoundError:
            raise NotFoundError(f"no multipart upload {upload_id} of {bucket}/{key}") from None
        if target != [bucket, key]:
            raise NotFoundError(f"multipart upload {upload_id} is not one of {bucket}/{key}")
        return directory

    def create_multipart(self, bucket: str, key: str, content_type: str | None = None) -> str:
        self._path(bucket, key)  # validates bucket and key
        upload_id = uuid.uuid4().hex
        directory = self.root / ".multipart" / upload_id
        directory.mkdir(parents=True)
        self._atomic_write(directory / "target.json", lambda fh: fh.write(json.dumps([bucket, key]).encode()))
        return upload_id

    def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int, data: bytes) -> ObjectPart:
        if not 1 <= part_number <= MULTIPART_MAX_PARTS:
            raise ValueError(f"part number {part_number} outside 1..{MULTIPART_MAX_PARTS}")
        directory = self._upload_dir(bucket, key, upload_id)
        path = directory / f"{part_number:05d}.part"
        self._atomic_write(path, lambda fh: fh.write(data))
        return self._part(path)

    @staticmethod
    def _part(path: pathlib.Path) -> ObjectPart:
        st = path.stat()  # an etag from size and time, like stat(): parts are too big to hash each listing
        return ObjectPart(number=int(path.stem), size=st.st_size,
                          etag=hashlib.md5(f"{st.st_size}-{st.st_mtime_ns}-{st.st_ino}".encode()).hexdigest())

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[ObjectPart]:
        directory = self._upload_dir(bucket, key, upload_id)
        return [self._part(path) for path in sorted(directory.glob("*.part"))]

    def complete_multipart(self, bucket: str, key: str, upload_id: str, parts: list[ObjectPart]) -> None:
        directory = self._upload_dir(bucket, key, upload_id)
        stored = {p.number: p for p in self.list_parts(bucket, key, upload_id)}
        numbers = [p.number for p in parts]
        if numbers != sorted(set(numbers)) or any(stored.get(p.number) != p for p in parts):
            raise ValueError(f"parts {numbers} do not match the stored parts of upload {upload_id}")

        def concatenate(fh):
            for number in numbers:
                with open(directory / f"{number:05d}.part", "rb") as src:
                    shutil.copyfileobj(src, fh, _CHUNK)

        self._atomic_write(self._path(bucket, key), concatenate)
        shutil.rmtree(directory, ignore_errors=True)

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            directory = self._upload_dir(bucket, key, upload_id)
        except NotFoundError:
            return
        shutil.rmtree(directory, ignore_errors=True)

    def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[tuple[str, str]]:
        self._bucket_dir(bucket)  # validates the bucket name
        found = []
        for target_file in sorted((self.root / ".multipart").glob("*/target.json")):
            try:
                target = json.loads(target_file.read_text())
            except (FileNotFoundError, ValueError):
                continue  # completed or aborted while listed, or half made
            if target[0] == bucket and target[1].startswith(prefix):
                found.append((target[1], target_file.parent.name))
        return found
