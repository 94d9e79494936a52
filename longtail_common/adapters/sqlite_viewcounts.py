"""Embedded view-count backend: SQLite in WAL mode under the data directory.

`daily_views` holds one row per (video, region, day) with counters; `applied` remembers the
last message offset applied per source (topic/partition) in the same transaction as the
counter update, which makes at-least-once delivery count every beacon exactly once. Rows
and catalogue entries carry the video's bucket (`ports.view_bucket`) so a shard of the
daily job reads only its own videos.
"""
from __future__ import annotations

import pathlib
import sqlite3
import threading
from typing import Iterator

from longtail_common.ports import (
    CatalogColumns,
    CatalogEntry,
    DailyQoE,
    DailyViews,
    ViewColumns,
    catalog_columns_of,
    check_shard,
    view_bucket,
    view_columns_of,
)

_BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS daily_views (
    video_id TEXT NOT NULL, region TEXT NOT NULL, day TEXT NOT NULL,
    views INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (day, video_id, region)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS applied (source TEXT PRIMARY KEY, last_offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS catalog (
    video_id TEXT PRIMARY KEY, channel_id TEXT NOT NULL, language TEXT NOT NULL, category TEXT NOT NULL,
    publish_day TEXT NOT NULL, size_bytes INTEGER NOT NULL);
"""
_CATALOG_COLUMNS = "video_id, channel_id, language, category, publish_day, size_bytes"


def _add_buckets(conn: sqlite3.Connection) -> None:
    """Stores written before buckets existed: add the column and fill it in."""
    conn.create_function("view_bucket", 1, view_bucket, deterministic=True)
    for table in ("daily_views", "catalog"):
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if "bucket" not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN bucket INTEGER NOT NULL DEFAULT -1")
            conn.execute(f"UPDATE {table} SET bucket = view_bucket(video_id)")


def _run_script(script: str):
    def step(conn: sqlite3.Connection) -> None:
        for stmt in filter(str.strip, script.split(";")):
            conn.execute(stmt)
    return step


# Versioned schema (`PRAGMA user_version` records the last one applied), applied in order,
# each in its own transaction. Every step is idempotent, so a store made before versions
# existed (user_version 0, some tables already there) goes through all of them. Append only.
MIGRATIONS = [
    (1, "daily counts, applied offsets, catalogue", _run_script(_BASE_SCHEMA)),
    (2, "index by video (deletions)",
     _run_script("CREATE INDEX IF NOT EXISTS daily_views_by_video ON daily_views (video_id)")),
    (3, "buckets (shards of the daily job)", _add_buckets),
    (4, "player-measured QoE counters", _run_script("""
        CREATE TABLE IF NOT EXISTS qoe_daily (
            day TEXT NOT NULL, region TEXT NOT NULL, served_from TEXT NOT NULL, metric TEXT NOT NULL,
            bin INTEGER NOT NULL, n INTEGER NOT NULL, total INTEGER NOT NULL,
            PRIMARY KEY (day, region, served_from, metric, bin)) WITHOUT ROWID""")),
]


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Applies the versions above the store's, in ascending order; returns those applied."""
    applied = []
    for version, _, step in sorted(MIGRATIONS, key=lambda m: m[0]):
        conn.execute("BEGIN IMMEDIATE")  # one migrator at a time; re-read the version inside
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] >= version:
                conn.execute("ROLLBACK")
                continue
            step(conn)
            conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied


class SqliteViewCountStore:
    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        migrate(self._conn())

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def apply_views(self, source: str, offset: int, rows: list[DailyViews], qoe: list[DailyQoE] = ()) -> bool:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT last_offset FROM applied WHERE source = ?", (source,)).fetchone()
            if row is not None and offset <= row[0]:
                conn.execute("ROLLBACK")
                return False
            conn.executemany(
                "INSERT INTO daily_views (video_id, region, day, views, bytes, bucket) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (day, video_id, region) DO UPDATE SET views = views + excluded.views, "
                "bytes = bytes + excluded.bytes",
                ((r.video_id, r.region, r.day, int(r.views), int(r.bytes), view_bucket(r.video_id)) for r in rows))
            conn.executemany(
                "INSERT INTO qoe_daily (day, region, served_from, metric, bin, n, total) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (day, region, served_from, metric, bin) DO UPDATE SET n = n + excluded.n, "
                "total = total + excluded.total",
                ((q.day, q.region, q.served_from, q.metric, int(q.bin), int(q.n), int(q.total)) for q in qoe))
            conn.execute("INSERT INTO applied (source, last_offset) VALUES (?, ?) "
                         "ON CONFLICT (source) DO UPDATE SET last_offset = excluded.last_offset", (source, offset))
            conn.execute("COMMIT")
            return True
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def daily_views(self, first_day: str | None = None, last_day: str | None = None) -> list[DailyViews]:
        rows = self._conn().execute(
            "SELECT video_id, region, day, views, bytes FROM daily_views WHERE day >= ? AND day <= ? "
            "ORDER BY day, video_id, region",
            (first_day or "0000-00-00", last_day or "9999-99-99"),
        ).fetchall()
        return [DailyViews(*r) for r in rows]

    def total_views(self, video_ids: list[str]) -> dict[str, int]:
        totals = dict.fromkeys(video_ids, 0)
        ids = list(totals)
        for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
            chunk = ids[start:start + 500]
            rows = self._conn().execute(
                f"SELECT video_id, SUM(views) FROM daily_views WHERE video_id IN ({','.join('?' * len(chunk))}) "
                "GROUP BY video_id", chunk).fetchall()
            totals.update((video_id, int(views)) for video_id, views in rows)
        return totals
    def qoe_counts(self, first_day: str, last_day: str) -> list[DailyQoE]:
        rows = self._conn().execute(
            "SELECT day, region, served_from, metric, bin, n, total FROM qoe_daily WHERE day >= ? AND day <= ? "
            "ORDER BY day, region, served_from, metric, bin", (first_day, last_day)).fetchall()
        return [DailyQoE(*r) for r in rows]

    def view_columns(self, first_day: str, last_day: str, shard: int = 0, shards: int = 1,
                     batch_rows: int = 1_000_000) -> Iterator[ViewColumns]:
        check_shard(shard, shards)
        cursor = self._conn().execute(
            "SELECT video_id, region, day, views, bytes FROM daily_views "
            "WHERE day >= ? AND day <= ? AND bucket % ? = ?", (first_day, last_day, shards, shard))
        try:
            while rows := cursor.fetchmany(batch_rows):
                yield view_columns_of(rows)
        finally:
            cursor.close()

    def put_video(self, entry: CatalogEntry) -> None:
        self._conn().execute(
            f"INSERT OR REPLACE INTO catalog ({_CATALOG_COLUMNS}, bucket) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (entry.video_id, entry.channel_id, entry.language, entry.category, entry.publish_day,
             int(entry.size_bytes), view_bucket(entry.video_id)),
        )

    def list_videos(self) -> list[CatalogEntry]:
        rows = self._conn().execute(f"SELECT {_CATALOG_COLUMNS} FROM catalog ORDER BY video_id").fetchall()
        return [CatalogEntry(*r) for r in rows]

    def delete_video(self, video_id: str) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")  # counts and entry go together
        try:
            conn.execute("DELETE FROM daily_views WHERE video_id = ?", (video_id,))
            conn.execute("DELETE FROM catalog WHERE video_id = ?", (video_id,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def catalogue_columns(self, shard: int = 0, shards: int = 1) -> CatalogColumns:
        check_shard(shard, shards)
        rows = self._conn().execute(f"SELECT {_CATALOG_COLUMNS} FROM catalog WHERE bucket % ? = ?",
                                    (shards, shard)).fetchall()
        return catalog_columns_of(rows)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
