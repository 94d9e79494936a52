"""Contract of the MetadataStore port; every backend must pass it."""
from __future__ import annotations

import uuid

import pytest

from longtail_common.ports import (
    AlreadyExistsError,
    CaptionRecord,
    ChannelRecord,
    ConflictError,
    InvalidKeyError,
    NotFoundError,
    VideoRecord,
)

BACKENDS = ["sqlite", "scylla"]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    if request.param == "sqlite":
        from longtail_common.adapters.sqlite_metadata import SqliteMetadataStore

        s = SqliteMetadataStore(tmp_path / "m.sqlite3")
    else:
        from tests.real_servers import make_real_metadata_store

        s = make_real_metadata_store(request.getfixturevalue("real_servers"))
    yield s
    s.close()


def _rec(vid, channel="chan", status=1, ts=1, etag="e1", payload=b"p"):
    return VideoRecord(video_id=vid, channel_id=channel, status=status, create_time_us=ts, etag=etag, payload=payload)


def _uid():
    return uuid.uuid4().hex[:12]


def test_create_get_and_duplicate(store):
    vid = _uid()
    store.create_video(_rec(vid, payload=b"\x00\x01binary"))
    got = store.get_video(vid)
    assert got.payload == b"\x00\x01binary" and got.etag == "e1" and got.channel_id == "chan"
    with pytest.raises(AlreadyExistsError):
        store.create_video(_rec(vid))
    assert store.get_video("missing-" + vid) is None


def test_batch_get_keeps_order_and_skips_missing(store):
    a, b = _uid(), _uid()
    store.create_video(_rec(a))
    store.create_video(_rec(b))
    assert [r.video_id for r in store.get_videos([b, "nope-" + a, a])] == [b, a]


def test_replace_is_compare_and_set(store):
    vid = _uid()
    store.create_video(_rec(vid, etag="v1"))
    store.replace_video(_rec(vid, status=2, etag="v2", payload=b"new"), expected_etag="v1")
    assert store.get_video(vid).payload == b"new"
    with pytest.raises(ConflictError):
        store.replace_video(_rec(vid, status=3, etag="v3"), expected_etag="v1")
    assert store.get_video(vid).status == 2
    with pytest.raises(NotFoundError):
        store.replace_video(_rec("absent-" + vid, etag="x"), expected_etag="y")


def test_channel_listing_newest_first_paged_and_filtered(store):
    channel = "c" + _uid()
    ids = [_uid() for _ in range(7)]
    for i, vid in enumerate(ids):
        store.create_video(_rec(vid, channel=channel, ts=1000 + i, status=3 if i % 2 == 0 else 2))
    seen, cursor = [], None
    while True:
        page, cursor = store.list_channel_videos(channel, 3, cursor, None)
        assert len(page) <= 3
        seen += [r.video_id for r in page]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    ready, _ = store.list_channel_videos(channel, 100, None, 3)
    assert [r.video_id for r in ready] == [ids[6], ids[4], ids[2], ids[0]]
    # a status change moves the video in or out of the filtered listing
    rec = store.get_video(ids[1])
    store.replace_video(_rec(ids[1], channel=channel, ts=1001, status=3, etag="z"), expected_etag=rec.etag)
    ready, _ = store.list_channel_videos(channel, 100, None, 3)
    assert ids[1] in [r.video_id for r in ready]


def test_channels(store):
    cid = "ch" + _uid()
    assert store.get_channel(cid) is None
    store.create_channel(ChannelRecord(cid, "Cooking with Ada", "acct1"))
    assert store.get_channel(cid) == ChannelRecord(cid, "Cooking with Ada", "acct1")


def test_channel_creation_is_first_wins_and_listed_by_owner(store):
    owner, other = "own" + _uid(), "oth" + _uid()
    a, b = "a" + _uid(), "b" + _uid()
    store.create_channel(ChannelRecord(b, "B", owner))
    store.create_channel(ChannelRecord(a, "A", owner))
    with pytest.raises(AlreadyExistsError):
        store.create_channel(ChannelRecord(a, "Mine now", other))
    assert store.get_channel(a) == ChannelRecord(a, "A", owner)
    assert store.list_owned_channels(owner) == [ChannelRecord(a, "A", owner), ChannelRecord(b, "B", owner)]
    assert store.list_owned_channels(other) == []
    with pytest.raises(InvalidKeyError):
        store.create_channel(ChannelRecord("x\n", "bad", owner))


def test_ids_are_validated(store):
    with pytest.raises(InvalidKeyError):
        store.create_video(_rec("../etc"))


def test_delete_is_compare_and_set_and_leaves_the_listing(store):
    channel, vid, other = "ch" + _uid(), _uid(), _uid()
    store.create_video(_rec(vid, channel=channel, ts=10, etag="v1"))
    store.create_video(_rec(other, channel=channel, ts=20, etag="o1"))
    store.replace_video(_rec(vid, channel=channel, ts=10, status=2, etag="v2"), expected_etag="v1")
    with pytest.raises(ConflictError):
        store.delete_video(vid, expected_etag="v1")  # read before the replace: refused
    assert store.get_video(vid) is not None
    store.delete_video(vid, expected_etag="v2")
    assert store.get_video(vid) is None
    assert [r.video_id for r in store.list_channel_videos(channel, 10, None, None)[0]] == [other]
    assert store.list_channel_videos(channel, 10, None, 2)[0] == []
    with pytest.raises(NotFoundError):
        store.delete_video(vid, expected_etag="v2")
    store.create_video(_rec(vid, channel=channel, ts=30, etag="n1"))  # the id can be used again
    assert [r.video_id for r in store.list_channel_videos(channel, 10, None, None)[0]] == [vid, other]


def test_captions_put_list_replace_delete(store):
    vid, other = _uid(), _uid()
    store.create_video(_rec(vid, etag="v1"))
    store.create_video(_rec(other, etag="o1"))
    assert store.list_captions(vid) == []
    store.put_caption(CaptionRecord(vid, "fr", b"\x00fr"))
    store.put_caption(CaptionRecord(vid, "en", b"en-1"))
    store.put_caption(CaptionRecord(other, "en", b"other"))
    store.put_caption(CaptionRecord(vid, "en", b"en-2"))  # one per language: replaced
    assert store.list_captions(vid) == [CaptionRecord(vid, "en", b"en-2"), CaptionRecord(vid, "fr", b"\x00fr")]
    store.delete_caption(vid, "fr")
    assert [c.language for c in store.list_captions(vid)] == ["en"]
    with pytest.raises(NotFoundError):
        store.delete_caption(vid, "fr")
    with pytest.raises(InvalidKeyError):
        store.put_caption(CaptionRecord("../x", "en", b""))
    # deleting the video takes its captions along, and only its own
    store.delete_video(vid, expected_etag="v1")
    assert store.list_captions(vid) == []
    assert store.list_captions(other) == [CaptionRecord(other, "en", b"other")]
