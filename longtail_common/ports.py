"""The ports every service talks to its infrastructure through.

Each port has an embedded backend (SQLite, filesystem, a local durable log) and a real
one (ScyllaDB, MinIO/S3, Kafka). Services only ever see these interfaces; which backend
is used is a configuration choice (see `longtail_common.config`). One contract test
suite per port (tests/contract/) runs against every backend.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

# ---------------------------------------------------------------------------------------
# Errors shared by every backend


class PortError(Exception):
    """Base class for errors a port reports to its caller."""


class NotFoundError(PortError):
    pass


class AlreadyExistsError(PortError):
    pass


class ConflictError(PortError):
    """A conditional write lost: the stored etag did not match the expected one."""


class InvalidKeyError(PortError, ValueError):
    """An id or object key that could escape its prefix or is otherwise malformed."""


class BackendUnavailableError(PortError):
    """The backing server cannot be reached (retry with backoff)."""


# Ids appear in object keys and topic keys: keep them to a safe alphabet so a key can
# never escape its prefix (no '/', no '..').
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# Regions are ISO 3166 alpha-2 country codes, upper case.
REGION_PATTERN = r"^[A-Z]{2}$"


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(ID_PATTERN, value) is not None


def is_valid_region(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(REGION_PATTERN, value) is not None


def validate_id(value: str, what: str = "id") -> str:
    if not is_valid_id(value):
        raise InvalidKeyError(
            f"invalid {what} {value!r}: use 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return value


_KEY_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.=-]+$")


def validate_object_key(key: str) -> str:
    """Object keys are '/'-separated segments of a safe alphabet; no '.' or '..' segments."""
    if not key or key.startswith("/") or key.endswith("/"):
        raise InvalidKeyError(f"invalid object key {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _KEY_SEGMENT_RE.fullmatch(segment):
            raise InvalidKeyError(f"invalid object key {key!r}")
    return key


# ---------------------------------------------------------------------------------------
# Metadata port: a key-value store of videos (serialized protobuf) plus a by-channel index


@dataclass
class VideoRecord:
    """A stored video. `payload` is a serialized longtail.metadata.v1.Video.

    The other fields are denormalised copies the store needs for indexing and
    conditional writes; the payload is the source of truth for everything else.
    """

    video_id: str
    channel_id: str
    status: int  # longtail.metadata.v1.VideoStatus value
    create_time_us: int  # microseconds since the epoch; orders the channel listing
    etag: str
    payload: bytes


@dataclass(frozen=True)
class CaptionRecord:
    """A video's caption track in one language. `payload` is a serialized
    longtail.metadata.v1.Caption; the file itself is in the media bucket."""

    video_id: str
    language: str  # BCP-47 tag: one caption per language and video
    payload: bytes


@dataclass(frozen=True)
class ChannelRecord:
    channel_id: str
    name: str
    owner_account_id: str  # "" for a channel made before accounts existed


@runtime_checkable
class MetadataStore(Protocol):
    def create_video(self, record: VideoRecord) -> None:
        """Insert; raises AlreadyExistsError if the id exists."""

    def get_video(self, video_id: str) -> VideoRecord | None: ...

    def get_videos(self, video_ids: list[str]) -> list[VideoRecord]:
        """Found records in request order; missing ids are skipped."""

    def replace_video(self, record: VideoRecord, expected_etag: str) -> None:
        """Compare-and-set on etag: raises NotFoundError or ConflictError."""

    def delete_video(self, video_id: str, expected_etag: str) -> None:
        """Deletes the video and its channel-listing entry if its etag is `expected_etag`:
        raises NotFoundError or ConflictError."""

    def list_channel_videos(
        self, channel_id: str, page_size: int, cursor: str | None, status: int | None
    ) -> tuple[list[VideoRecord], str | None]:
        """Newest first. `cursor` is opaque (from a previous call); returns next cursor or None."""

    def create_channel(self, record: ChannelRecord) -> None:
        """Insert; raises AlreadyExistsError if the id exists (whoever owns it), so of two
        racing creators exactly one owns the channel."""

    def get_channel(self, channel_id: str) -> ChannelRecord | None: ...

    def list_owned_channels(self, owner_account_id: str) -> list[ChannelRecord]:
        """The channels an account owns, by id."""

    def put_caption(self, record: CaptionRecord) -> None:
        """Insert or replace the video's caption in that language."""

    def list_captions(self, video_id: str) -> list[CaptionRecord]:
        """The video's captions, by language."""

    def delete_caption(self, video_id: str, language: str) -> None:
        """Removes one caption; raises NotFoundError if there is none in that language.
        (delete_video removes all of a video's captions.)"""

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------
# Account port: accounts, one-time password links and personal API tokens. Kept in the
# metadata backend (same SQLite file, same Scylla keyspace); secrets arrive here hashed.


