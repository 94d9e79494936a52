"""The real backends (Kafka, Scylla/Cassandra, S3) against real servers.

Needs the `real_servers` fixture (tests/real_servers.py): Kafka 4, Cassandra 5 and
S3Proxy started once per session from Maven Central jars. Skipped without Java/Maven,
failed instead when CI is set.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import pathlib
import threading
import time
import tomllib
import urllib.request
import uuid

import pytest

from longtail_cli.launcher import free_port
from longtail_common.config import KafkaConfig, S3Config, load_config
from longtail_common.ports import (
    AlreadyExistsError,
    BackendUnavailableError,
    ChannelRecord,
    ConflictError,
    InvalidKeyError,
    MetadataStore,
    NotFoundError,
    ObjectStore,
    TopicBus,
    VideoRecord,
)
from longtail_testservers import cli as services_cli
from longtail_testservers import jars
from tests.real_servers import (
    make_real_metadata_store,
    make_real_object_store,
    make_real_topic_bus,
    restart_kafka,
    unique_topic,
)

pytestmark = pytest.mark.real


def _uid() -> str:
    return uuid.uuid4().hex[:12]


def _poll_until(consumer, count: int, timeout_s: float = 90.0, max_records: int = 10) -> list:
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += consumer.poll(timeout_s=0.5, max_records=max_records)
    return got


# ---------------------------------------------------------------------------------------
# The servers themselves


def test_servers_write_config_and_state(real_servers):
    if real_servers.get("kind") != "java":
        pytest.skip("java test servers only")
    root = pathlib.Path(real_servers["dir"])
    state = json.loads((root / "servers.json").read_text())
    assert set(state["servers"]) == {"kafka", "cassandra", "s3proxy"}
    for info in state["servers"].values():
        assert info["pid"] > 0 and info["port"] > 0 and info["startup_s"] > 0
    with open(root / "longtail.toml", "rb") as fh:
        raw = tomllib.load(fh)
    assert raw["backends"] == {"metadata": "scylla", "objects": "s3", "topics": "kafka"}
    cfg = load_config(root / "longtail.toml", env={})
    assert cfg.kafka.bootstrap_servers == real_servers["kafka"].bootstrap_servers
    assert cfg.scylla.port == real_servers["cassandra"].native_port
    assert cfg.s3.endpoint == real_servers["s3proxy"].endpoint


def test_missing_java_is_reported_plainly(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LONGTAIL_JAVA", str(tmp_path / "no-such-java"))
    ok, reason = jars.java_available()
    assert not ok and "java" in reason
    assert services_cli.main(["start", "--dir", str(tmp_path / "s")]) == 2
    assert "Java 17+ and Maven are needed for local servers: " in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Kafka


@pytest.fixture
def bus(real_servers):
    b = make_real_topic_bus(real_servers)
    assert isinstance(b, TopicBus)
    yield b
    b.close()


def test_kafka_publish_consume_commit(bus):
    topic = unique_topic("orders")
    bus.ensure_topics({topic: 3})
    bus.ensure_topics({topic: 3})  # idempotent
    assert bus.topic_partitions(topic) == 3
    producer = bus.producer()
    try:
        for i in range(12):
            producer.publish(topic, f"v{i}".encode(), key=f"k{i % 4}".encode(),
                             headers={"trace": f"t{i}".encode(), "n": str(i).encode()})
    finally:
        producer.close()

    consumer = bus.consumer([topic], "g-" + _uid())
    got = _poll_until(consumer, 12)
    assert sorted(m.value for m in got) == sorted(f"v{i}".encode() for i in range(12))
    by_key: dict = {}
    for m in got:
        by_key.setdefault(m.key, []).append(m)
        assert m.header("trace") == b"t" + m.header("n") and m.timestamp_ms > 0
    for key, msgs in by_key.items():
        assert len({m.partition for m in msgs}) == 1, f"key {key} spread over partitions"
        values = [int(m.value[1:]) for m in sorted(msgs, key=lambda m: m.offset)]
        assert values == sorted(values), "per-key order lost"
    for m in got:
        consumer.commit(m)
    group = consumer._group_id
    consumer.close()

    # everything committed: a new member of the group sees only what is published next
    again = bus.consumer([topic], group)
    try:
        producer = bus.producer()
        producer.publish(topic, b"late", key=b"k1")
        producer.close()
        more = _poll_until(again, 1)
        time.sleep(0.5)
        more += again.poll(timeout_s=1.0, max_records=50)
        assert [m.value for m in more] == [b"late"]
    finally:
        again.close()


def test_kafka_redelivers_uncommitted_after_close(bus):
    topic = unique_topic("jobs")
    bus.ensure_topics({topic: 1})
    producer = bus.producer()
    for i in range(5):
        producer.publish(topic, f"job{i}".encode(), key=b"same")
    producer.close()
    group = "workers-" + _uid()

    first = bus.consumer([topic], group)
    got = _poll_until(first, 5)
    assert [m.value for m in got] == [f"job{i}".encode() for i in range(5)]
    first.commit(got[1])  # jobs 0 and 1 done; 2..4 taken but never committed
    first.close()

    second = bus.consumer([topic], group)
    try:
        redelivered = _poll_until(second, 3)
        assert [m.value for m in redelivered] == [b"job2", b"job3", b"job4"]
        assert [m.offset for m in redelivered] == [got[2].offset, got[3].offset, got[4].offset]
    finally:
        second.close()


def test_kafka_partitions_shared_between_members(bus):
    topic = unique_topic("shared")
    bus.ensure_topics({topic: 4})
    group = "pool-" + _uid()
    a = bus.consumer([topic], group)
    b = bus.consumer([topic], group)
    try:
        # let the group settle: both members own partitions, together all four
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            assert a.poll(timeout_s=0.2) == [] and b.poll(timeout_s=0.2) == []
            if a.assignment() and b.assignment() and len(a.assignment() | b.assignment()) == 4:
                break
        assert not (a.assignment() & b.assignment())
        assert len(a.assignment() | b.assignment()) == 4
        producer = bus.producer()
        for i in range(40):
            producer.publish(topic, str(i).encode(), key=f"key-{i}".encode())
        producer.close()
        seen: list = []
        deadline = time.monotonic() + 45
        while len(seen) < 40 and time.monotonic() < deadline:
            for c in (a, b):
                for m in c.poll(timeout_s=0.3, max_records=20):
                    seen.append(m)
                    c.commit(m)
        assert sorted(int(m.value) for m in seen) == list(range(40))
        # no message went to both members (each partition has one owner at a time)
        assert len({(m.partition, m.offset) for m in seen}) == 40
        assert {m.partition for m in seen if (topic, m.partition) in a.assignment()}
    finally:
        a.close()
        b.close()


def test_kafka_unreachable_broker_raises_unavailable():
    from longtail_common.adapters.kafka_topics import KafkaTopicBus

    dead = KafkaTopicBus(KafkaConfig(bootstrap_servers=f"127.0.0.1:{free_port()}"),
                         connect_timeout_s=2, publish_timeout_s=3)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        dead.producer()
    with pytest.raises(BackendUnavailableError):
        dead.ensure_topics({"x": 1})
    assert time.monotonic() - started < 20
    dead.close()


def test_kafka_publish_to_missing_topic_does_not_hang(bus):
    from longtail_common.adapters.kafka_topics import KafkaTopicBus

    quick = KafkaTopicBus(bus.cfg, publish_timeout_s=3)
    producer = quick.producer()
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        producer.publish(unique_topic("never-created"), b"x")
    assert time.monotonic() - started < 15
    producer.close()
    quick.close()


# ---------------------------------------------------------------------------------------
# Scylla (Cassandra 5 here)


@pytest.fixture
def store(real_servers):
    s = make_real_metadata_store(real_servers)
    assert isinstance(s, MetadataStore)
    yield s
    s.close()


def _rec(vid, channel="chan", status=1, ts=1, etag="e1", payload=b"p"):
    return VideoRecord(video_id=vid, channel_id=channel, status=status, create_time_us=ts, etag=etag, payload=payload)


def test_scylla_create_get_duplicate(store):
    vid = _uid()
    store.create_video(_rec(vid, payload=b"\x00\xffbinary", ts=1_700_000_000_000_000))
    got = store.get_video(vid)
    assert got == _rec(vid, payload=b"\x00\xffbinary", ts=1_700_000_000_000_000)
    with pytest.raises(AlreadyExistsError):
        store.create_video(_rec(vid, etag="other"))
    assert store.get_video(vid).etag == "e1"
    assert store.get_video("missing-" + vid) is None
    a = _uid()
    store.create_video(_rec(a))
    assert [r.video_id for r in store.get_videos([a, "nope-" + a, vid, a])] == [a, vid, a]
    with pytest.raises(InvalidKeyError):
        store.create_video(_rec("../etc"))


def test_scylla_replace_is_compare_and_set(store):
    vid = _uid()
    channel = "c" + _uid()
    store.create_video(_rec(vid, channel=channel, etag="v1", status=1))
    store.replace_video(_rec(vid, channel=channel, status=2, etag="v2", payload=b"new"), expected_etag="v1")
    assert store.get_video(vid).payload == b"new"
    with pytest.raises(ConflictError):
        store.replace_video(_rec(vid, channel=channel, status=3, etag="v3"), expected_etag="v1")
    assert store.get_video(vid).status == 2
    with pytest.raises(NotFoundError):
        store.replace_video(_rec("absent-" + vid, etag="x"), expected_etag="y")
    assert store.get_video("absent-" + vid) is None  # a failed CAS creates nothing
    # the listing index follows the status
    assert [r.video_id for r in store.list_channel_videos(channel, 10, None, 2)[0]] == [vid]
    assert store.list_channel_videos(channel, 10, None, 1)[0] == []


def test_scylla_concurrent_replacements_one_winner(store):
    vid = _uid()
    channel = "c" + _uid()
    store.create_video(_rec(vid, channel=channel, etag="base", status=1))
    outcomes: list = []

    def attempt(i):
        try:
            store.replace_video(_rec(vid, channel=channel, status=10 + i, etag=f"w{i}"), expected_etag="base")
            outcomes.append(("won", i))
        except ConflictError:
            outcomes.append(("lost", i))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for what, i in outcomes if what == "won"]
    assert len(winners) == 1 and len(outcomes) == 4
    final = store.get_video(vid)
    assert final.etag == f"w{winners[0]}" and final.status == 10 + winners[0]
    listed = store.list_channel_videos(channel, 10, None, final.status)[0]
    assert [r.video_id for r in listed] == [vid]


def test_scylla_listing_newest_first_paged_and_filtered(store):
    channel = "c" + _uid()
    ids = [f"{i:02d}-{_uid()}" for i in range(11)]
    for i, vid in enumerate(ids):
        store.create_video(_rec(vid, channel=channel, ts=1000 + i, status=3 if i % 3 == 0 else 2))
    # two videos with the same create time: ordered by id, still paged exactly once
    twin_a, twin_b = "zz-a-" + _uid(), "zz-b-" + _uid()
    store.create_video(_rec(twin_a, channel=channel, ts=2000, status=2))
    store.create_video(_rec(twin_b, channel=channel, ts=2000, status=2))
    expected = [twin_b, twin_a] + list(reversed(ids))

    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = store.list_channel_videos(channel, 4, cursor, None)
        assert len(page) <= 4
        seen += [r.video_id for r in page]
        pages += 1
        if not cursor:
            break
        json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))  # opaque, but base64 json
    assert seen == expected and pages == 4

    ready = [ids[i] for i in (9, 6, 3, 0)]
    seen, cursor = [], None
    while True:
        page, cursor = store.list_channel_videos(channel, 1, cursor, 3)
        seen += [r.video_id for r in page]
        assert all(r.status == 3 for r in page)
        if not cursor:
            break
    assert seen == ready
    assert [r.video_id for r in store.list_channel_videos(channel, 100, None, 3)[0]] == ready
    assert store.list_channel_videos("empty-" + _uid(), 10, None, None) == ([], None)
    with pytest.raises(ValueError):
        store.list_channel_videos(channel, 10, "not-a-cursor!", None)


def test_scylla_duplicate_create_repairs_a_missing_index_row(store):
    # a writer that died between the video insert and the index write
    vid, channel = _uid(), "c" + _uid()
    store._session.execute(
        f"INSERT INTO {store.cfg.keyspace}.videos (video_id, channel_id, status, create_time_us, etag, payload) "
        "VALUES (%s, %s, 3, 42, 'e1', 0x00) IF NOT EXISTS", (vid, channel))
    assert store.list_channel_videos(channel, 10, None, None) == ([], None)
    with pytest.raises(AlreadyExistsError):
        store.create_video(_rec(vid, channel=channel, ts=42, status=3))  # the retry
    assert [r.video_id for r in store.list_channel_videos(channel, 10, None, 3)[0]] == [vid]


def test_scylla_channels(store):
    cid = "ch" + _uid()
    assert store.get_channel(cid) is None
    store.create_channel(ChannelRecord(cid, "Cooking with Ada", "ada"))
    assert store.get_channel(cid) == ChannelRecord(cid, "Cooking with Ada", "ada")
    with pytest.raises(AlreadyExistsError):
        store.create_channel(ChannelRecord(cid, "Baking with Bob", "bob"))
    assert store.get_channel(cid) == ChannelRecord(cid, "Cooking with Ada", "ada")


def test_scylla_migrate_is_idempotent(real_servers):
    from longtail_common.adapters.scylla_metadata import MIGRATIONS, ScyllaMetadataStore, migrate

    cfg = dataclasses.replace(real_servers["config"].scylla, keyspace="mig_" + _uid())
    assert migrate(cfg) == [v for v, _, _ in MIGRATIONS]
    assert migrate(cfg) == []
    s = ScyllaMetadataStore(cfg)  # migrates again on open: still fine
    try:
        s.create_video(_rec("m-" + _uid()))
        rows = s._session.execute(f"SELECT version FROM {cfg.keyspace}.schema_migrations")
        assert sorted(r.version for r in rows) == [v for v, _, _ in MIGRATIONS]
        s._session.execute(f"DROP KEYSPACE {cfg.keyspace}")
    finally:
        s.close()


def test_migrate_command_on_the_services_config(real_servers):
    """`longtail metadata migrate --config DIR/longtail.toml` (the file `services start`
    writes) creates the schema, and says so; a second run changes nothing."""
    import subprocess
    import sys

    if "config_path" not in real_servers:
        pytest.skip("java test servers only (they write longtail.toml)")
    keyspace = "cli_" + _uid()
    env = dict(os.environ, LONGTAIL_SCYLLA__KEYSPACE=keyspace)
    env.pop("LONGTAIL_CONFIG_JSON", None)
    argv = [sys.executable, "-m", "longtail_cli.cli", "metadata", "migrate", "--config",
            str(real_servers["config_path"])]
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and "applied schema versions 1" in first.stdout, first.stderr
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "up to date" in second.stdout, second.stderr
    store = make_real_metadata_store(real_servers, keyspace=keyspace)
    try:
        store._session.execute(f"DROP KEYSPACE {keyspace}")
    finally:
        store.close()


def test_scylla_consistency_and_replication_are_configurable():
    """No server needed: what the driver would use. LWT (IF NOT EXISTS / IF etag = ?) gets
    LOCAL_SERIAL under LOCAL_* consistencies, SERIAL otherwise."""
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT

    from longtail_common.adapters import scylla_metadata
    from longtail_common.config import ScyllaConfig

    default = ScyllaConfig()
    assert default.consistency == "LOCAL_QUORUM"
    profile = scylla_metadata.connect(default).profile_manager.profiles[EXEC_PROFILE_DEFAULT]
    assert profile.consistency_level == ConsistencyLevel.LOCAL_QUORUM
    assert profile.serial_consistency_level == ConsistencyLevel.LOCAL_SERIAL
    assert type(profile.load_balancing_policy).__name__ == "TokenAwarePolicy"
    quorum = scylla_metadata.connect(ScyllaConfig(consistency="quorum")).profile_manager.profiles[EXEC_PROFILE_DEFAULT]
    assert (quorum.consistency_level, quorum.serial_consistency_level) == (ConsistencyLevel.QUORUM,
                                                                           ConsistencyLevel.SERIAL)
    with pytest.raises(ValueError, match="consistency"):
        scylla_metadata.connect(ScyllaConfig(consistency="MOSTLY"))
    # The keyspace is created with the configured replication, verbatim.
    executed = []

    class FakeSession:  # records CQL; the real server run is test_scylla_migrate_is_idempotent
        def execute(self, stmt, *args):
            executed.append(str(getattr(stmt, "query_string", stmt)))
            return []

        def wait_for_schema_agreement(self, wait_time):
            return True

    nts = "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 3}"
    scylla_metadata.migrate(ScyllaConfig(keyspace="prod", replication=nts), session=FakeSession())
    assert f"CREATE KEYSPACE IF NOT EXISTS prod WITH replication = {nts}" in executed
    with pytest.raises(ValueError, match="replication"):
        scylla_metadata.migrate(ScyllaConfig(replication="{'class': 'X'}; DROP KEYSPACE y"), session=FakeSession())
    source = pathlib.Path(scylla_metadata.__file__).read_text()
    assert "IF NOT EXISTS\")" in source and "IF etag = ?" in source  # create and CAS are LWTs


def test_scylla_unreachable_raises_unavailable(real_servers):
    from longtail_common.adapters.scylla_metadata import ScyllaMetadataStore

    cfg = dataclasses.replace(real_servers["config"].scylla, port=free_port())
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        ScyllaMetadataStore(cfg)
    assert time.monotonic() - started < 30


# ---------------------------------------------------------------------------------------
# S3 (S3Proxy here)


@pytest.fixture
def objects(real_servers):
    store = make_real_object_store(real_servers)
    assert isinstance(store, ObjectStore)
    store.ensure_bucket("media")
    return store


def _prefix():
    return "videos/" + uuid.uuid4().hex[:10]


def test_s3_put_get_stat_delete(objects):
    key = _prefix() + "/h264/720p/playlist.m3u8"
    assert objects.stat("media", key) is None
    objects.put_bytes("media", key, b"#EXTM3U\n")
    assert objects.get_bytes("media", key) == b"#EXTM3U\n"
    info = objects.stat("media", key)
    assert info.size == 8 and info.content_type == "application/vnd.apple.mpegurl" and info.etag
    objects.put_bytes("media", key + ".json", b"{}", content_type="application/json")
    assert objects.stat("media", key + ".json").content_type == "application/json"
    objects.delete("media", key)
    objects.delete("media", key)  # idempotent
    assert objects.stat("media", key) is None
    with pytest.raises(NotFoundError):
        objects.get_bytes("media", key)


def test_s3_multipart_upload_stream_ranges_download(real_servers, tmp_path):
    from longtail_common.adapters.s3_objects import S3ObjectStore

    # 5 MiB parts (the S3 minimum) so a 12 MiB file goes multipart without a big file
    objects = S3ObjectStore(dataclasses.replace(real_servers["config"].s3, bucket_prefix=f"mp{_uid()[:6]}-"),
                            part_size=5 * 1024 * 1024)
    data = os.urandom(12 * 1024 * 1024 + 77)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    key = _prefix() + "/raw"
    objects.put_file("raw", key, str(src))  # bucket created on first put
    info = objects.stat("raw", key)
    assert info.size == len(data) and info.etag.endswith("-3")  # 3 parts
    chunks = list(objects.open_stream("raw", key))
    assert b"".join(chunks) == data and max(len(c) for c in chunks) <= 64 * 1024
    assert b"".join(objects.open_stream("raw", key, 100, 199)) == data[100:200]
    assert b"".join(objects.open_stream("raw", key, 5 * 1024 * 1024 - 3, 5 * 1024 * 1024 + 3)) == \
        data[5 * 1024 * 1024 - 3:5 * 1024 * 1024 + 4]
    assert b"".join(objects.open_stream("raw", key, len(data) - 10)) == data[-10:]
    assert b"".join(objects.open_stream("raw", key, len(data))) == b""
    out = tmp_path / "out.bin"
    objects.download_file("raw", key, str(out))
    assert out.read_bytes() == data
    with pytest.raises(NotFoundError):
        list(objects.open_stream("raw", key + "x"))
    with pytest.raises(NotFoundError):
        objects.download_file("raw", key + "x", str(tmp_path / "nothing"))


def test_s3_list_by_prefix(objects):
    p = _prefix()
    for k in ["a/1", "a/2", "b/1", "a/sub/3"]:
        objects.put_bytes("media", f"{p}/{k}", b"x")
    assert list(objects.list_keys("media", p + "/a/")) == [f"{p}/a/1", f"{p}/a/2", f"{p}/a/sub/3"]
    assert len(list(objects.list_keys("media", p + "/"))) == 4
    assert list(objects.list_keys("never-made", "")) == []


def test_s3_presigned_url_serves_bytes(objects):
    key = _prefix() + "/poster.jpg"
    objects.put_bytes("media", key, b"jpegbytes")
    url = objects.presigned_get_url("media", key, 60)
    assert url and "X-Amz-Signature" in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"jpegbytes"
        assert resp.headers["Content-Type"] == "image/jpeg"


def test_s3_region_buckets_and_bucket_names(objects):
    key = _prefix() + "/seg.ts"
    objects.put_bytes("edge-US", key, b"ts")  # capitals are not allowed in S3: mapped to lower case
    assert objects.get_bytes("edge-US", key) == b"ts"
    assert objects.bucket_name("edge-US").endswith("edge-us")
    with pytest.raises(InvalidKeyError):
        objects.ensure_bucket("a/b")


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/abs", "a//b", "a/./b", "a b", "", "a/"])
def test_s3_keys_cannot_escape(objects, bad):
    with pytest.raises(InvalidKeyError):
        objects.put_bytes("media", bad, b"x")
    with pytest.raises(InvalidKeyError):
        objects.get_bytes("media", bad)
    with pytest.raises(InvalidKeyError):
        objects.stat("media", bad)
    with pytest.raises(InvalidKeyError):
        objects.delete("media", bad)
    with pytest.raises(InvalidKeyError):
        objects.presigned_get_url("media", bad)


def test_s3_unreachable_raises_unavailable():
    from longtail_common.adapters.s3_objects import S3ObjectStore

    dead = S3ObjectStore(S3Config(endpoint=f"127.0.0.1:{free_port()}", access_key="a", secret_key="b"))
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        dead.put_bytes("media", "k", b"x")
    with pytest.raises(BackendUnavailableError):
        dead.stat("media", "k")
    assert time.monotonic() - started < 30


# ---------------------------------------------------------------------------------------
# Last: a broker restart (the session's broker comes back on the same ports and data)


def test_kafka_restart_keeps_data_and_offsets(bus, real_servers):
    topic = unique_topic("durable")
    bus.ensure_topics({topic: 2})
    producer = bus.producer()
    for i in range(6):
        producer.publish(topic, f"m{i}".encode(), key=f"k{i}".encode())
    producer.close()
    group = "restart-" + _uid()
    c = bus.consumer([topic], group)
    got = _poll_until(c, 6)
    assert len(got) == 6
    done = [m for m in got if m.value in (b"m0", b"m1", b"m2")]
    for m in sorted(done, key=lambda m: (m.partition, m.offset)):
        c.commit(m)
    c.close()
    bus.close()

    port = real_servers["kafka"].port
    server = restart_kafka(real_servers)
    assert server.port == port and server.alive()

    after = make_real_topic_bus(real_servers)
    try:
        # commit(m) covers m and everything before it in its partition
        committed: dict = {}
        for m in done:
            committed[m.partition] = max(committed.get(m.partition, 0), m.offset + 1)
        expected = sorted(m.value for m in got if m.offset >= committed.get(m.partition, 0))
        c2 = after.consumer([topic], group)
        redelivered = _poll_until(c2, len(expected), timeout_s=30)
        redelivered += c2.poll(timeout_s=1.0, max_records=50)
        c2.close()
        assert sorted(m.value for m in redelivered) == expected
        producer = after.producer()
        producer.publish(topic, b"after-restart", key=b"k0")
        producer.close()
    finally:
        after.close()
