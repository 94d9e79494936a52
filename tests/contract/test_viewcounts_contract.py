"""Contract of the ViewCountStore port; every backend must pass it."""
from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest

from longtail_common.ports import CatalogEntry, DailyQoE, DailyViews, view_shard

BACKENDS = ["sqlite", pytest.param("scylla", marks=pytest.mark.real)]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    if request.param == "sqlite":
        from longtail_common.adapters.sqlite_viewcounts import SqliteViewCountStore

        s = SqliteViewCountStore(tmp_path / "vc.sqlite3")
    else:
        from longtail_common.adapters.scylla_viewcounts import ScyllaViewCountStore
        from tests.real_servers import TEST_KEYSPACE

        servers = request.getfixturevalue("real_servers")
        s = ScyllaViewCountStore(dataclasses.replace(servers["config"].scylla, keyspace=TEST_KEYSPACE))
    yield s
    s.close()


def _uid() -> str:
    return "v" + uuid.uuid4().hex[:12]


def _mine(rows, ids):
    """The rows of this test's videos (the Scylla keyspace is shared by the session)."""
    return sorted((r.video_id, r.region, r.day, r.views, r.bytes) for r in rows if r.video_id in ids)


def _columns(store, first, last, ids, **kw):
    out = {}
    for c in store.view_columns(first, last, **kw):
        assert c.day.dtype == np.dtype("datetime64[D]") and c.views.dtype == np.int64
        for v, r, d, n, b in zip(c.video_id, c.region, c.day, c.views, c.bytes):
            if str(v) in ids:
                key = (str(v), str(r), str(d))
                out[key] = tuple(np.add(out.get(key, (0, 0)), (int(n), int(b))))
    return out


def test_counts_add_up_and_a_redelivered_offset_is_skipped(store):
    a, b = _uid(), _uid()
    src = "views/" + _uid()
    assert store.apply_views(src, 0, [DailyViews(a, "GB", "2031-01-01", 1, 100)])
    assert store.apply_views(src, 1, [DailyViews(a, "GB", "2031-01-01", 0, 50), DailyViews(b, "US", "2031-01-02", 1, 0),
                                      DailyViews(a, "GB", "2031-01-01", 1, 5)])  # same row twice in a message
    assert not store.apply_views(src, 1, [DailyViews(a, "GB", "2031-01-01", 1, 999)])
    assert not store.apply_views(src, 0, [DailyViews(a, "GB", "2031-01-01", 1, 999)])
    assert store.apply_views("views/" + _uid(), 0, [DailyViews(a, "GB", "2031-01-01", 1, 1)])  # another source
    assert _mine(store.daily_views("2031-01-01", "2031-01-02"), {a, b}) == sorted([
        (a, "GB", "2031-01-01", 3, 156), (b, "US", "2031-01-02", 1, 0)])
    assert _mine(store.daily_views("2031-01-02", None), {a, b}) == [(b, "US", "2031-01-02", 1, 0)]
    assert _mine(store.daily_views(None, "2031-01-01"), {a, b}) == [(a, "GB", "2031-01-01", 3, 156)]


def test_view_columns_sum_per_key_over_sources_and_split_into_shards(store):
    ids = [_uid() for _ in range(12)]
    for i, v in enumerate(ids):
        store.apply_views(f"views/{_uid()}", 7, [DailyViews(v, "JP", "2031-02-01", i, 10 * i),
                                                 DailyViews(v, "JP", "2031-02-03", 1, 0)])
        store.apply_views(f"views/{_uid()}", 3, [DailyViews(v, "JP", "2031-02-01", 1, 1)])
    store.apply_views(f"views/{_uid()}", 1, [DailyViews(ids[0], "JP", "2031-02-04", 5, 5)])  # outside the range
    whole = _columns(store, "2031-02-01", "2031-02-03", set(ids), batch_rows=5)
    assert whole == {**{(v, "JP", "2031-02-01"): (i + 1, 10 * i + 1) for i, v in enumerate(ids)},
                     **{(v, "JP", "2031-02-03"): (1, 0) for v in ids}}
    parts = [_columns(store, "2031-02-01", "2031-02-03", set(ids), shard=k, shards=3) for k in range(3)]
    assert {k: v for p in parts for k, v in p.items()} == whole
    for k, p in enumerate(parts):
        assert all(view_shard(v, 3) == k for v, _, _ in p)
    with pytest.raises(ValueError):
        list(store.view_columns("2031-02-01", "2031-02-03", shard=3, shards=3))