@dataclass
class AccountRecord:
    account_id: str
    username: str  # unique; never changes
    email: str
    password_hash: str  # Argon2id PHC string; "" until a password is set
    admin: bool
    disabled: bool
    create_time_us: int
    update_time_us: int
    etag: str


@dataclass(frozen=True)
class TokenRecord:
    """A personal API token; `secret_hash` is the SHA-256 hex of its secret part."""

    token_id: str
    account_id: str
    secret_hash: str
    display_name: str
    create_time_us: int
    expire_time_us: int  # 0 = never


@dataclass(frozen=True)
class SessionRecord:
    """A browser session; `session_hash` is the SHA-256 hex of the secret in its cookie."""

    session_hash: str
    account_id: str
    create_time_us: int
    expire_time_us: int


@runtime_checkable
class AccountStore(Protocol):
    def create_account(self, record: AccountRecord) -> None:
        """Insert; raises AlreadyExistsError if the username (or id) is taken."""

    def get_account(self, account_id: str) -> AccountRecord | None: ...

    def get_account_by_username(self, username: str) -> AccountRecord | None: ...

    def list_accounts(self, page_size: int, cursor: str | None) -> tuple[list[AccountRecord], str | None]:
        """Every account once across the pages, in the store's order. `cursor` is opaque
        (from a previous call; ValueError if malformed); returns the next one or None."""

    def replace_account(self, record: AccountRecord, expected_etag: str) -> None:
        """Compare-and-set on etag (the username cannot change): NotFoundError or ConflictError."""

    def put_password_link(self, link_hash: str, account_id: str, expire_time_us: int) -> None: ...

    def consume_password_link(self, link_hash: str, now_us: int) -> str | None:
        """The link's account id, once: the link is deleted, so of concurrent callers at
        most one gets it. None for an unknown, used or expired (at `now_us`) link."""

    def create_token(self, record: TokenRecord) -> None:
        """Insert; raises AlreadyExistsError if the token id exists."""

    def get_token(self, token_id: str) -> TokenRecord | None: ...

    def list_tokens(self, account_id: str) -> list[TokenRecord]:
        """The account's tokens, expired ones included, newest first."""

    def delete_token(self, account_id: str, token_id: str) -> bool:
        """Revokes at once; False if the account has no such token."""

    def create_session(self, record: SessionRecord) -> None:
        """Insert (the hash is 256 random bits: no collision to handle); the store may drop
        it once expired."""

    def get_session(self, session_hash: str) -> SessionRecord | None: ...

    def delete_session(self, session_hash: str) -> None:
        """Ends it at once; nothing happens for an unknown one."""

    def link_identity(self, issuer: str, subject: str, account_id: str) -> str:
        """Links an external (OIDC) identity to an account unless it is linked already;
        returns the account it is linked to: the first link wins, whoever else tried."""

    def get_identity(self, issuer: str, subject: str) -> str | None:
        """The account an external identity is linked to, if any."""

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------
# Object port: buckets of immutable objects


@dataclass
class ObjectInfo:
    key: str
    size: int
    content_type: str = "application/octet-stream"
    etag: str = ""


@dataclass(frozen=True)
class ObjectPart:
    """One stored part of a multipart upload."""

    number: int
    size: int
    etag: str


# S3's limits on multipart uploads, which every backend's callers keep to.
MULTIPART_MIN_PART_BYTES = 5 * 1024 * 1024
MULTIPART_MAX_PARTS = 10000

# Bucket names used by the platform. Raw uploads are temporary; media holds variants.
RAW_BUCKET = "raw"
# Unfinished uploads' state and not-yet-a-part bytes (upload_svc's only storage).
STAGING_BUCKET = "staging"
MEDIA_BUCKET = "media"
EDGE_BUCKET_PREFIX = "edge-"  # one bucket per CDN region in the embedded setup


def is_private_media_key(key: str) -> bool:
    """The transcoder's own records in the media bucket (result markers, the ladder) are
    named "_*": never served to players, never pushed to edges."""
    return key.rsplit("/", 1)[-1].startswith("_")


