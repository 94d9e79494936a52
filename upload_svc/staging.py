"""Unfinished uploads, kept in the object store so that any upload_svc replica can serve
any request of any upload (the service holds no state of its own).

Layout, for video V (raw key `V/original`):

* `staging/V/upload.json`: the upload's state (declared length, part size, the multipart
  upload id, phase, last activity, lease). Every write of it is a conditional write on
  its etag (`ObjectStore.put_bytes_if`), which is what makes it a lock.
* an S3 multipart upload of `raw/V/original` (created at the first full part): part n
  holds bytes [(n-1)*P, n*P) with P = the upload's part size (8 MiB; S3 wants >= 5 MiB
  for every part but the last). On the filesystem backend the parts are files.
* `staging/V/tail-<start>`: the bytes after the last full part (fewer than P), so a
  PATCH of any size is kept even though it cannot be a part yet. The tail is valid only
  if `start` is the sum of the parts; one left over from before a part absorbed its
  bytes is stale (ignored, deleted once seen).

The offset is always derived from the store: sum of the contiguous full parts + the valid
tail's size (or the length, once the raw object exists).

An append takes a lease first: a conditional write of the state naming a random holder
and an expiry a few seconds ahead (`platform.upload_lease_s`). A second append while the
lease is live is refused (ABORTED, a 409 at the gateway), as is one at the wrong offset.
The holder renews the lease with another conditional write before every durable write
(part or tail) and while bytes trickle in. A holder that receives nothing for a whole
lease (stalled client, dead connection) may be taken over by a newer append, so a client
retrying through another replica does not wait on it; the old holder finds out at its
next write and stops without writing. A replica killed mid-append leaves its lease to
expire; the bytes it had made durable stay.

An append buffers what it receives: the valid tail, then the new bytes; each time P bytes
are buffered they become the next part. When the stream ends (done, failed or the
client gone), the rest becomes the new tail -- or, with the last byte, the final part,
and the multipart upload is completed into the raw object (a small upload is one put).
The phase then goes `uploading` -> `stored` (raw object written; a crash before this
write is noticed because the raw object exists) -> `complete` (handed off to
transcoding, by the caller) or -> `expired` (by the expiry sweeper).
"""
from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Callable, Iterator

from longtail_common.ports import (
    RAW_BUCKET,
    STAGING_BUCKET,
    ConflictError,
    NotFoundError,
    ObjectPart,
)

PART_BYTES = 8 * 1024 * 1024
UPLOADING, STORED, COMPLETE, EXPIRED = "uploading", "stored", "complete", "expired"


class Busy(Exception):
    """Another request holds the upload's lease."""


class LeaseLost(Exception):
    """The lease expired and another request took it: stop writing."""


def raw_key(video_id: str) -> str:
    return f"{video_id}/original"


def state_key(video_id: str) -> str:
    return f"{video_id}/upload.json"


def tail_key(video_id: str, start: int) -> str:
    return f"{video_id}/tail-{start:015d}"


@dataclasses.dataclass(frozen=True)
class UploadState:
    length: int | None  # None while deferred
    part_bytes: int
    multipart: str | None = None  # upload id of the multipart upload of the raw object
    phase: str = UPLOADING
    touched: float = 0.0  # last create or append (epoch s): expiry counts from here
    lease_holder: str | None = None
    lease_until: float = 0.0

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> "UploadState":
        return cls(**json.loads(data))


@dataclasses.dataclass(frozen=True)
class Progress:
    offset: int
    parts: list[ObjectPart]  # the contiguous parts from 1, in order
    tail_size: int  # bytes of the valid tail at `parts_total`

    @property
    def parts_total(self) -> int:
        return sum(p.size for p in self.parts)


