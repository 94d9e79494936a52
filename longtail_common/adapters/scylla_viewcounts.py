"""Real view-count backend: placement's daily counts and catalogue in the metadata's
ScyllaDB (or Cassandra) keyspace, through scylla-driver, so every placement replica and
the daily job (on any machine, any shard) share them.

Tables (schema versions 6 and 7 of `scylla_metadata.MIGRATIONS`):

* `view_counts`, partition `(day, bucket)` (bucket = `ports.view_bucket(video_id)`), one
  row per `(video_id, region, source)` with `views`, `bytes` and `last_offset`, the offset
  of the source's message that last changed the row. A day of a 1M-video catalogue is
  256 partitions of a few thousand rows; a shard of the daily job reads only its buckets.
* `view_sources`: the last offset applied per source (topic/partition).
* `view_days`: the days that have counts (for open-ended reads).
* `placement_catalog`, partition `bucket`: the READY videos placement decides for.
* `qoe_counts`, partition `day`, a row per (region, served_from, metric, bin, source) with
  `n`, `total` and `last_offset`: the player-measured QoE counters, fenced the same way.

Exactly once. A source's messages arrive in offset order, at least once. `apply_views`
skips a message whose offset is not above `view_sources.last_offset`; otherwise it
applies each row with a lightweight transaction fenced by the row's own offset: read the
row, then `UPDATE ... SET views = old + n, ..., last_offset = offset IF last_offset = old`
(`INSERT ... IF NOT EXISTS` for a new row), re-read and retry if another writer got in
between, and leave a row alone whose `last_offset` is already >= offset. Only then does
the source's offset advance. A consumer that dies half-way through a message leaves some
rows fenced at that offset and some not: redelivery applies exactly the missing ones.
Counter columns could not do this (an increment is not idempotent and cannot be made
conditional), and one LWT over a whole message is impossible across partitions; the
fence per row is what makes each row's update idempotent. The price is one read and one
Paxos round per (day, video, region) per message, fine for beacons consumed in parallel
per partition. Rows carry the source in their key, so a (video, region, day) may have one
row per partition that counted it; readers sum them.
"""
from __future__ import annotations

import datetime as dt
import threading
from typing import Iterator

from longtail_common.adapters.scylla_metadata import ScyllaStore
from longtail_common.config import ScyllaConfig
from longtail_common.ports import (
    VIEW_BUCKETS,
    CatalogColumns,
    CatalogEntry,
    ConflictError,
    DailyQoE,
    DailyViews,
    ViewColumns,
    catalog_columns_of,
    check_shard,
    view_bucket,
    view_columns_of,
)

CAS_ATTEMPTS = 20  # a row has one writer per source; more than a few lost races is a bug
READ_CONCURRENCY = 32
_CATALOG_COLUMNS = "video_id, channel_id, language, category, publish_day, size_bytes"


def _days(first_day: str, last_day: str) -> list[str]:
    first, last = dt.date.fromisoformat(first_day), dt.date.fromisoformat(last_day)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