# Folders of a video's media that stay at the origin: download files (served only under
# their own token, from the origin) and the thumbnails cut at a time (served by the gateway).
ORIGIN_ONLY_FOLDERS = ("downloads", "thumbs/at")


def is_origin_only_media_key(key: str) -> bool:
    """A media key (videos/<id>/...) never pushed to a CDN edge nor counted in its cost."""
    parts = key.split("/", 2)
    return len(parts) == 3 and parts[0] == "videos" and parts[2].startswith(
        tuple(f"{folder}/" for folder in ORIGIN_ONLY_FOLDERS))


@runtime_checkable
class ObjectStore(Protocol):
    def ensure_bucket(self, bucket: str) -> None: ...

    def put_file(self, bucket: str, key: str, path: str, content_type: str | None = None) -> None:
        """Upload a local file (streamed; multipart for large files). Atomic: readers see the
        whole object or nothing."""

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None: ...

    def get_bytes(self, bucket: str, key: str) -> bytes:
        """Whole object; raises NotFoundError. Only for small objects (playlists, json)."""

    def open_stream(self, bucket: str, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Streams bytes [start, end] inclusive (end None = to the end) in chunks; NotFoundError."""

    def download_file(self, bucket: str, key: str, path: str) -> None: ...

    def stat(self, bucket: str, key: str) -> ObjectInfo | None: ...

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]: ...

    def delete(self, bucket: str, key: str) -> None:
        """Idempotent."""

    def presigned_get_url(self, bucket: str, key: str, expires_s: int = 3600) -> str | None:
        """A URL a client can GET directly, or None when the backend has none (embedded)."""

    # -- conditional writes: a small object as a compare-and-set register -----------------

    def get_versioned(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """A small object's bytes and the etag `put_bytes_if` compares with; None if absent."""

    def put_bytes_if(self, bucket: str, key: str, data: bytes, if_match: str | None) -> str:
        """Writes only if the object's etag is `if_match`, or, when `if_match` is None, only if
        the object does not exist; raises ConflictError otherwise. Returns the new etag."""

    # -- multipart uploads: an object assembled from parts, visible only once completed ---

    def create_multipart(self, bucket: str, key: str, content_type: str | None = None) -> str:
        """Starts a multipart upload of `key`; returns its upload id."""

    def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int, data: bytes) -> ObjectPart:
        """Stores part `part_number` (1..MULTIPART_MAX_PARTS), replacing an earlier one of that
        number. Every part but the last must be >= MULTIPART_MIN_PART_BYTES (S3's rule; the
        embedded backend does not check it). An unknown upload raises NotFoundError where
        the store keeps a record of uploads."""

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[ObjectPart]:
        """The stored parts, by number. An unknown upload (never created, completed or
        aborted) raises NotFoundError, or lists no parts on stores that keep no record of
        uploads (S3Proxy's filesystem store): callers must not tell "ended" from this."""

    def complete_multipart(self, bucket: str, key: str, upload_id: str, parts: list[ObjectPart]) -> None:
        """Makes `key` the concatenation of `parts` (in order) atomically and ends the upload;
        NotFoundError if the upload is unknown."""

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        """Drops the upload and its parts. Idempotent."""

    def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[tuple[str, str]]:
        """(key, upload id) of the unfinished multipart uploads of keys under `prefix`, so a
        caller that never learnt an upload's id (a video's deleter) can still abort it."""


# ---------------------------------------------------------------------------------------
# Topic port: Kafka's semantics that matter here


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)
    timestamp_ms: int = 0

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


@runtime_checkable
class TopicProducer(Protocol):
    def publish(
        self, topic: str, value: bytes, key: bytes | None = None, headers: dict[str, bytes] | None = None,
        partition: int | None = None,
    ) -> None:
        """Durable when it returns (acks=all / fsync). Same key -> same partition, unless
        `partition` names one explicitly (to spread independent jobs over the members)."""

    def close(self) -> None: ...


@runtime_checkable
class TopicConsumer(Protocol):
    """A member of a consumer group. Partitions are shared among live members; a member
    that stops heartbeating (crashed) loses its partitions to the others, which resume
    from the last committed offset, so uncommitted messages are redelivered."""

    def poll(self, timeout_s: float = 1.0, max_records: int = 1) -> list[Message]: ...

    def commit(self, message: Message) -> None:
        """Marks `message` and everything before it in its partition as done for the group."""

    def close(self) -> None:
        """Leaves the group (partitions are reassigned at once)."""


