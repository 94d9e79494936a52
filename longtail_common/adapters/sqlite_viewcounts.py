"""Embedded view-count backend: SQLite in WAL mode under the data directory.

`daily_views` holds one row per (video, region, day) with counters; `applied` remembers the
last message offset applied per source (topic/partition) in the same transaction as the
counter update, which makes at-least-once delivery count every beacon exactly once.
"""
from __future__ import annotations

import pathlib
import sqlite3
import threading

from longtail_common.ports import CatalogEntry, DailyViews

_SCHEMA = """
CREATE TABLE IF NOT EXISTS daily_views (
    video_id TEXT NOT NULL, region TEXT NOT NULL, day TEXT NOT NULL,
    views INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (day, video_id, region)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS daily_views_by_video ON daily_views (video_id);
CREATE TABLE IF NOT EXISTS applied (source TEXT PRIMARY KEY, last_offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS catalog (
    video_id TEXT PRIMARY KEY, channel_id TEXT NOT NULL, language TEXT NOT NULL, category TEXT NOT NULL,
    publish_day TEXT NOT NULL, size_bytes INTEGER NOT NULL);
"""


class SqliteViewCountStore:
    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def apply_views(self, source: str, offset: int, rows: list[DailyViews]) -> bool:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT last_offset FROM applied WHERE source = ?", (source,)).fetchone()
            if row is not None and offset <= row[0]:
                conn.execute("ROLLBACK")
                return False
            for r in rows:
                conn.execute(
                    "INSERT INTO daily_views (video_id, region, day, views, bytes) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (day, video_id, region) DO UPDATE SET views = views + excluded.views, "
                    "bytes = bytes + excluded.bytes",
                    (r.video_id, r.region, r.day, int(r.views), int(r.bytes)),
                )
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

    def put_video(self, entry: CatalogEntry) -> None:
        self._conn().execute(
            "INSERT OR REPLACE INTO catalog (video_id, channel_id, language, category, publish_day, size_bytes) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (entry.video_id, entry.channel_id, entry.language, entry.category, entry.publish_day,
             int(entry.size_bytes)),
        )

    def list_videos(self) -> list[CatalogEntry]:
        rows = self._conn().execute(
            "SELECT video_id, channel_id, language, category, publish_day, size_bytes FROM catalog ORDER BY video_id"
        ).fetchall()
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

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
