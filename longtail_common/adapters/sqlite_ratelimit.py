"""Embedded rate limit counters: one SQLite file in DATA_DIR (WAL), so every gateway process
of the machine counts against the same budgets.

A compare-and-set is one statement (a conditional INSERT or UPDATE): SQLite serialises
writers across processes, and a statement's row count says whether it won. Expired rows
are treated as absent, and swept every SWEEP_EVERY writes.
"""
from __future__ import annotations

import pathlib
import sqlite3
import threading
import time

from longtail_common.adapters.window_counters import WindowCounterStorage

SWEEP_EVERY = 1000
BUSY_TIMEOUT_MS = 5000

_SCHEMA = """CREATE TABLE IF NOT EXISTS rate_windows (
    key TEXT NOT NULL,
    win INTEGER NOT NULL,
    count INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (key, win)) WITHOUT ROWID"""


class SqliteRateLimitStorage(WindowCounterStorage):
    def __init__(self, path: str | pathlib.Path, clock=time.time):
        super().__init__(clock)
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One connection per thread: the gateway runs the checks on a small thread pool.
        self._path = str(path)
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._writes = 0
        with self._connection() as db:
            db.execute(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                 check_same_thread=False)  # close() closes every thread's
            db.execute("PRAGMA journal_mode=WAL")
            # Counters are worth no fsync: a power cut forgets a few seconds of hits.
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
            self._opened.append(db)
        return db

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def check(self) -> bool:
        self._connection().execute("SELECT 1").fetchone()
        return True

    def read(self, key: str, windows: list[int]) -> dict[int, tuple[int, float]]:
        marks = ",".join("?" * len(windows))
        rows = self._connection().execute(
            f"SELECT win, count, expires_at FROM rate_windows WHERE key = ? AND win IN ({marks}) "
            "AND expires_at > ?", (key, *windows, self._clock())).fetchall()
        return {window: (count, expires_at) for window, count, expires_at in rows}

    def add_if(self, key: str, window: int, expected: int, amount: int, expires_at: float) -> bool:
        db, now = self._connection(), self._clock()
        if expected == 0:
            # Inserts, or takes over an expired row; a live row means another writer was first.
            cursor = db.execute(
                "INSERT INTO rate_windows (key, win, count, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key, win) DO UPDATE SET count = excluded.count, expires_at = excluded.expires_at "
                "WHERE rate_windows.expires_at <= ?", (key, window, amount, expires_at, now))
        else:
            cursor = db.execute(
                "UPDATE rate_windows SET count = count + ? WHERE key = ? AND win = ? AND count = ? "
                "AND expires_at > ?", (amount, key, window, expected, now))
        self._writes += 1
        if self._writes % SWEEP_EVERY == 0:
            db.execute("DELETE FROM rate_windows WHERE expires_at <= ?", (now,))
        return cursor.rowcount == 1

    def delete_key(self, key: str) -> None:
        self._connection().execute("DELETE FROM rate_windows WHERE key = ?", (key,))

    def delete_all(self) -> int | None:
        return self._connection().execute("DELETE FROM rate_windows").rowcount

    def close(self) -> None:
        for db in self._opened:
            db.close()
        self._opened.clear()
        self._local = threading.local()