@dataclass(frozen=True)
class PartitionLag:
    """How far a consumer group is behind on one partition."""

    topic: str
    partition: int
    committed: int  # the group's next offset to read (where it would start without a commit)
    end: int  # the offset the partition's next message will get

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(frozen=True)
class GroupLag:
    """A consumer group's progress as seen from outside it."""

    group_id: str
    members: int  # live members now (0: nothing consumes, whatever the backlog)
    partitions: tuple[PartitionLag, ...]

    def by_topic(self) -> dict[str, int]:
        """Messages behind per topic, summed over its partitions."""
        totals: dict[str, int] = {}
        for p in self.partitions:
            totals[p.topic] = totals.get(p.topic, 0) + p.lag
        return totals


@runtime_checkable
class TopicBus(Protocol):
    def ensure_topics(self, topics: dict[str, int]) -> None:
        """Create topics (name -> partitions) if missing."""

    def producer(self) -> TopicProducer: ...

    def consumer(self, topics: list[str], group_id: str, from_end: bool = False) -> TopicConsumer:
        """A member of `group_id`. Where the group has committed nothing it starts at the
        earliest message, or with `from_end` at the end (only what is published from now on:
        a process that wants every change from its start, never the history)."""

    def group_lag(self, group_id: str, topics: list[str]) -> GroupLag:
        """The group's committed offsets against the end offsets of every partition of
        `topics` (a missing topic has none), read without joining the group, so it works
        while no member runs. A partition the group never committed counts from its first
        message, as a new member would start there."""

    def list_groups(self, prefix: str) -> list[str]:
        """The consumer groups whose id starts with `prefix`: those with committed offsets
        or live members (a search replica's own group, found without knowing the replica)."""

    def close(self) -> None: ...


# Topic names.
TOPIC_TRANSCODE_REQUESTS = "transcode.requests"
TOPIC_TRANSCODE_RESULTS = "transcode.results"
TOPIC_VIDEO_PUBLISHED = "video.published"
TOPIC_VIEWS = "views"
TOPIC_EDGE_FILLS = "edge.fills"
TOPIC_VIDEO_CHANGED = "video.changed"
TOPIC_VIDEO_DELETED = "video.deleted"
TOPIC_DEAD_LETTER = "deadletter"
# A caption track became available (events.v1.CaptionsReady); read by webhook_svc.
TOPIC_CAPTIONS_READY = "captions.ready"

# The platform's consumer groups and the topics each reads: what the lag exporter watches
# (it must know a group while no member runs, so this is not learned from the members).
CONSUMER_GROUPS: dict[str, tuple[str, ...]] = {
    "transcoder": (TOPIC_TRANSCODE_REQUESTS,),
    "placement": (TOPIC_TRANSCODE_RESULTS,),
    "placement-views": (TOPIC_VIEWS,),
    "placement-fills": (TOPIC_EDGE_FILLS,),
    "webhook": (TOPIC_TRANSCODE_REQUESTS, TOPIC_VIDEO_PUBLISHED, TOPIC_VIDEO_CHANGED, TOPIC_VIDEO_DELETED,
                TOPIC_CAPTIONS_READY),
}
# Groups of one replica each, by the prefix of their ids: every search replica keeps its own
# index, so it reads every event in a group of its own ("search.<replica id>"; a shared group
# would give each replica part of the catalogue, and lose a dead replica's part with it).
REPLICA_GROUPS: dict[str, tuple[str, ...]] = {
    "search.": (TOPIC_VIDEO_PUBLISHED, TOPIC_VIDEO_CHANGED),
}

DEFAULT_TOPICS = {
    # Whole-video jobs and chunk jobs share it: more partitions than workers lets a fleet
    # of up to 12 share one video's chunks (a member only reads its own partitions).
    TOPIC_TRANSCODE_REQUESTS: 12,
    TOPIC_TRANSCODE_RESULTS: 4,
    TOPIC_VIDEO_PUBLISHED: 2,
    TOPIC_VIEWS: 4,
    # First requests of pairs placement said to fill through the edge (the on-day moment).
    TOPIC_EDGE_FILLS: 2,
    # Every write of a video record (metadata_svc): read by search, and whole by every
    # gateway process (its cache, a group of its own).
    TOPIC_VIDEO_CHANGED: 4,
    TOPIC_VIDEO_DELETED: 2,
    TOPIC_DEAD_LETTER: 1,
    TOPIC_CAPTIONS_READY: 2,
}


