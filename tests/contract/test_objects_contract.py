"""Contract of the ObjectStore port; every backend must pass it."""
from __future__ import annotations

import urllib.request
import uuid

import pytest

from longtail_common.ports import MULTIPART_MIN_PART_BYTES, ConflictError, InvalidKeyError, NotFoundError

BACKENDS = ["fs", "s3"]


@pytest.fixture(params=BACKENDS)
def objects(request, tmp_path):
    if request.param == "fs":
        from longtail_common.adapters.fs_objects import FilesystemObjectStore

        store = FilesystemObjectStore(tmp_path / "objects")
    else:
        from tests.real_servers import make_real_object_store

        store = make_real_object_store(request.getfixturevalue("real_servers"))
    store.ensure_bucket("media")
    return store


def _prefix():
    return "videos/" + uuid.uuid4().hex[:10]


def test_put_get_stat_delete(objects):
    key = _prefix() + "/h264/720p/playlist.m3u8"
    assert objects.stat("media", key) is None
    objects.put_bytes("media", key, b"#EXTM3U\n")
    assert objects.get_bytes("media", key) == b"#EXTM3U\n"
    assert objects.stat("media", key).size == 8
    objects.delete("media", key)
    objects.delete("media", key)  # idempotent
    with pytest.raises(NotFoundError):
        objects.get_bytes("media", key)


def test_put_file_stream_ranges_and_download(objects, tmp_path):
    data = bytes(range(256)) * 4096  # 1 MiB
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    key = _prefix() + "/raw"
    objects.put_file("media", key, str(src))
    assert b"".join(objects.open_stream("media", key)) == data
    assert b"".join(objects.open_stream("media", key, 100, 199)) == data[100:200]
    assert b"".join(objects.open_stream("media", key, len(data) - 10)) == data[-10:]
    out = tmp_path / "out.bin"
    objects.download_file("media", key, str(out))
    assert out.read_bytes() == data
    with pytest.raises(NotFoundError):
        list(objects.open_stream("media", key + "x"))


def test_list_by_prefix(objects):
    p = _prefix()
    for k in ["a/1", "a/2", "b/1"]:
        objects.put_bytes("media", f"{p}/{k}", b"x")
    assert sorted(objects.list_keys("media", p + "/a/")) == [f"{p}/a/1", f"{p}/a/2"]
    assert len(list(objects.list_keys("media", p + "/"))) == 3


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/abs", "a//b", "a/./b", "a b", ""])
def test_keys_cannot_escape(objects, bad):
    with pytest.raises(InvalidKeyError):
        objects.put_bytes("media", bad, b"x")


def test_presigned_url_serves_bytes_when_supported(objects):
    key = _prefix() + "/poster.jpg"
    objects.put_bytes("media", key, b"jpegbytes")
    url = objects.presigned_get_url("media", key, 60)
    if url is None:
        return  # embedded store: the gateway serves objects itself
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"jpegbytes"


def test_conditional_write_is_compare_and_set(objects):
    key = _prefix() + "/state.json"
    assert objects.get_versioned("media", key) is None
    first = objects.put_bytes_if("media", key, b"v1", if_match=None)  # create only if absent
    with pytest.raises(ConflictError):
        objects.put_bytes_if("media", key, b"again", if_match=None)
    assert objects.get_versioned("media", key) == (b"v1", first)
    second = objects.put_bytes_if("media", key, b"v2", if_match=first)
    with pytest.raises(ConflictError):  # a writer that read v1 lost the race
        objects.put_bytes_if("media", key, b"v3", if_match=first)
    assert objects.get_versioned("media", key) == (b"v2", second)
    with pytest.raises(ConflictError):  # If-Match on an absent object
        objects.put_bytes_if("media", key + "x", b"v1", if_match=second)
    objects.delete("media", key)
    assert objects.get_versioned("media", key) is None


def test_multipart_upload_assembles_parts_once_completed(objects):
    key = _prefix() + "/original"
    big = bytes(range(256)) * (MULTIPART_MIN_PART_BYTES // 256)  # parts but the last are >= 5 MiB
    upload_id = objects.create_multipart("media", key)
    assert objects.list_parts("media", key, upload_id) == []
    objects.upload_part("media", key, upload_id, 2, b"tail")
    objects.upload_part("media", key, upload_id, 1, b"wrong first try")
    first = objects.upload_part("media", key, upload_id, 1, big)  # a part number is replaced
    parts = objects.list_parts("media", key, upload_id)
    assert [(p.number, p.size) for p in parts] == [(1, len(big)), (2, 4)] and parts[0] == first
    assert objects.stat("media", key) is None  # invisible until completed
    assert list(objects.list_keys("media", key.rsplit("/", 1)[0] + "/")) == []
    objects.complete_multipart("media", key, upload_id, parts)
    assert objects.get_bytes("media", key) == big + b"tail"
    assert _ended(objects, key, upload_id)  # completing ends the upload


def test_multipart_abort_is_idempotent_and_leaves_nothing(objects):
    key = _prefix() + "/original"
    upload_id = objects.create_multipart("media", key)
    objects.upload_part("media", key, upload_id, 1, b"abc")
    objects.abort_multipart("media", key, upload_id)
    objects.abort_multipart("media", key, upload_id)
    assert _ended(objects, key, upload_id)
    assert objects.stat("media", key) is None
    assert _ended(objects, key, "0" * 32)  # never created


def _ended(objects, key: str, upload_id: str) -> bool:
    """An unknown upload: NotFoundError, or no parts where the store keeps no record of
    uploads (S3Proxy's filesystem store)."""
    try:
        return objects.list_parts("media", key, upload_id) == []
    except NotFoundError:
        return True


def test_unfinished_multipart_uploads_are_listed_by_prefix(objects):
    prefix = _prefix()
    key = prefix + "/original"
    upload_id = objects.create_multipart("media", key)
    objects.upload_part("media", key, upload_id, 1, b"abc")
    other = objects.create_multipart("media", _prefix() + "/original")
    assert objects.list_multipart_uploads("media", prefix + "/") == [(key, upload_id)]
    objects.abort_multipart("media", key, upload_id)
    assert objects.list_multipart_uploads("media", prefix + "/") == []
    assert objects.list_multipart_uploads("no-such-bucket-" + uuid.uuid4().hex[:8], prefix) == []
    objects.abort_multipart("media", _prefix(), other)