class Lease:
    """Holds one upload. Every state write goes through here as a conditional write on the
    etag this holder last wrote, so losing the lease is found out before anything else
    is written."""

    def __init__(self, staging: "Staging", video_id: str, state: UploadState, etag: str, holder: str):
        self.staging, self.video_id = staging, video_id
        self.state, self.etag, self.holder = state, etag, holder
        self.found = state  # as it was before this lease was taken

    def save(self, **changes) -> None:
        """Writes `changes` and renews the lease; LeaseLost if it was taken."""
        now = self.staging.clock()
        self._write(dataclasses.replace(self.state, **changes, touched=now,
                                        lease_until=now + self.staging.lease_s))

    def renew_if_due(self) -> None:
        if self.staging.clock() > self.state.lease_until - self.staging.lease_s / 2:
            self.save()

    def release(self, **changes) -> None:
        self._write(dataclasses.replace(self.state, **changes, touched=self.staging.clock(),
                                        lease_holder=None, lease_until=0.0))

    def _write(self, state: UploadState) -> None:
        try:
            self.etag = self.staging.objects.put_bytes_if(STAGING_BUCKET, state_key(self.video_id), state.encode(),
                                                         if_match=self.etag)
        except ConflictError:
            raise LeaseLost(f"the upload of {self.video_id} was taken over after this request's lease expired") \
                from None
        self.state = state


class Staging:
    """The uploads' state, leases and offsets in the object store (see the module doc)."""

    def __init__(self, objects, lease_s: float, part_bytes: int = PART_BYTES,
                 clock: Callable[[], float] = time.time):
        if part_bytes < 1 or lease_s <= 0:
            raise ValueError(f"invalid part size {part_bytes} or lease {lease_s}s")
        self.objects, self.lease_s, self.part_bytes, self.clock = objects, lease_s, part_bytes, clock

    def load(self, video_id: str) -> UploadState | None:
        found = self.objects.get_versioned(STAGING_BUCKET, state_key(video_id))
        return UploadState.decode(found[0]) if found else None

    def create(self, video_id: str, length: int | None) -> None:
        """A new upload; an existing one is left as it is (creation is idempotent)."""
        state = UploadState(length=length, part_bytes=self.part_bytes, touched=self.clock())
        try:
            self.objects.put_bytes_if(STAGING_BUCKET, state_key(video_id), state.encode(), if_match=None)
        except ConflictError:
            pass

    def acquire(self, video_id: str) -> Lease:
        """The upload's lease: NotFoundError if there is no upload, Busy if it is held."""
        found = self.objects.get_versioned(STAGING_BUCKET, state_key(video_id))
        if found is None:
            raise NotFoundError(f"no upload for video {video_id}")
        state, etag = UploadState.decode(found[0]), found[1]
        now = self.clock()
        if state.lease_holder and state.lease_until > now:
            raise Busy(f"another request is writing the upload of {video_id}")
        lease = Lease(self, video_id, state, etag, holder=uuid.uuid4().hex)
        try:
            lease.save(lease_holder=lease.holder)
        except LeaseLost:
            raise Busy(f"another request is writing the upload of {video_id}") from None
        return lease

    def progress(self, video_id: str, state: UploadState) -> Progress:
        """Where the upload stands, from what the store holds."""
        if state.phase != UPLOADING or (
                state.length is not None and self.raw_size(video_id) == state.length):
            return Progress(offset=state.length or 0, parts=[], tail_size=0)
        parts = self._contiguous_parts(video_id, state)
        start = sum(p.size for p in parts)
        tail = self.objects.stat(STAGING_BUCKET, tail_key(video_id, start))
        tail_size = tail.size if tail else 0
        return Progress(offset=start + tail_size, parts=parts, tail_size=tail_size)

    def raw_size(self, video_id: str) -> int | None:
        info = self.objects.stat(RAW_BUCKET, raw_key(video_id))
        return info.size if info else None

    def _contiguous_parts(self, video_id: str, state: UploadState) -> list[ObjectPart]:
        """Parts 1..n, each a full part except a last one that ends the upload; anything
        after a gap or a short part is ignored (it will be overwritten)."""
        if state.multipart is None:
            return []
        parts, total = [], 0
        for part in sorted(self.objects.list_parts(RAW_BUCKET, raw_key(video_id), state.multipart),
                           key=lambda p: p.number):
            full = part.size == state.part_bytes
            final = state.length is not None and total + part.size == state.length
            if part.number != len(parts) + 1 or not (full or final):
                break
            parts.append(part)
            total += part.size
            if final and not full:
                break
        return parts

    def read_tail(self, video_id: str, progress: Progress) -> bytes:
        if not progress.tail_size:
            return b""
        return self.objects.get_bytes(STAGING_BUCKET, tail_key(video_id, progress.parts_total))

    def list_video_ids(self) -> Iterator[str]:
        for key in self.objects.list_keys(STAGING_BUCKET):
            video_id, _, name = key.partition("/")
            if name == "upload.json":
                yield video_id

    def discard(self, video_id: str, state: UploadState) -> None:
        """Removes everything staged for the upload, its state last (idempotent)."""
        if state.multipart is not None:
            self.objects.abort_multipart(RAW_BUCKET, raw_key(video_id), state.multipart)
        for key in list(self.objects.list_keys(STAGING_BUCKET, f"{video_id}/")):
            if key != state_key(video_id):
                self.objects.delete(STAGING_BUCKET, key)
        self.objects.delete(STAGING_BUCKET, state_key(video_id))