# ---------------------------------------------------------------------------------------
# View-count port: what placement learns from (daily views per video x region x day) and
# the catalogue of READY videos it decides for. Written by placement_svc only.


@dataclass(frozen=True)
class DailyViews:
    video_id: str
    region: str
    day: str  # YYYY-MM-DD (UTC)
    views: int  # "start" beacons
    bytes: int  # bytes watched, all beacon kinds


@dataclass(frozen=True)
class DailyQoE:
    """Player-measured quality of one day x region x where streams came from ("origin" or
    "cdn"), as counters that add up (`longtail_common.qoe` says what each metric's bins
    and totals are): placement's measured QoE penalty reads them."""

    day: str  # YYYY-MM-DD (UTC)
    region: str
    served_from: str  # "origin" | "cdn"
    metric: str  # "startup" | "rebuffer" | "ladder"
    bin: int
    n: int
    total: int


@dataclass(frozen=True)
class CatalogEntry:
    video_id: str
    channel_id: str
    language: str
    category: str
    publish_day: str  # YYYY-MM-DD (UTC) the video became READY
    size_bytes: int  # bytes of the stored renditions (what a CDN push carries)


# Videos are spread over VIEW_BUCKETS fixed buckets by a stable hash of their id: a
# Scylla partition holds one day x bucket of counts, and shard k of N (the daily job's
# `--shards N`) owns the buckets b with b % N == k. Changing it re-partitions stored data.
VIEW_BUCKETS = 256


def view_bucket(video_id: str) -> int:
    """The video's bucket: CRC-32 of its id (stable across processes and machines)."""
    return zlib.crc32(video_id.encode()) % VIEW_BUCKETS


def view_shard(video_id: str, shards: int) -> int:
    """Which of `shards` shards (at most VIEW_BUCKETS) the video belongs to."""
    return view_bucket(video_id) % shards


def check_shard(shard: int, shards: int) -> None:
    if not 1 <= shards <= VIEW_BUCKETS or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}: want 0 <= shard < shards <= {VIEW_BUCKETS}")


@dataclass
class ViewColumns:
    """A batch of daily counts as columns (numpy arrays of one length), for bulk readers."""

    video_id: np.ndarray  # str
    region: np.ndarray  # str
    day: np.ndarray  # datetime64[D]
    views: np.ndarray  # int64
    bytes: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.video_id)


@dataclass
class CatalogColumns:
    """Catalogue entries as columns, sorted by video id."""

    video_id: np.ndarray  # str
    channel_id: np.ndarray  # str ("" = none)
    language: np.ndarray  # str
    category: np.ndarray  # str
    publish_day: np.ndarray  # datetime64[D]
    size_bytes: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.video_id)


def view_columns_of(rows: list[tuple]) -> ViewColumns:
    """ViewColumns from (video_id, region, day "YYYY-MM-DD", views, bytes) tuples."""
    import numpy as np

    vid, reg, day, views, nbytes = (list(c) for c in zip(*rows)) if rows else ([], [], [], [], [])
    return ViewColumns(video_id=np.array(vid, dtype=str), region=np.array(reg, dtype=str),
                       day=np.array(day, dtype="datetime64[D]"), views=np.array(views, dtype=np.int64),
                       bytes=np.array(nbytes, dtype=np.int64))


def catalog_columns_of(rows: list[tuple]) -> CatalogColumns:
    """CatalogColumns, sorted by id, from (video_id, channel_id, language, category,
    publish_day, size_bytes) tuples."""
    import numpy as np

    rows = sorted(rows)
    cols = (list(c) for c in zip(*rows)) if rows else ([], [], [], [], [], [])
    vid, chan, lang, cat, pub, size = cols
    return CatalogColumns(video_id=np.array(vid, dtype=str), channel_id=np.array(chan, dtype=str),
                          language=np.array(lang, dtype=str), category=np.array(cat, dtype=str),
                          publish_day=np.array(pub, dtype="datetime64[D]"), size_bytes=np.array(size, dtype=np.int64))