def test_catalogue_is_an_upsert_listed_by_id_and_by_shard(store):
    ids = sorted(_uid() for _ in range(8))
    for v in reversed(ids):
        store.put_video(CatalogEntry(v, "ch", "en", "music", "2031-03-01", 10))
    store.put_video(CatalogEntry(ids[0], "", "ja", "news", "2031-03-02", 20))
    listed = [e for e in store.list_videos() if e.video_id in ids]
    assert [e.video_id for e in listed] == ids
    assert listed[0] == CatalogEntry(ids[0], "", "ja", "news", "2031-03-02", 20)
    cols = store.catalogue_columns()
    mine = np.isin(cols.video_id, ids)
    assert list(cols.video_id[mine]) == ids and list(cols.video_id) == sorted(cols.video_id)
    assert cols.publish_day[mine][0] == np.datetime64("2031-03-02") and cols.size_bytes[mine][0] == 20
    assert list(cols.channel_id[mine][:2]) == ["", "ch"]
    by_shard = [store.catalogue_columns(k, 2) for k in range(2)]
    got = sorted(v for c in by_shard for v in c.video_id if v in ids)
    assert got == ids
    assert all(view_shard(str(v), 2) == k for k, c in enumerate(by_shard) for v in c.video_id)


def test_qoe_counters_add_up_once_per_offset_and_sum_over_sources(store):
    region = "Q" + uuid.uuid4().hex[:1].upper()  # a region of this test only (the keyspace is shared)
    src, other = "views/" + _uid(), "views/" + _uid()
    q = [DailyQoE("2031-07-01", region, "origin", "startup", 5, 1, 800),
         DailyQoE("2031-07-01", region, "origin", "startup", 5, 1, 900),  # same counter twice in a message
         DailyQoE("2031-07-02", region, "cdn", "rebuffer", 0, 2, 1500)]
    assert store.apply_views(src, 0, [], q)
    assert not store.apply_views(src, 0, [], q)  # redelivered
    assert store.apply_views(other, 7, [DailyViews(_uid(), region, "2031-07-01", 1, 0)],
                             [DailyQoE("2031-07-01", region, "origin", "startup", 5, 1, 700)])
    mine = [r for r in store.qoe_counts("2031-07-01", "2031-07-02") if r.region == region]
    assert mine == [DailyQoE("2031-07-01", region, "origin", "startup", 5, 3, 2400),
                    DailyQoE("2031-07-02", region, "cdn", "rebuffer", 0, 2, 1500)]
    assert [r for r in store.qoe_counts("2031-07-02", "2031-07-02") if r.region == region] == mine[1:]


def test_delete_video_forgets_its_counts_and_entry_only(store):
    a, b, src = _uid(), _uid(), "views/" + _uid()
    for v in (a, b):
        store.put_video(CatalogEntry(v, "ch", "en", "music", "2031-05-01", 10))
    assert store.apply_views(src, 0, [DailyViews(a, "GB", "2031-05-01", 2, 20), DailyViews(a, "US", "2031-05-03", 1, 1),
                                      DailyViews(b, "GB", "2031-05-01", 1, 10)])
    store.delete_video(a)
    store.delete_video(a)  # idempotent
    assert _mine(store.daily_views("2031-05-01", "2031-05-03"), {a, b}) == [(b, "GB", "2031-05-01", 1, 10)]
    assert _columns(store, "2031-05-01", "2031-05-03", {a, b}) == {(b, "GB", "2031-05-01"): (1, 10)}
    assert [e.video_id for e in store.list_videos() if e.video_id in (a, b)] == [b]


