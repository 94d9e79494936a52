"""Real metadata backend: ScyllaDB (or Apache Cassandra) through scylla-driver.

Tables (keyspace from config, created by `migrate`):

* `videos`: one partition per video (`video_id`), the serialized payload plus the
  denormalised fields the store needs (channel, status, create time, etag).
* `videos_by_channel`: the channel listing, partition `channel_id`, clustered by
  `(create_time_us DESC, video_id DESC)` so a page is one slice read, newest first.
  It carries `status`, which the listing filters on client-side while paging (no
  secondary index, no ALLOW FILTERING).
* `channels`: channel names and owners; `channels_by_owner` lists an account's channels.
* the account tables (`accounts`, `accounts_by_id`, `password_links`, `api_tokens`,
  `api_tokens_by_account`, `sessions`, `external_identities`), used by `scylla_accounts`:
  one keyspace, one versioned schema.
* the webhook tables (`webhook_endpoints`, `webhook_endpoints_by_account`,
  `webhook_deliveries`, `webhook_deliveries_by_webhook`, `webhook_due`), used by
  `scylla_webhooks`.
* `captions`: a video's caption tracks, partition `video_id`, clustered by language.
* placement's view counts, QoE counters and catalogue (`view_counts`, `view_sources`,
  `view_days`, `qoe_counts`, `placement_catalog`), used by `scylla_viewcounts`.
* `schema_migrations`: which versions of the schema were applied.

Writes: `create_video` is `INSERT ... IF NOT EXISTS`, `replace_video` is
`UPDATE ... IF etag = ?` and `delete_video` is `DELETE ... IF etag = ?` (lightweight
transactions, SERIAL/LOCAL_SERIAL). The index row
is then written as a copy of the video's committed state *with the video's own write
timestamp* (`USING TIMESTAMP`): Paxos timestamps grow with every accepted write of a
partition, so when two replacements race, the index row of the later one wins whatever
order the index writes arrive in.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time

from longtail_common.config import ScyllaConfig
from longtail_common.ports import (
    AlreadyExistsError,
    BackendUnavailableError,
    CaptionRecord,
    ChannelRecord,
    ConflictError,
    NotFoundError,
    PortError,
    VideoRecord,
    validate_id,
)

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 10.0
# A filtered listing reads at most this many index rows per call; if the page is not full
# by then it is returned short, with a cursor to go on from.
MAX_SCAN_ROWS = 5000

# Versioned schema. Every statement is idempotent (IF NOT EXISTS; an ALTER ... ADD of a
# column that exists is skipped), so re-running a version is harmless; `schema_migrations`
# records what ran. Append, never edit.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "videos, videos_by_channel, channels", [
        """CREATE TABLE IF NOT EXISTS {ks}.videos (
            video_id text PRIMARY KEY,
            channel_id text,
            status int,
            create_time_us bigint,
            etag text,
            payload blob)""",
        """CREATE TABLE IF NOT EXISTS {ks}.videos_by_channel (
            channel_id text,
            create_time_us bigint,
            video_id text,
            status int,
            PRIMARY KEY ((channel_id), create_time_us, video_id))
            WITH CLUSTERING ORDER BY (create_time_us DESC, video_id DESC)""",
        """CREATE TABLE IF NOT EXISTS {ks}.channels (
            channel_id text PRIMARY KEY,
            name text)""",
    ]),
    (2, "channel owners; accounts, password links, API tokens", [
        "ALTER TABLE {ks}.channels ADD owner_account_id text",
        """CREATE TABLE IF NOT EXISTS {ks}.channels_by_owner (
            owner_account_id text,
            channel_id text,
            name text,
            PRIMARY KEY ((owner_account_id), channel_id))""",
        # Keyed by username: INSERT ... IF NOT EXISTS makes usernames unique in one write.
        """CREATE TABLE IF NOT EXISTS {ks}.accounts (
            username text PRIMARY KEY,
            account_id text,
            email text,
            password_hash text,
            admin boolean,
            disabled boolean,
            create_time_us bigint,
            update_time_us bigint,
            etag text)""",
        """CREATE TABLE IF NOT EXISTS {ks}.accounts_by_id (
            account_id text PRIMARY KEY,
            username text)""",
        """CREATE TABLE IF NOT EXISTS {ks}.password_links (
            link_hash text PRIMARY KEY,
            account_id text,
            expire_time_us bigint)""",
        """CREATE TABLE IF NOT EXISTS {ks}.api_tokens (
            token_id text PRIMARY KEY,
            account_id text,
            secret_hash text,
            display_name text,
            create_time_us bigint,
            expire_time_us bigint)""",
        """CREATE TABLE IF NOT EXISTS {ks}.api_tokens_by_account (
            account_id text,
            token_id text,
            secret_hash text,
            display_name text,
            create_time_us bigint,
            expire_time_us bigint,
            PRIMARY KEY ((account_id), token_id))""",
    ]),
    (3, "browser sessions; external (OIDC) identities", [
        """CREATE TABLE IF NOT EXISTS {ks}.sessions (
            session_hash text PRIMARY KEY,
            account_id text,
            create_time_us bigint,
            expire_time_us bigint)""",
        """CREATE TABLE IF NOT EXISTS {ks}.external_identities (
            issuer text,
            subject text,
            account_id text,
            PRIMARY KEY ((issuer, subject)))""",
    ]),
    (4, "webhook endpoints and deliveries (scylla_webhooks)", [
        """CREATE TABLE IF NOT EXISTS {ks}.webhook_endpoints (
            webhook_id text PRIMARY KEY,
            account_id text,
            url text,
            secret_ciphertext blob,
            event_types text,
            description text,
            create_time_us bigint)""",
        """CREATE TABLE IF NOT EXISTS {ks}.webhook_endpoints_by_account (
            account_id text,
            create_time_us bigint,
            webhook_id text,
            PRIMARY KEY ((account_id), create_time_us, webhook_id))
            WITH CLUSTERING ORDER BY (create_time_us DESC, webhook_id DESC)""",
        """CREATE TABLE IF NOT EXISTS {ks}.webhook_deliveries (
            delivery_id text PRIMARY KEY,
            webhook_id text,
            account_id text,
            event_id text,
            event_type text,
            payload text,
            create_time_us bigint,
            state text,
            next_attempt_us bigint,
            first_attempt_us bigint,
            attempt_count int,
            attempts_json text,
            version int)""",
        """CREATE TABLE IF NOT EXISTS {ks}.webhook_deliveries_by_webhook (
            webhook_id text,
            create_time_us bigint,
            delivery_id text,
            PRIMARY KEY ((webhook_id), create_time_us, delivery_id))
            WITH CLUSTERING ORDER BY (create_time_us DESC, delivery_id DESC)""",
        """CREATE TABLE IF NOT EXISTS {ks}.webhook_due (
            shard int,
            next_attempt_us bigint,
            delivery_id text,
            PRIMARY KEY ((shard), next_attempt_us, delivery_id))""",
    ]),
    (5, "captions", [
        """CREATE TABLE IF NOT EXISTS {ks}.captions (
            video_id text,
            language text,
            payload blob,
            PRIMARY KEY ((video_id), language))""",
    ]),
    # 4 and 5 are main's (webhooks, captions), taken while these were on a branch.
    (6, "placement view counts and catalogue", [
        # One partition per day x video bucket; a row per (video, region, source) fenced by
        # the offset that last changed it (see scylla_viewcounts).
        """CREATE TABLE IF NOT EXISTS {ks}.view_counts (
            day text,
            bucket int,
            video_id text,
            region text,
            source text,
            views bigint,
            bytes bigint,
            last_offset bigint,
            PRIMARY KEY ((day, bucket), video_id, region, source))""",
        """CREATE TABLE IF NOT EXISTS {ks}.view_sources (
            source text PRIMARY KEY,
            last_offset bigint)""",
        """CREATE TABLE IF NOT EXISTS {ks}.view_days (
            day text PRIMARY KEY)""",
        """CREATE TABLE IF NOT EXISTS {ks}.placement_catalog (
            bucket int,
            video_id text,
            channel_id text,
            language text,
            category text,
            publish_day text,
            size_bytes bigint,
            PRIMARY KEY ((bucket), video_id))""",
    ]),
    (7, "player-measured QoE counters", [
        # Per day, a row per (region, served_from, metric, bin, source), fenced like view_counts.
        """CREATE TABLE IF NOT EXISTS {ks}.qoe_counts (
            day text,
            region text,
            served_from text,
            metric text,
            bin int,
            source text,
            n bigint,
            total bigint,
            last_offset bigint,
            PRIMARY KEY ((day), region, served_from, metric, bin, source))""",
    ]),
]

# Versions apply in list order, which must be ascending with no version twice (two branches
# adding "the next version" must not collide; a gap is a version held by another branch).
assert all(a[0] < b[0] for a, b in zip(MIGRATIONS, MIGRATIONS[1:])), "MIGRATIONS: ascending, each version once"

_KEYSPACE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


def keyspace_name(cfg: ScyllaConfig) -> str:
    if not _KEYSPACE_RE.fullmatch(cfg.keyspace or ""):
        raise ValueError(f"invalid keyspace name {cfg.keyspace!r}")
    return cfg.keyspace


def unavailable_errors() -> tuple[type[BaseException], ...]:
    from cassandra import CoordinationFailure, OperationTimedOut, RequestExecutionException
    from cassandra.cluster import NoHostAvailable

    return (NoHostAvailable, OperationTimedOut, RequestExecutionException, CoordinationFailure, OSError)


def wrap_error(what: str, cfg: ScyllaConfig, exc: BaseException) -> PortError:
    from cassandra import WriteTimeout
    from cassandra.policies import WriteType

    where = f"{','.join(cfg.contact_points)}:{cfg.port}"
    if isinstance(exc, WriteTimeout) and getattr(exc, "write_type", None) == WriteType.CAS:
        return BackendUnavailableError(f"Scylla at {where}: {what}: outcome unknown (LWT timed out): {exc}")
    return BackendUnavailableError(f"Scylla at {where}: {what} failed: {exc}")


def connect(cfg: ScyllaConfig):
    """A driver `Cluster` for `cfg` (not yet connected): token-aware, DC-aware, protocol v4."""
    from cassandra import ConsistencyLevel
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    name = (cfg.consistency or "LOCAL_QUORUM").upper()
    if name not in ConsistencyLevel.name_to_value:
        raise ValueError(f"unknown consistency {cfg.consistency!r}")
    consistency = ConsistencyLevel.name_to_value[name]
    serial = ConsistencyLevel.LOCAL_SERIAL if name.startswith("LOCAL_") else ConsistencyLevel.SERIAL
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=cfg.local_dc or None)),
        consistency_level=consistency,
        serial_consistency_level=serial,
        request_timeout=REQUEST_TIMEOUT_S,
    )
    auth = PlainTextAuthProvider(cfg.username, cfg.password) if cfg.username else None
    return Cluster(
        list(cfg.contact_points), port=cfg.port, protocol_version=4, auth_provider=auth,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile}, connect_timeout=CONNECT_TIMEOUT_S,
        control_connection_timeout=CONNECT_TIMEOUT_S,
    )


def migrate(cfg: ScyllaConfig, session=None) -> list[int]:
    """Bring the keyspace's schema up to date. Idempotent. Returns the versions applied now."""
    from cassandra.query import SimpleStatement

    ks = keyspace_name(cfg)
    # The replication map goes into CQL verbatim: accept only a map literal with a class.
    if not re.fullmatch(r"\{\s*'class'\s*:\s*'[A-Za-z.]+'\s*(,\s*'[A-Za-z0-9_]+'\s*:\s*'?\d+'?\s*)*\}",
                        cfg.replication.strip()):
        raise ValueError(f"scylla.replication must be a CQL map such as "
                         f"\"{{'class': 'NetworkTopologyStrategy', 'dc1': 3}}\", not {cfg.replication!r}")
    cluster = None
    if session is None:
        cluster = connect(cfg)
        try:
            session = cluster.connect()
        except unavailable_errors() as exc:
            cluster.shutdown()
            raise wrap_error("connecting", cfg, exc) from exc
    try:
        session.execute(f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {cfg.replication}")
        session.execute(f"""CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (
            version int PRIMARY KEY, description text, applied_at timestamp)""")
        done = {row.version for row in session.execute(f"SELECT version FROM {ks}.schema_migrations")}
        applied = []
        for version, description, statements in MIGRATIONS:
            if version in done:
                continue
            for stmt in statements:
                _apply_statement(session, SimpleStatement(stmt.format(ks=ks)))
            session.execute(
                f"INSERT INTO {ks}.schema_migrations (version, description, applied_at) "
                "VALUES (%s, %s, toTimestamp(now())) IF NOT EXISTS", (version, description))
            applied.append(version)
            log.info("applied schema version %d (%s) to keyspace %s", version, description, ks)
        if not session.wait_for_schema_agreement(wait_time=30):
            log.warning("schema versions did not agree within 30s")
        return applied
    except unavailable_errors() as exc:
        raise wrap_error("migrating the schema", cfg, exc) from exc
    finally:
        if cluster is not None:
            cluster.shutdown()


def _apply_statement(session, statement) -> None:
    """Runs one migration statement; an ALTER ... ADD whose column exists (a version that
    was half applied when its migrator died) is skipped, as IF NOT EXISTS would."""
    from cassandra import InvalidRequest

    try:
        session.execute(statement)
    except InvalidRequest as exc:
        if not (statement.query_string.lstrip().upper().startswith("ALTER") and "exist" in str(exc).lower()):
            raise


def open_session(cfg: ScyllaConfig, migrate_schema: bool = True):
    """(cluster, session) on the keyspace's servers, the schema migrated when asked."""
    cluster = connect(cfg)
    try:
        session = cluster.connect()
    except unavailable_errors() as exc:
        cluster.shutdown()
        raise wrap_error("connecting", cfg, exc) from exc
    try:
        if migrate_schema:
            migrate(cfg, session)
    except BaseException:
        cluster.shutdown()
        raise
    return cluster, session


class ScyllaStore:
    """What every adapter of the keyspace does alike: open a session (the schema migrated
    when asked), prepare its statements (a subclass's `_prepare`), run one with the driver's
    errors told as PortErrors, and close once. A failed prepare closes the session again."""

    def __init__(self, cfg: ScyllaConfig, migrate_schema: bool = True):
        self.cfg = cfg
        self._ks = keyspace_name(cfg)
        self._closed = threading.Event()
        self._cluster, self._session = open_session(cfg, migrate_schema)
        try:
            self._prepare()
        except unavailable_errors() as exc:
            self._cluster.shutdown()
            raise wrap_error("preparing statements", cfg, exc) from exc
        except BaseException:
            self._cluster.shutdown()
            raise

    def _prepare(self) -> None:
        """Prepares the store's statements (on self._session, in keyspace self._ks)."""

    def _execute(self, what: str, stmt, args=()):
        try:
            return self._session.execute(stmt, args)
        except unavailable_errors() as exc:
            raise wrap_error(what, self.cfg, exc) from exc

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._cluster.shutdown()


def _encode_cursor(create_time_us: int, video_id: str) -> str:
    raw = json.dumps([create_time_us, video_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        create_time_us, video_id = json.loads(raw)
        return int(create_time_us), str(video_id)
    except Exception as exc:  # noqa: BLE001 - any malformed token is the caller's error
        raise ValueError(f"invalid page token {cursor!r}") from exc


class ScyllaMetadataStore(ScyllaStore):
    def _prepare(self) -> None:
        from cassandra import ConsistencyLevel

        ks, p = self._ks, self._session.prepare
        cols = "video_id, channel_id, status, create_time_us, etag, payload"
        self._insert_video = p(f"INSERT INTO {ks}.videos ({cols}) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS")
        self._select_video = p(f"SELECT {cols} FROM {ks}.videos WHERE video_id = ?")
        self._cas_video = p(f"UPDATE {ks}.videos SET channel_id = ?, status = ?, etag = ?, payload = ? "
                            "WHERE video_id = ? IF etag = ?")
        self._cas_delete_video = p(f"DELETE FROM {ks}.videos WHERE video_id = ? IF etag = ?")
        # Linearizable read of the committed state and its write timestamp (see module doc).
        self._select_state = p(f"SELECT channel_id, create_time_us, status, WRITETIME(status) AS wt "
                               f"FROM {ks}.videos WHERE video_id = ?")
        self._select_state.consistency_level = (
            ConsistencyLevel.LOCAL_SERIAL if (self.cfg.consistency or "").upper().startswith("LOCAL_")
            else ConsistencyLevel.SERIAL)
        self._select_index_key = p(f"SELECT channel_id, create_time_us FROM {ks}.videos WHERE video_id = ?")
        self._upsert_index = p(f"INSERT INTO {ks}.videos_by_channel (channel_id, create_time_us, video_id, status) "
                               "VALUES (?, ?, ?, ?) USING TIMESTAMP ?")
        self._delete_index = p(f"DELETE FROM {ks}.videos_by_channel USING TIMESTAMP ? "
                               "WHERE channel_id = ? AND create_time_us = ? AND video_id = ?")
        self._list_first = p(f"SELECT create_time_us, video_id, status FROM {ks}.videos_by_channel "
                             "WHERE channel_id = ? LIMIT ?")
        self._list_after = p(f"SELECT create_time_us, video_id, status FROM {ks}.videos_by_channel "
                             "WHERE channel_id = ? AND (create_time_us, video_id) < (?, ?) LIMIT ?")
        self._insert_channel = p(f"INSERT INTO {ks}.channels (channel_id, name, owner_account_id) "
                                 "VALUES (?, ?, ?) IF NOT EXISTS")
        self._get_channel = p(f"SELECT channel_id, name, owner_account_id FROM {ks}.channels WHERE channel_id = ?")
        self._index_channel = p(f"INSERT INTO {ks}.channels_by_owner (owner_account_id, channel_id, name) "
                                "VALUES (?, ?, ?)")
        self._list_owned = p(f"SELECT channel_id, name, owner_account_id FROM {ks}.channels_by_owner "
                             "WHERE owner_account_id = ?")
        self._put_caption = p(f"INSERT INTO {ks}.captions (video_id, language, payload) VALUES (?, ?, ?)")
        self._list_captions = p(f"SELECT video_id, language, payload FROM {ks}.captions WHERE video_id = ?")
        self._delete_caption = p(f"DELETE FROM {ks}.captions WHERE video_id = ? AND language = ? IF EXISTS")
        self._delete_captions = p(f"DELETE FROM {ks}.captions WHERE video_id = ?")

    @staticmethod
    def _record(row) -> VideoRecord:
        return VideoRecord(video_id=row.video_id, channel_id=row.channel_id, status=int(row.status or 0),
                           create_time_us=int(row.create_time_us or 0), etag=row.etag or "",
                           payload=bytes(row.payload or b""))

    def _sync_index(self, video_id: str, old_key: tuple[str, int] | None = None) -> None:
        """Copy the video's committed (channel, time, status) into the listing index."""
        row = self._execute(f"reading {video_id}", self._select_state, (video_id,)).one()
        if row is None or row.channel_id is None:
            return
        wt = int(row.wt)
        self._execute(f"indexing {video_id}", self._upsert_index,
                      (row.channel_id, row.create_time_us, video_id, row.status, wt))
        if old_key is not None and old_key != (row.channel_id, row.create_time_us):
            self._execute(f"re-indexing {video_id}", self._delete_index, (wt, old_key[0], old_key[1], video_id))

    # -- MetadataStore ------------------------------------------------------------------

    def create_video(self, record: VideoRecord) -> None:
        validate_id(record.video_id, "video id")
        result = self._execute(f"creating {record.video_id}", self._insert_video, (
            record.video_id, record.channel_id, int(record.status), int(record.create_time_us), record.etag,
            bytes(record.payload)))
        if not result.was_applied:
            # If an earlier create of this id died between its insert and its index write,
            # this (retried) call repairs the index before reporting the duplicate.
            try:
                self._sync_index(record.video_id)
            except PortError as exc:
                log.debug("index repair of %s failed: %s", record.video_id, exc)
            raise AlreadyExistsError(f"video {record.video_id} already exists")
        self._sync_index(record.video_id)

    def get_video(self, video_id: str) -> VideoRecord | None:
        row = self._execute(f"reading {video_id}", self._select_video, (video_id,)).one()
        return self._record(row) if row else None

    def get_videos(self, video_ids: list[str]) -> list[VideoRecord]:
        unique = list(dict.fromkeys(video_ids))
        try:
            futures = [(vid, self._session.execute_async(self._select_video, (vid,))) for vid in unique]
            found = {}
            for vid, fut in futures:
                row = fut.result().one()
                if row is not None:
                    found[vid] = self._record(row)
        except unavailable_errors() as exc:
            raise wrap_error(f"reading {len(unique)} videos", self.cfg, exc) from exc
        return [found[v] for v in video_ids if v in found]

    def replace_video(self, record: VideoRecord, expected_etag: str) -> None:
        validate_id(record.video_id, "video id")
        before = self._execute(f"reading {record.video_id}", self._select_index_key, (record.video_id,)).one()
        if before is None:
            raise NotFoundError(f"video {record.video_id} not found")
        result = self._execute(f"replacing {record.video_id}", self._cas_video, (
            record.channel_id, int(record.status), record.etag, bytes(record.payload), record.video_id,
            expected_etag))
        if not result.was_applied:
            current = result.one()
            stored_etag = getattr(current, "etag", None) if current is not None else None
            if stored_etag is None:
                raise NotFoundError(f"video {record.video_id} not found")
            raise ConflictError(
                f"video {record.video_id} changed concurrently (etag {stored_etag} != {expected_etag})")
        # create_time_us is immutable (it keys the listing); the channel may move.
        self._sync_index(record.video_id, old_key=(before.channel_id, before.create_time_us))

    def delete_video(self, video_id: str, expected_etag: str) -> None:
        validate_id(video_id, "video id")
        before = self._execute(f"reading {video_id}", self._select_state, (video_id,)).one()
        if before is None or before.channel_id is None:
            raise NotFoundError(f"video {video_id} not found")
        result = self._execute(f"deleting {video_id}", self._cas_delete_video, (video_id, expected_etag))
        if not result.was_applied:
            current = result.one()
            stored_etag = getattr(current, "etag", None) if current is not None else None
            if stored_etag is None:
                raise NotFoundError(f"video {video_id} not found")
            raise ConflictError(f"video {video_id} changed concurrently (etag {stored_etag} != {expected_etag})")
        # Later than the index row's own timestamp (the video's last write), so a late
        # index write of an earlier replace cannot bring the row back.
        stamp = max(int(before.wt) + 1, int(time.time() * 1_000_000))
        self._execute(f"un-indexing {video_id}", self._delete_index,
                      (stamp, before.channel_id, before.create_time_us, video_id))
        self._execute(f"deleting the captions of {video_id}", self._delete_captions, (video_id,))

    def list_channel_videos(
        self, channel_id: str, page_size: int, cursor: str | None, status: int | None
    ) -> tuple[list[VideoRecord], str | None]:
        page_size = max(1, min(page_size or 20, 1000))
        after = _decode_cursor(cursor) if cursor else None
        chunk = page_size + 1 if not status else max(2 * page_size + 1, 100)
        picked: list = []  # index rows of this page (+1 to know there is more)
        last_scanned = after
        scanned = 0
        exhausted = False
        while len(picked) <= page_size and scanned < MAX_SCAN_ROWS:
            if last_scanned is None:
                rows = list(self._execute(f"listing {channel_id}", self._list_first, (channel_id, chunk)))
            else:
                rows = list(self._execute(f"listing {channel_id}", self._list_after,
                                          (channel_id, last_scanned[0], last_scanned[1], chunk)))
            for row in rows:
                scanned += 1
                last_scanned = (row.create_time_us, row.video_id)
                if not status or row.status == status:
                    picked.append(row)
                    if len(picked) > page_size:
                        break
            if len(rows) < chunk:
                exhausted = True
                break
        more = len(picked) > page_size
        page_rows = picked[:page_size]
        records = self.get_videos([r.video_id for r in page_rows])
        if status:  # the index may lag a crashed writer: the record's own status decides
            records = [r for r in records if r.status == status]
        if more:
            next_cursor = _encode_cursor(page_rows[-1].create_time_us, page_rows[-1].video_id)
        elif not exhausted and last_scanned is not None and scanned >= MAX_SCAN_ROWS:
            next_cursor = _encode_cursor(*last_scanned)  # scan budget spent: go on from here next call
        else:
            next_cursor = None
        return records, next_cursor

    def create_channel(self, record: ChannelRecord) -> None:
        validate_id(record.channel_id, "channel id")
        result = self._execute(f"creating channel {record.channel_id}", self._insert_channel,
                               (record.channel_id, record.name, record.owner_account_id))
        # The owner's listing row follows the channel row; a retried create of a channel whose
        # creator died in between writes it then (rows never change, so rewriting is harmless).
        stored = record if result.was_applied else self.get_channel(record.channel_id)
        if stored is not None and stored.owner_account_id:
            self._execute(f"indexing channel {record.channel_id}", self._index_channel,
                          (stored.owner_account_id, stored.channel_id, stored.name))
        if not result.was_applied:
            raise AlreadyExistsError(f"channel {record.channel_id} already exists")

    @staticmethod
    def _channel(row) -> ChannelRecord:
        return ChannelRecord(row.channel_id, row.name or "", row.owner_account_id or "")

    def get_channel(self, channel_id: str) -> ChannelRecord | None:
        row = self._execute(f"reading channel {channel_id}", self._get_channel, (channel_id,)).one()
        return self._channel(row) if row else None

    def list_owned_channels(self, owner_account_id: str) -> list[ChannelRecord]:
        if not owner_account_id:
            return []
        rows = self._execute(f"listing channels of {owner_account_id}", self._list_owned, (owner_account_id,))
        return [self._channel(row) for row in rows]

    def put_caption(self, record: CaptionRecord) -> None:
        validate_id(record.video_id, "video id")
        self._execute(f"writing a caption of {record.video_id}", self._put_caption,
                      (record.video_id, record.language, bytes(record.payload)))

    def list_captions(self, video_id: str) -> list[CaptionRecord]:
        rows = self._execute(f"listing the captions of {video_id}", self._list_captions, (video_id,))
        return [CaptionRecord(r.video_id, r.language, bytes(r.payload or b"")) for r in rows]

    def delete_caption(self, video_id: str, language: str) -> None:
        result = self._execute(f"deleting a caption of {video_id}", self._delete_caption, (video_id, language))
        if not result.was_applied:
            raise NotFoundError(f"video {video_id} has no caption in {language}")