@runtime_checkable
class ViewCountStore(Protocol):
    def apply_views(self, source: str, offset: int, rows: list[DailyViews], qoe: list[DailyQoE] = ()) -> bool:
        """Adds `rows` to the daily counts (and `qoe` to the QoE counters), once per
        (source, offset): a source is e.g. "views/2" (topic/partition) and offsets only
        grow, so a redelivered message (offset <= the last applied one) is skipped.
        Returns False when skipped."""

    def qoe_counts(self, first_day: str, last_day: str) -> list[DailyQoE]:
        """The QoE counters of days in [first_day, last_day], summed over sources, sorted."""

    def daily_views(self, first_day: str | None = None, last_day: str | None = None) -> list[DailyViews]:
        """Counts of days in [first_day, last_day] (inclusive; None = open)."""

    def total_views(self, video_ids: list[str]) -> dict[str, int]:
        """Views of each video over every region and day (0 for a video without any)."""

    def put_video(self, entry: CatalogEntry) -> None:
        """Insert or replace a catalogue entry."""

    def list_videos(self) -> list[CatalogEntry]: ...

    def delete_video(self, video_id: str) -> None:
        """Forgets a deleted video: its daily counts and its catalogue entry. Idempotent."""

    def view_columns(self, first_day: str, last_day: str, shard: int = 0, shards: int = 1,
                     batch_rows: int = 1_000_000) -> Iterator[ViewColumns]:
        """The counts of days in [first_day, last_day] of the videos of `shard` (see
        `view_shard`), in batches of at most `batch_rows`: the bulk read of the daily job,
        without one Python object per row. A (video, region, day) may come in several rows
        (e.g. one per source); the reader sums them."""

    def catalogue_columns(self, shard: int = 0, shards: int = 1) -> CatalogColumns:
        """The catalogue entries of the videos of `shard`, as columns sorted by id."""

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------
# Webhook port: creators' endpoints and the deliveries of events to them (webhook_svc).
# The delivery row is the truth; each backend keeps an index of pending deliveries by due
# time (`due_deliveries`) in step with it.

DELIVERY_PENDING = "pending"
DELIVERY_SUCCEEDED = "succeeded"
DELIVERY_FAILED = "failed"


@dataclass(frozen=True)
class WebhookEndpointRecord:
    webhook_id: str
    account_id: str
    url: str
    secret_ciphertext: bytes  # the signing secret, encrypted (webhook_svc/secrets.py)
    event_types: tuple[str, ...]  # empty = every event type
    description: str
    create_time_us: int


@dataclass(frozen=True)
class DeliveryRecord:
    delivery_id: str  # derived from (webhook id, event id): one delivery per event per endpoint
    webhook_id: str
    account_id: str
    event_id: str
    event_type: str
    payload: str  # the JSON body
    create_time_us: int
    state: str  # DELIVERY_PENDING | DELIVERY_SUCCEEDED | DELIVERY_FAILED
    next_attempt_us: int  # when a pending delivery is due
    first_attempt_us: int  # 0 before the first attempt; retries stop retry_for_s after it
    attempt_count: int
    attempts_json: str  # the last attempts: [{"t": us, "status": int, "error": str, "ms": int}, ...]
    version: int  # bumped by every update: the compare-and-set token


@runtime_checkable
class WebhookStore(Protocol):
    def create_endpoint(self, record: WebhookEndpointRecord) -> None:
        """Insert; AlreadyExistsError if the id exists."""

    def get_endpoint(self, webhook_id: str) -> WebhookEndpointRecord | None: ...

    def list_endpoints(self, account_id: str) -> list[WebhookEndpointRecord]:
        """The account's endpoints, newest first."""

    def delete_endpoint(self, webhook_id: str) -> bool:
        """False if there was none. Its deliveries stay (the deliverer fails pending ones)."""

    def add_delivery(self, record: DeliveryRecord) -> bool:
        """Insert unless a delivery of that id exists (a redelivered topic message): False then."""

    def get_delivery(self, delivery_id: str) -> DeliveryRecord | None: ...

    def list_deliveries(self, webhook_id: str, page_size: int, cursor: str | None
                        ) -> tuple[list[DeliveryRecord], str | None]:
        """An endpoint's deliveries, newest first; `cursor` is opaque (ValueError if malformed)."""

    def update_delivery(self, record: DeliveryRecord, expected_version: int) -> bool:
        """Replaces the delivery if its stored version is `expected_version` (record.version
        must be expected_version + 1); False if another writer got there first. Keeps the
        due index in step: pending deliveries are found by `due_deliveries` from
        `next_attempt_us` on."""

    def due_deliveries(self, now_us: int, limit: int) -> list[DeliveryRecord]:
        """Pending deliveries with next_attempt_us <= now_us, earliest first (at most `limit`)."""

    def close(self) -> None: ...