class ScyllaViewCountStore(ScyllaStore):
    def __init__(self, cfg: ScyllaConfig, migrate_schema: bool = True):
        self._known_days: set[str] = set()
        self._lock = threading.Lock()
        super().__init__(cfg, migrate_schema)

    def _prepare(self) -> None:
        ks, p = self._ks, self._session.prepare
        key = "day = ? AND bucket = ? AND video_id = ? AND region = ? AND source = ?"
        self._get_source = p(f"SELECT last_offset FROM {ks}.view_sources WHERE source = ?")
        self._new_source = p(f"INSERT INTO {ks}.view_sources (source, last_offset) VALUES (?, ?) IF NOT EXISTS")
        self._advance_source = p(f"UPDATE {ks}.view_sources SET last_offset = ? WHERE source = ? "
                                 "IF last_offset < ?")
        self._get_row = p(f"SELECT views, bytes, last_offset FROM {ks}.view_counts WHERE {key}")
        self._new_row = p(f"INSERT INTO {ks}.view_counts (day, bucket, video_id, region, source, views, bytes, "
                          "last_offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS")
        self._cas_row = p(f"UPDATE {ks}.view_counts SET views = ?, bytes = ?, last_offset = ? WHERE {key} "
                          "IF last_offset = ?")
        qkey = "day = ? AND region = ? AND served_from = ? AND metric = ? AND bin = ? AND source = ?"
        self._qoe_stmts = (
            p(f"SELECT n AS views, total AS bytes, last_offset FROM {ks}.qoe_counts WHERE {qkey}"),
            p(f"INSERT INTO {ks}.qoe_counts (day, region, served_from, metric, bin, source, n, total, last_offset) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"),
            p(f"UPDATE {ks}.qoe_counts SET n = ?, total = ?, last_offset = ? WHERE {qkey} IF last_offset = ?"))
        self._read_qoe = p(f"SELECT region, served_from, metric, bin, n, total FROM {ks}.qoe_counts WHERE day = ?")
        self._add_day = p(f"INSERT INTO {ks}.view_days (day) VALUES (?)")
        self._list_days = p(f"SELECT day FROM {ks}.view_days")
        self._read_partition = p(f"SELECT video_id, region, views, bytes FROM {ks}.view_counts "
                                 "WHERE day = ? AND bucket = ?")
        self._put_video = p(f"INSERT INTO {ks}.placement_catalog (bucket, {_CATALOG_COLUMNS}) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)")
        self._video_rows = p(f"SELECT views FROM {ks}.view_counts WHERE day = ? AND bucket = ? AND video_id = ?")
        self._delete_counts = p(f"DELETE FROM {ks}.view_counts WHERE day = ? AND bucket = ? AND video_id = ?")
        self._delete_entry = p(f"DELETE FROM {ks}.placement_catalog WHERE bucket = ? AND video_id = ?")
        self._read_bucket = p(f"SELECT {_CATALOG_COLUMNS} FROM {ks}.placement_catalog WHERE bucket = ?")

    # -- counting ------------------------------------------------------------------------
    def apply_views(self, source: str, offset: int, rows: list[DailyViews], qoe: list[DailyQoE] = ()) -> bool:
        done = self._execute(f"reading source {source}", self._get_source, (source,)).one()
        if done is not None and offset <= done.last_offset:
            return False
        totals: dict[tuple[str, str, str], list[int]] = {}
        for r in rows:
            t = totals.setdefault((r.day, r.video_id, r.region), [0, 0])
            t[0] += int(r.views)
            t[1] += int(r.bytes)
        for (day, video_id, region), (views, nbytes) in totals.items():
            self._apply_row((day, view_bucket(video_id), video_id, region, source), offset, views, nbytes)
        qtotals: dict[tuple, list[int]] = {}
        for q in qoe:
            t = qtotals.setdefault((q.day, q.region, q.served_from, q.metric, int(q.bin), source), [0, 0])
            t[0] += int(q.n)
            t[1] += int(q.total)
        for key, (n, total) in qtotals.items():
            self._apply_row(key, offset, n, total, self._qoe_stmts)
        for day in {day for day, _, _ in totals} - self._known_days:
            self._execute(f"recording day {day}", self._add_day, (day,))
            with self._lock:
                self._known_days.add(day)
        if done is None and self._execute(f"recording source {source}", self._new_source,
                                          (source, offset)).was_applied:
            return True
        self._execute(f"advancing source {source}", self._advance_source, (offset, source, offset))
        return True

    def _apply_row(self, key: tuple, offset: int, views: int, nbytes: int, stmts: tuple | None = None) -> None:
        """Adds (views, bytes) to one row unless `offset` already reached it (see module doc);
        `stmts` (get, insert, compare-and-set) name another table of the same shape."""
        get_row, new_row, cas_row = stmts or (self._get_row, self._new_row, self._cas_row)
        for _ in range(CAS_ATTEMPTS):
            row = self._execute("reading a count", get_row, key).one()
            if row is None:
                result = self._execute("inserting a count", new_row, (*key, views, nbytes, offset))
            elif row.last_offset >= offset:
                return
            else:
                result = self._execute("updating a count", cas_row, (
                    row.views + views, row.bytes + nbytes, offset, *key, row.last_offset))
            if result.was_applied:
                return
        raise ConflictError(f"view count {key} kept changing under {CAS_ATTEMPTS} compare-and-sets")

    # -- reading -------------------------------------------------------------------------
    def _partitions(self, stmt, args: list[tuple]) -> Iterator[tuple[tuple, list]]:
        """(args, rows) per query, READ_CONCURRENCY at a time, in the order of `args`."""
        from cassandra.concurrent import execute_concurrent_with_args

        for s in range(0, len(args), READ_CONCURRENCY):
            part = args[s:s + READ_CONCURRENCY]
            try:
                results = execute_concurrent_with_args(self._session, stmt, part, concurrency=READ_CONCURRENCY,
                                                       raise_on_first_error=True)
                for a, (_, rows) in zip(part, results):
                    yield a, list(rows)
            except unavailable_errors() as exc:
                raise wrap_error(f"reading {len(part)} partitions", self.cfg, exc) from exc

    def view_columns(self, first_day: str, last_day: str, shard: int = 0, shards: int = 1,
                     batch_rows: int = 1_000_000) -> Iterator[ViewColumns]:
        check_shard(shard, shards)
        keys = [(day, b) for day in _days(first_day, last_day) for b in range(shard, VIEW_BUCKETS, shards)]
        batch: list[tuple] = []
        for (day, _), rows in self._partitions(self._read_partition, keys):
            batch.extend((r.video_id, r.region, day, r.views or 0, r.bytes or 0) for r in rows)
            if len(batch) >= batch_rows:
                yield view_columns_of(batch)
                batch = []
        if batch:
            yield view_columns_of(batch)

    def daily_views(self, first_day: str | None = None, last_day: str | None = None) -> list[DailyViews]:
        days = sorted(r.day for r in self._execute("listing days", self._list_days)
                      if (first_day is None or r.day >= first_day) and (last_day is None or r.day <= last_day))
        totals: dict[tuple[str, str, str], list[int]] = {}
        for (day, _), rows in self._partitions(self._read_partition, [(d, b) for d in days for b in range(VIEW_BUCKETS)]):
            for r in rows:
                t = totals.setdefault((day, r.video_id, r.region), [0, 0])
                t[0] += r.views or 0
                t[1] += r.bytes or 0
        return [DailyViews(vid, reg, day, v, b) for (day, vid, reg), (v, b) in sorted(totals.items())]

    def total_views(self, video_ids: list[str]) -> dict[str, int]:
        """Views of each video over every region and day (0 for a video without any): one
        clustering-prefix read per (counted day, video), READ_CONCURRENCY at a time. Main's
        port (My videos, the watch page's stats) asks it of a page of videos at a time; a
        platform with years of days would keep a running total per video instead."""
        totals = dict.fromkeys(video_ids, 0)
        if not totals:
            return totals
        days = [r.day for r in self._execute("listing days", self._list_days)]
        keys = [(day, view_bucket(v), v) for v in totals for day in days]
        for (_, _, video_id), rows in self._partitions(self._video_rows, keys):
            totals[video_id] += sum(r.views or 0 for r in rows)
        return totals

    def qoe_counts(self, first_day: str, last_day: str) -> list[DailyQoE]:
        totals: dict[tuple, list[int]] = {}
        for (day,), rows in self._partitions(self._read_qoe, [(d,) for d in _days(first_day, last_day)]):
            for r in rows:
                t = totals.setdefault((day, r.region, r.served_from, r.metric, r.bin), [0, 0])
                t[0] += r.n or 0
                t[1] += r.total or 0
        return [DailyQoE(*key, n, total) for key, (n, total) in sorted(totals.items())]

    # -- catalogue -----------------------------------------------------------------------
    def put_video(self, entry: CatalogEntry) -> None:
        self._execute(f"recording {entry.video_id}", self._put_video, (
            view_bucket(entry.video_id), entry.video_id, entry.channel_id, entry.language, entry.category,
            entry.publish_day, int(entry.size_bytes)))

    def _catalogue_rows(self, shard: int, shards: int) -> list[tuple]:
        check_shard(shard, shards)
        out = []
        for _, rows in self._partitions(self._read_bucket, [(b,) for b in range(shard, VIEW_BUCKETS, shards)]):
            out.extend((r.video_id, r.channel_id or "", r.language or "", r.category or "", r.publish_day,
                        int(r.size_bytes or 0)) for r in rows)
        return out

    def list_videos(self) -> list[CatalogEntry]:
        return [CatalogEntry(*r) for r in sorted(self._catalogue_rows(0, 1))]

    def catalogue_columns(self, shard: int = 0, shards: int = 1) -> CatalogColumns:
        return catalog_columns_of(self._catalogue_rows(shard, shards))

    def delete_video(self, video_id: str) -> None:
        """Its rows of every counted day (a range delete per (day, bucket) partition), then
        its catalogue entry. A beacon counted after this recreates a row; the deleter's
        catalogue delete still keeps the video out of the daily job."""
        from cassandra.concurrent import execute_concurrent_with_args

        bucket = view_bucket(video_id)
        days = [(r.day, bucket, video_id) for r in self._execute("listing days", self._list_days)]
        try:
            execute_concurrent_with_args(self._session, self._delete_counts, days, concurrency=READ_CONCURRENCY,
                                         raise_on_first_error=True)
        except unavailable_errors() as exc:
            raise wrap_error(f"deleting the counts of {video_id}", self.cfg, exc) from exc
        self._execute(f"deleting {video_id}", self._delete_entry, (bucket, video_id))