class Appender:
    """The bytes of one append, under its lease: full parts as they fill, the rest kept as
    the tail, or, with the last byte, the raw object made (see the module doc)."""

    def __init__(self, staging: Staging, lease: Lease, progress: Progress):
        self.staging, self.lease, self.video_id = staging, lease, lease.video_id
        self.parts = list(progress.parts)
        self.parts_total = progress.parts_total
        self.stale_tail = tail_key(self.video_id, self.parts_total) if progress.tail_size else None
        self.buffer = bytearray(staging.read_tail(self.video_id, progress))
        self.dirty = False  # buffer holds bytes not yet written anywhere

    @property
    def offset(self) -> int:
        return self.parts_total + len(self.buffer)

    def add(self, data: bytes) -> None:
        self.buffer += data
        self.dirty = self.dirty or bool(data)
        size = self.lease.state.part_bytes
        while len(self.buffer) >= size:
            self._upload_part(bytes(self.buffer[:size]))
            del self.buffer[:size]
        self.lease.renew_if_due()

    def _upload_part(self, data: bytes) -> None:
        objects, key = self.staging.objects, raw_key(self.video_id)
        if self.lease.state.multipart is None:
            self.lease.save(multipart=objects.create_multipart(RAW_BUCKET, key))
        else:
            self.lease.save()  # still ours: renewed right before writing
        number = len(self.parts) + 1
        self.parts.append(objects.upload_part(RAW_BUCKET, key, self.lease.state.multipart, number, data))
        self.parts_total += len(data)
        self._drop_stale_tail()

    def _drop_stale_tail(self) -> None:
        if self.stale_tail is not None:
            self.staging.objects.delete(STAGING_BUCKET, self.stale_tail)
            self.stale_tail = None

    def keep(self) -> None:
        """Makes what arrived durable as the tail (after a failed or partial append too)."""
        if not self.dirty:
            return
        self.lease.save()
        if self.buffer:
            self.staging.objects.put_bytes(STAGING_BUCKET, tail_key(self.video_id, self.parts_total),
                                           bytes(self.buffer))
        self.dirty = False

    def store(self) -> None:
        """Every byte is here: the parts (and the rest as the final part) become the raw
        object, once; the phase moves to `stored`."""
        objects, key = self.staging.objects, raw_key(self.video_id)
        self.lease.save()
        if self.staging.raw_size(self.video_id) == self.lease.state.length:
            pass  # made by an append that died before it could record so
        elif self.lease.state.multipart is None:
            objects.put_bytes(RAW_BUCKET, key, bytes(self.buffer))
        else:
            if self.buffer:
                self.parts.append(objects.upload_part(RAW_BUCKET, key, self.lease.state.multipart,
                                                      len(self.parts) + 1, bytes(self.buffer)))
            objects.complete_multipart(RAW_BUCKET, key, self.lease.state.multipart, self.parts)
        self.buffer.clear()
        self.dirty = False
        self.lease.save(phase=STORED)
        for tail in list(objects.list_keys(STAGING_BUCKET, f"{self.video_id}/tail-")):
            objects.delete(STAGING_BUCKET, tail)