def test_sqlite_store_of_an_older_schema_is_migrated_in_order(tmp_path):
    """A store written before versions (no user_version, no buckets, no index) opens with
    its counts intact and every version applied in order; reopening applies none."""
    import sqlite3

    from longtail_common.adapters import sqlite_viewcounts as sv

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(sv._BASE_SCHEMA)
    conn.execute("INSERT INTO daily_views VALUES ('vold', 'GB', '2031-06-01', 3, 30)")
    conn.execute("INSERT INTO catalog VALUES ('vold', 'ch', 'en', 'music', '2031-06-01', 5)")
    conn.commit()
    conn.close()
    store = sv.SqliteViewCountStore(path)
    try:
        conn = store._conn()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == max(v for v, _, _ in sv.MIGRATIONS)
        assert sv.migrate(conn) == []
        k = view_shard("vold", 4)
        assert _columns(store, "2031-06-01", "2031-06-01", {"vold"}, shard=k, shards=4) == {
            ("vold", "GB", "2031-06-01"): (3, 30)}
        assert list(store.catalogue_columns(k, 4).video_id) == ["vold"]
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'daily_views_by_video'").fetchone()
    finally:
        store.close()
    fresh = sqlite3.connect(tmp_path / "new.sqlite3")
    assert sv.migrate(fresh) == [v for v, _, _ in sv.MIGRATIONS]
    fresh.close()


def test_scylla_schema_versions_ascend_and_view_counts_follow_the_accounts():
    from longtail_common.adapters.scylla_metadata import MIGRATIONS

    versions = [v for v, _, _ in MIGRATIONS]
    assert versions == sorted(set(versions))
    tables = {v: " ".join(stmts) for v, _, stmts in MIGRATIONS}
    assert "sessions" in tables[3] and "view_counts" in tables[6] and "qoe_counts" in tables[7]


@pytest.mark.real
def test_scylla_total_views_per_video_over_regions_days_and_sources(request):
    """Main's port asks `total_views` (My videos, the watch page's stats) of the Scylla store too."""
    from longtail_common.adapters.scylla_viewcounts import ScyllaViewCountStore
    from tests.real_servers import TEST_KEYSPACE

    servers = request.getfixturevalue("real_servers")
    store = ScyllaViewCountStore(dataclasses.replace(servers["config"].scylla, keyspace=TEST_KEYSPACE))
    try:
        a, b, c = _uid(), _uid(), _uid()
        assert store.apply_views("views/" + _uid(), 0, [DailyViews(a, "GB", "2031-09-01", 2, 0),
                                                        DailyViews(a, "US", "2031-09-02", 1, 0),
                                                        DailyViews(b, "GB", "2031-09-01", 1, 0)])
        assert store.apply_views("views/" + _uid(), 0, [DailyViews(a, "GB", "2031-09-01", 4, 0)])
        assert store.total_views([a, b, c]) == {a: 7, b: 1, c: 0}
        assert store.total_views([]) == {}
    finally:
        store.close()


@pytest.mark.real
def test_scylla_redelivery_of_a_half_applied_message_applies_only_the_missing_rows(request):
    """The consumer died after fencing one row of a message at its offset and before the
    others (and before the source's offset moved): redelivery counts every row once."""
    from longtail_common.adapters.scylla_viewcounts import ScyllaViewCountStore
    from longtail_common.ports import view_bucket
    from tests.real_servers import TEST_KEYSPACE

    servers = request.getfixturevalue("real_servers")
    store = ScyllaViewCountStore(dataclasses.replace(servers["config"].scylla, keyspace=TEST_KEYSPACE))
    try:
        a, b, src = _uid(), _uid(), "views/" + _uid()
        assert store.apply_views(src, 3, [DailyViews(a, "GB", "2031-04-01", 1, 1)])
        store._apply_row(("2031-04-01", view_bucket(a), a, "GB", src), 4, 1, 10)  # then the crash
        rows = [DailyViews(a, "GB", "2031-04-01", 1, 10), DailyViews(b, "GB", "2031-04-01", 1, 10)]
        assert store.apply_views(src, 4, rows)
        assert not store.apply_views(src, 4, rows)
        assert _mine(store.daily_views("2031-04-01", "2031-04-01"), {a, b}) == sorted([
            (a, "GB", "2031-04-01", 2, 11), (b, "GB", "2031-04-01", 1, 10)])
    finally:
        store.close()
