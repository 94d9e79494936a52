"""The search index: one SQLite database with an FTS5 table, safe to share between the
consumer thread and the gRPC threads (one connection behind a lock; SQLite serialises
writers anyway)."""
from __future__ import annotations

import pathlib
import re
import sqlite3
import threading
from dataclasses import dataclass

MAX_QUERY_WORDS = 10
_WORD = re.compile(r"\w+", re.UNICODE)


class BadQueryError(ValueError):
    pass


@dataclass
class Entry:
    video_id: str
    title: str
    description: str = ""
    channel_id: str = ""
    channel_name: str = ""
    duration_seconds: float = 0.0
    publish_time_us: int = 0
    poster_object_key: str = ""
    captions: str = ""  # the words of its captions, every language


_COLUMNS = ("video_id", "title", "description", "channel_id", "channel_name", "duration_seconds",
            "publish_time_us", "poster_object_key", "captions")
_FTS_COLUMNS = ("title", "description", "channel_name", "captions")


def fts_query(query: str) -> str:
    """Users type words, not FTS5 syntax: keep the words, quote each (so operators and
    punctuation are inert) and let each match as a prefix; all words must match."""
    words = _WORD.findall(query)
    if not words:
        raise BadQueryError("the query has no words to search for")
    return " ".join(f'"{w}"*' for w in words[:MAX_QUERY_WORDS])


class SearchIndex:
    def __init__(self, path: str | pathlib.Path):
        if str(path) != ":memory:":
            pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS videos (video_id TEXT PRIMARY KEY, title TEXT NOT NULL,"
            " description TEXT NOT NULL, channel_id TEXT NOT NULL, channel_name TEXT NOT NULL,"
            " duration_seconds REAL NOT NULL, publish_time_us INTEGER NOT NULL, poster_object_key TEXT NOT NULL,"
            " captions TEXT NOT NULL DEFAULT '')"
        )
        self._add_captions_column()
        self._db.execute("CREATE INDEX IF NOT EXISTS videos_latest ON videos (publish_time_us DESC, video_id DESC)")
        # External-content FTS table over `videos`: the text lives once, rowids tie them.
        self._db.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS videos_fts USING fts5(title, description, channel_name, captions,"
            " content='videos', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')"
        )

    def _add_captions_column(self) -> None:
        """An index made before captions were searched gets the column, and its FTS table
        is rebuilt from the rows it has (external content: nothing is lost)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(videos)")}
        if "captions" in columns:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("ALTER TABLE videos ADD COLUMN captions TEXT NOT NULL DEFAULT ''")
            self._db.execute("DROP TABLE IF EXISTS videos_fts")
            self._db.execute(
                "CREATE VIRTUAL TABLE videos_fts USING fts5(title, description, channel_name, captions,"
                " content='videos', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')")
            self._db.execute("INSERT INTO videos_fts (videos_fts) VALUES ('rebuild')")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def upsert(self, entry: Entry) -> None:
        values = tuple(getattr(entry, c) for c in _COLUMNS)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._delete_locked(entry.video_id)
                cur = self._db.execute(f"INSERT INTO videos ({', '.join(_COLUMNS)}) VALUES "
                                       f"({','.join('?' * len(_COLUMNS))})", values)
                self._db.execute(
                    f"INSERT INTO videos_fts (rowid, {', '.join(_FTS_COLUMNS)}) VALUES (?,?,?,?,?)",
                    (cur.lastrowid, *(getattr(entry, c) for c in _FTS_COLUMNS)),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def remove(self, video_id: str) -> bool:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                found = self._delete_locked(video_id)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return found

    def _delete_locked(self, video_id: str) -> bool:
        row = self._db.execute(
            f"SELECT rowid, {', '.join(_FTS_COLUMNS)} FROM videos WHERE video_id = ?", (video_id,)
        ).fetchone()
        if row is None:
            return False
        # External-content tables are told what to forget with the 'delete' command.
        self._db.execute(
            f"INSERT INTO videos_fts (videos_fts, rowid, {', '.join(_FTS_COLUMNS)}) VALUES ('delete',?,?,?,?,?)",
            row,
        )
        self._db.execute("DELETE FROM videos WHERE rowid = ?", (row[0],))
        return True

    def get(self, video_id: str) -> Entry | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM videos WHERE video_id = ?",
                                   (video_id,)).fetchone()
        return Entry(*row) if row else None

    def search(self, query: str, limit: int, offset: int = 0) -> list[Entry]:
        match = fts_query(query)
        cols = ", ".join(f"v.{c}" for c in _COLUMNS)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {cols} FROM videos_fts JOIN videos v ON v.rowid = videos_fts.rowid"
                " WHERE videos_fts MATCH ? ORDER BY bm25(videos_fts, 10.0, 1.0, 3.0, 0.5), v.publish_time_us DESC"
                " LIMIT ? OFFSET ?",
                (match, limit, offset),
            ).fetchall()
        return [Entry(*r) for r in rows]

    def latest(self, limit: int, offset: int = 0) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM videos ORDER BY publish_time_us DESC, video_id DESC"
                " LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        return [Entry(*r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
