"""Rate limit counters on the real backend: a table in the metadata's ScyllaDB (or
Cassandra) keyspace, shared by every gateway of the deployment.

Counter columns cannot carry a TTL, so a counter is a plain int row written with
lightweight transactions: `INSERT ... IF NOT EXISTS` starts a window, `UPDATE ... IF
count = ?` adds to it (the compare-and-set `window_counters` builds on), each with the
TTL that ends the row when its window stops weighing (whole seconds: a fixed window may
end up to a second late; a sliding window's rows are told apart by their window number). The table is created here, not in
the metadata's versioned schema: every row expires within two windows, so there is
nothing in it a migration would ever need to keep.
"""
from __future__ import annotations

import math
import time

from longtail_common.adapters.scylla_metadata import ScyllaStore, unavailable_errors
from longtail_common.adapters.window_counters import WindowCounterStorage
from longtail_common.config import ScyllaConfig

# Tombstones of expired counters matter little (a missed repair forgets a few hits), so
# they are purged after an hour rather than the default ten days.
_SCHEMA = """CREATE TABLE IF NOT EXISTS {ks}.rate_limit_windows (
    key text,
    win bigint,
    count int,
    PRIMARY KEY ((key), win)) WITH gc_grace_seconds = 3600"""


class ScyllaRateLimitStorage(ScyllaStore, WindowCounterStorage):
    def __init__(self, cfg: ScyllaConfig, clock=time.time):
        WindowCounterStorage.__init__(self, clock)
        ScyllaStore.__init__(self, cfg, migrate_schema=True)

    def _prepare(self) -> None:
        ks, p = self._ks, self._session.prepare
        self._session.execute(_SCHEMA.format(ks=ks))
        self._select = p(f"SELECT win, count, TTL(count) AS ttl FROM {ks}.rate_limit_windows "
                         "WHERE key = ? AND win IN ?")
        self._insert = p(f"INSERT INTO {ks}.rate_limit_windows (key, win, count) VALUES (?, ?, ?) "
                         "IF NOT EXISTS USING TTL ?")
        self._update = p(f"UPDATE {ks}.rate_limit_windows USING TTL ? SET count = ? "
                         "WHERE key = ? AND win = ? IF count = ?")
        self._delete = p(f"DELETE FROM {ks}.rate_limit_windows WHERE key = ?")

    @property
    def base_exceptions(self) -> tuple[type[BaseException], ...]:
        return unavailable_errors()

    def check(self) -> bool:
        self._execute("checking", "SELECT now() FROM system.local")
        return True

    def read(self, key: str, windows: list[int]) -> dict[int, tuple[int, float]]:
        now = self._clock()
        rows = self._execute("reading a rate limit", self._select, (key, windows))
        return {row.win: (row.count, now + (row.ttl or 0)) for row in rows if row.count}

    def add_if(self, key: str, window: int, expected: int, amount: int, expires_at: float) -> bool:
        ttl = max(1, math.ceil(expires_at - self._clock()))
        if expected == 0:
            result = self._execute("starting a rate limit window", self._insert, (key, window, amount, ttl))
        else:
            result = self._execute("counting a rate limit hit", self._update,
                                   (ttl, expected + amount, key, window, expected))
        return result.was_applied

    def delete_key(self, key: str) -> None:
        self._execute("clearing a rate limit", self._delete, (key,))

    def delete_all(self) -> int | None:
        self._execute("clearing rate limits", f"TRUNCATE {self._ks}.rate_limit_windows")
        return None
