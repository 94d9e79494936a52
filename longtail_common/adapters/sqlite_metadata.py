"""Embedded metadata backend: SQLite in WAL mode, shaped like the ScyllaDB tables.

`videos` is keyed by id; `videos_by_channel` is a separate index table (as in ScyllaDB,
where the listing must not scan), updated in the same transaction; `channels` carries each
channel's owner. Safe across threads (one connection per thread, `ThreadConnections`, which
the account store on the same file shares) and processes (SQLite file locking, busy timeout).
"""
from __future__ import annotations

import base64
import json
import pathlib
import sqlite3
import threading
from contextlib import contextmanager
from typing import Iterator

from longtail_common.ports import (
    AlreadyExistsError,
    CaptionRecord,
    ChannelRecord,
    ConflictError,
    NotFoundError,
    VideoRecord,
    validate_id,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    video_id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    create_time_us INTEGER NOT NULL,
    etag TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS videos_by_channel (
    channel_id TEXT NOT NULL,
    create_time_us INTEGER NOT NULL,
    video_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    PRIMARY KEY (channel_id, create_time_us, video_id)
);
CREATE TABLE IF NOT EXISTS captions (
    video_id TEXT NOT NULL,
    language TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (video_id, language)
);
CREATE TABLE IF NOT EXISTS channels (
    channel_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner_account_id TEXT NOT NULL DEFAULT ''
);
"""


class ThreadConnections:
    """One WAL-mode connection per thread to one SQLite file, and write transactions on it."""

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoint, never corrupt
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception): one writer at a time."""
        conn = self.get()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _add_channel_owner(connections: ThreadConnections) -> None:
    """Files made before accounts existed get the owner column (one process does it)."""
    with connections.write() as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(channels)")}
        if "owner_account_id" not in columns:
            conn.execute("ALTER TABLE channels ADD COLUMN owner_account_id TEXT NOT NULL DEFAULT ''")
        conn.execute("CREATE INDEX IF NOT EXISTS channels_by_owner ON channels (owner_account_id, channel_id)")


def _encode_cursor(create_time_us: int, video_id: str) -> str:
    raw = json.dumps([create_time_us, video_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        create_time_us, video_id = json.loads(raw)
        return int(create_time_us), str(video_id)
    except Exception as exc:  # noqa: BLE001 - any malformed token is the caller's error
        raise ValueError(f"invalid page token {cursor!r}") from exc


class SqliteMetadataStore:
    def __init__(self, path: str | pathlib.Path):
        self._connections = ThreadConnections(path)
        self._conn = self._connections.get
        self._conn().executescript(_SCHEMA)
        _add_channel_owner(self._connections)

    @staticmethod
    def _row(row) -> VideoRecord:
        return VideoRecord(
            video_id=row[0], channel_id=row[1], status=row[2], create_time_us=row[3], etag=row[4], payload=bytes(row[5])
        )

    def create_video(self, record: VideoRecord) -> None:
        validate_id(record.video_id, "video id")
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO videos VALUES (?,?,?,?,?,?)",
                (record.video_id, record.channel_id, record.status, record.create_time_us, record.etag, record.payload),
            )
            conn.execute(
                "INSERT INTO videos_by_channel VALUES (?,?,?,?)",
                (record.channel_id, record.create_time_us, record.video_id, record.status),
            )
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK")
            raise AlreadyExistsError(f"video {record.video_id} already exists") from exc
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def get_video(self, video_id: str) -> VideoRecord | None:
        row = self._conn().execute(
            "SELECT video_id, channel_id, status, create_time_us, etag, payload FROM videos WHERE video_id=?",
            (video_id,),
        ).fetchone()
        return self._row(row) if row else None

    def get_videos(self, video_ids: list[str]) -> list[VideoRecord]:
        found = {}
        for vid in set(video_ids):
            rec = self.get_video(vid)
            if rec is not None:
                found[vid] = rec
        return [found[v] for v in video_ids if v in found]

    def replace_video(self, record: VideoRecord, expected_etag: str) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT etag, channel_id, create_time_us FROM videos WHERE video_id=?", (record.video_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"video {record.video_id} not found")
            if row[0] != expected_etag:
                raise ConflictError(f"video {record.video_id} changed concurrently (etag {row[0]} != {expected_etag})")
            conn.execute(
                "UPDATE videos SET channel_id=?, status=?, etag=?, payload=? WHERE video_id=?",
                (record.channel_id, record.status, record.etag, record.payload, record.video_id),
            )
            conn.execute(
                "UPDATE videos_by_channel SET status=? WHERE channel_id=? AND create_time_us=? AND video_id=?",
                (record.status, row[1], row[2], record.video_id),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def delete_video(self, video_id: str, expected_etag: str) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT etag, channel_id, create_time_us FROM videos WHERE video_id=?", (video_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"video {video_id} not found")
            if row[0] != expected_etag:
                raise ConflictError(f"video {video_id} changed concurrently (etag {row[0]} != {expected_etag})")
            conn.execute("DELETE FROM videos WHERE video_id=?", (video_id,))
            conn.execute("DELETE FROM captions WHERE video_id=?", (video_id,))
            conn.execute("DELETE FROM videos_by_channel WHERE channel_id=? AND create_time_us=? AND video_id=?",
                         (row[1], row[2], video_id))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def list_channel_videos(
        self, channel_id: str, page_size: int, cursor: str | None, status: int | None
    ) -> tuple[list[VideoRecord], str | None]:
        page_size = max(1, min(page_size or 20, 1000))
        sql = "SELECT create_time_us, video_id FROM videos_by_channel WHERE channel_id=?"
        args: list = [channel_id]
        if status:
            sql += " AND status=?"
            args.append(status)
        if cursor:
            ts, vid = _decode_cursor(cursor)
            sql += " AND (create_time_us < ? OR (create_time_us = ? AND video_id < ?))"
            args += [ts, ts, vid]
        sql += " ORDER BY create_time_us DESC, video_id DESC LIMIT ?"
        args.append(page_size + 1)
        rows = self._conn().execute(sql, args).fetchall()
        more = len(rows) > page_size
        rows = rows[:page_size]
        records = self.get_videos([r[1] for r in rows])
        next_cursor = _encode_cursor(rows[-1][0], rows[-1][1]) if more and rows else None
        return records, next_cursor

    def create_channel(self, record: ChannelRecord) -> None:
        validate_id(record.channel_id, "channel id")
        try:
            self._conn().execute("INSERT INTO channels (channel_id, name, owner_account_id) VALUES (?,?,?)",
                                 (record.channel_id, record.name, record.owner_account_id))
        except sqlite3.IntegrityError as exc:
            raise AlreadyExistsError(f"channel {record.channel_id} already exists") from exc

    def get_channel(self, channel_id: str) -> ChannelRecord | None:
        row = self._conn().execute("SELECT channel_id, name, owner_account_id FROM channels WHERE channel_id=?",
                                   (channel_id,)).fetchone()
        return ChannelRecord(*row) if row else None

    def list_owned_channels(self, owner_account_id: str) -> list[ChannelRecord]:
        rows = self._conn().execute(
            "SELECT channel_id, name, owner_account_id FROM channels WHERE owner_account_id=? ORDER BY channel_id",
            (owner_account_id,)).fetchall()
        return [ChannelRecord(*row) for row in rows] if owner_account_id else []

    def put_caption(self, record: CaptionRecord) -> None:
        validate_id(record.video_id, "video id")
        self._conn().execute("INSERT OR REPLACE INTO captions (video_id, language, payload) VALUES (?,?,?)",
                             (record.video_id, record.language, record.payload))

    def list_captions(self, video_id: str) -> list[CaptionRecord]:
        rows = self._conn().execute("SELECT video_id, language, payload FROM captions WHERE video_id=? "
                                    "ORDER BY language", (video_id,)).fetchall()
        return [CaptionRecord(r[0], r[1], bytes(r[2])) for r in rows]

    def delete_caption(self, video_id: str, language: str) -> None:
        cur = self._conn().execute("DELETE FROM captions WHERE video_id=? AND language=?", (video_id, language))
        if cur.rowcount == 0:
            raise NotFoundError(f"video {video_id} has no caption in {language}")

    def close(self) -> None:
        self._connections.close()
