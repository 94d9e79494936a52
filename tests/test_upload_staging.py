"""upload_svc keeps no state of its own: two replicas over one object store serve the
appends of one upload in turn, refuse concurrent ones, and hand each finished upload off
exactly once; abandoned uploads expire with their videos (metadata_svc in-process on
SQLite; the object store on the filesystem, and on S3Proxy with real 5 MiB parts under
`-m real`)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import pytest

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail.upload.v1 import upload_service_pb2 as upb
from longtail.upload.v1 import upload_service_pb2_grpc as upb_grpc
from longtail_cli.launcher import free_port
from longtail_common.adapters.fs_objects import FilesystemObjectStore
from longtail_common.adapters.sqlite_metadata import SqliteMetadataStore
from longtail_common.config import Config
from tests.auth_helpers import service_channel
from longtail_common.grpc_server import wait_for_serving
from longtail_common.ports import MULTIPART_MIN_PART_BYTES, RAW_BUCKET, STAGING_BUCKET, TOPIC_TRANSCODE_REQUESTS
from metadata_svc.server import MetadataServicer
from upload_svc.expiry import UploadExpiry
from upload_svc.server import UploadServicer
from upload_svc.staging import Staging

S = video_pb2.VideoStatus


class RecordingProducer:
    def __init__(self, fail_first: int = 0):
        self.published: list[tuple[str, bytes]] = []
        self.fail_first = fail_first

    def publish(self, topic, value, key=None, headers=None, partition=None):
        if self.fail_first:
            self.fail_first -= 1
            raise ConnectionError("bus down")
        self.published.append((topic, value))

    def close(self):
        pass


def _serve(servicer, add) -> tuple[grpc.Server, grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    add(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, grpc.insecure_channel(f"127.0.0.1:{port}")


@pytest.fixture(params=["fs", pytest.param("s3", marks=pytest.mark.real)])
def objects(request, tmp_path):
    if request.param == "fs":
        return FilesystemObjectStore(tmp_path / "objects")
    from tests.real_servers import make_real_object_store

    return make_real_object_store(request.getfixturevalue("real_servers"))


@pytest.fixture()
def platform(tmp_path, objects):
    """metadata_svc and two upload_svc replicas sharing `objects`; small parts on fs."""
    part_bytes = 10 if isinstance(objects, FilesystemObjectStore) else MULTIPART_MIN_PART_BYTES
    meta_server, meta_channel = _serve(MetadataServicer(SqliteMetadataStore(tmp_path / "m.sqlite3")),
                                       mpb_grpc.add_MetadataServiceServicer_to_server)
    meta = mpb_grpc.MetadataServiceStub(meta_channel)
    producer = RecordingProducer()
    cfg = Config(data_dir=str(tmp_path / "data"))
    skew = [0.0]  # seconds added to the replicas' clock

    def clock() -> float:
        return time.time() + skew[0]

    servers, replicas = [meta_server], []
    for _ in range(2):
        staging = Staging(objects, lease_s=1.0, part_bytes=part_bytes, clock=clock)
        server, channel = _serve(UploadServicer(cfg, objects, producer, meta, staging),
                                 upb_grpc.add_UploadServiceServicer_to_server)
        servers.append(server)
        replicas.append(upb_grpc.UploadServiceStub(channel))
    yield {"meta": meta, "replicas": replicas, "objects": objects, "producer": producer, "part_bytes": part_bytes,
           "skew": skew, "clock": clock, "cfg": cfg}
    for server in servers:
        server.stop(0)


def _create(platform, vid: str, length: int | None) -> None:
    platform["meta"].CreateVideo(mpb.CreateVideoRequest(
        video=video_pb2.Video(id=vid, title=vid, channel=video_pb2.Channel(id="c"))))
    request = upb.CreateUploadRequest(video_id=vid)
    if length is not None:
        request.length = length
    platform["replicas"][0].CreateUpload(request)


def _append(stub, vid: str, offset: int, *chunks: bytes, length: int | None = None):
    header = upb.AppendUploadRequest.Header(video_id=vid, offset=offset)
    if length is not None:
        header.length = length
    mib = 1 << 20  # messages of at most 1 MiB, as the gateway sends them
    return stub.AppendUpload(iter([upb.AppendUploadRequest(header=header)]
                                  + [upb.AppendUploadRequest(data=c[i:i + mib]) for c in chunks
                                     for i in range(0, max(len(c), 1), mib)]))


def _transcode_requests(platform) -> list[str]:
    return [events_pb2.TranscodeRequest.FromString(v).video_id for t, v in platform["producer"].published
            if t == TOPIC_TRANSCODE_REQUESTS]


def test_any_replica_takes_any_append(platform):
    part = platform["part_bytes"]
    data = bytes(i % 251 for i in range(2 * part + part // 2 + 3))
    _create(platform, "v1", len(data))
    a, b = platform["replicas"]
    # Appends smaller than a part, one crossing two parts, alternating replicas.
    cuts = [0, 3, part // 2, part + 1, 2 * part + 2, len(data)]
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:])):
        stub = (a, b)[i % 2]
        up = _append(stub, "v1", lo, data[lo:hi])
        assert up.offset == hi
        other = (b, a)[i % 2].GetUpload(upb.GetUploadRequest(video_id="v1"))
        assert other.offset == hi and other.length == len(data)
    final = b.GetUpload(upb.GetUploadRequest(video_id="v1"))
    assert final.complete and final.offset == len(data) and not final.HasField("expire_time")
    assert platform["objects"].get_bytes(RAW_BUCKET, "v1/original") == data
    video = platform["meta"].GetVideo(mpb.GetVideoRequest(id="v1"))
    assert video.status == S.VIDEO_STATUS_PROCESSING and video.size_bytes == len(data)
    assert _transcode_requests(platform) == ["v1"]
    assert list(platform["objects"].list_keys(STAGING_BUCKET, "v1/")) == ["v1/upload.json"]  # no tail left
    with pytest.raises(grpc.RpcError) as err:
        _append(a, "v1", len(data), b"x")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "already complete" in err.value.details()


def test_same_errors_and_limits_as_before(platform):
    a, b = platform["replicas"]
    _create(platform, "v2", 5)
    with pytest.raises(grpc.RpcError) as err:
        _append(b, "v2", 3, b"abc")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "offset mismatch" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        _append(a, "v2", 0, b"abc", b"def")  # the first chunk is kept, the one overflowing is not
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "beyond the declared length" in err.value.details()
    assert b.GetUpload(upb.GetUploadRequest(video_id="v2")).offset == 3
    with pytest.raises(grpc.RpcError) as err:
        _append(b, "v2", 3, b"de", length=7)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "cannot change" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        a.GetUpload(upb.GetUploadRequest(video_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # Deferred length, set by a later append; an empty upload is complete at creation.
    _create(platform, "v3", None)
    assert not _append(a, "v3", 0, b"hello").HasField("length")
    assert _append(b, "v3", 5, b"!", length=6).complete
    _create(platform, "v4", 0)
    assert a.GetUpload(upb.GetUploadRequest(video_id="v4")).complete
    assert platform["objects"].get_bytes(RAW_BUCKET, "v3/original") == b"hello!"
    assert platform["objects"].get_bytes(RAW_BUCKET, "v4/original") == b""
    assert sorted(_transcode_requests(platform)) == ["v3", "v4"]


def test_concurrent_append_is_refused(platform):
    a, b = platform["replicas"]
    _create(platform, "v5", 8)
    release = threading.Event()

    def stalling():
        yield upb.AppendUploadRequest(header=upb.AppendUploadRequest.Header(video_id="v5", offset=0))
        yield upb.AppendUploadRequest(data=b"abcd")
        release.wait(10)
        yield upb.AppendUploadRequest(data=b"ef")

    first = a.AppendUpload.future(stalling())
    staging, deadline = Staging(platform["objects"], lease_s=1.0), time.monotonic() + 5
    while not staging.load("v5").lease_holder and time.monotonic() < deadline:
        time.sleep(0.02)  # until the first append holds the upload
    assert _code(lambda: _append(b, "v5", 0, b"zz")) == grpc.StatusCode.ABORTED
    # A holder that receives nothing for longer than its lease can be taken over (a
    # client retrying through another replica must not wait on a dead connection)...
    time.sleep(1.2)
    assert _append(b, "v5", 0, b"zz").offset == 2
    release.set()
    with pytest.raises(grpc.RpcError) as err:  # ...and then stops without writing anything
        first.result(timeout=10)
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert _append(a, "v5", 2, b"cdefgh").complete
    assert platform["objects"].get_bytes(RAW_BUCKET, "v5/original") == b"zzcdefgh"


def test_a_dead_appenders_lease_expires(platform):
    a, b = platform["replicas"]
    _create(platform, "v6", 4)
    Staging(platform["objects"], lease_s=1.0).acquire("v6")  # taken, never released: a killed replica
    with pytest.raises(grpc.RpcError) as err:
        _append(a, "v6", 0, b"ab")
    assert err.value.code() == grpc.StatusCode.ABORTED
    time.sleep(1.1)
    assert _append(b, "v6", 0, b"abcd").complete


def test_an_interrupted_hand_off_is_finished_once(platform):
    platform["producer"].fail_first = 1
    a, b = platform["replicas"]
    _create(platform, "v7", 3)
    with pytest.raises(grpc.RpcError):
        _append(a, "v7", 0, b"xyz")  # stored, but the transcode request could not be sent
    assert _transcode_requests(platform) == []
    up = b.GetUpload(upb.GetUploadRequest(video_id="v7"))  # any replica finishes the hand-off
    assert up.complete and up.offset == 3
    assert a.GetUpload(upb.GetUploadRequest(video_id="v7")).complete
    assert _transcode_requests(platform) == ["v7"]
    assert platform["objects"].get_bytes(RAW_BUCKET, "v7/original") == b"xyz"


def _code(call) -> grpc.StatusCode | None:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return None


def test_abandoned_uploads_expire_with_their_video(platform):
    a, b = platform["replicas"]
    meta, objects, part = platform["meta"], platform["objects"], platform["part_bytes"]
    _create(platform, "old", 3 * part)
    _append(a, "old", 0, b"o" * (part + 2))  # a part and a tail staged
    _create(platform, "done", 2)
    _append(a, "done", 0, b"ok")
    upload = b.GetUpload(upb.GetUploadRequest(video_id="old"))
    expected = time.time() + platform["cfg"].platform.upload_expiry_s
    assert abs(upload.expire_time.ToNanoseconds() / 1e9 - expected) < 60  # tus Upload-Expires
    platform["skew"][0] = 1000.0
    _create(platform, "fresh", 4)
    _append(a, "fresh", 0, b"f")

    sweeper = UploadExpiry(Staging(objects, lease_s=1.0, clock=platform["clock"]), meta, expiry_s=500,
                           clock=platform["clock"])
    result = sweeper.sweep()
    assert (result.expired, result.forgotten, result.kept) == (["old"], 1, 1)
    assert _code(lambda: meta.GetVideo(mpb.GetVideoRequest(id="old"))) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: a.GetUpload(upb.GetUploadRequest(video_id="old"))) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: _append(b, "old", part + 2, b"late")) == grpc.StatusCode.NOT_FOUND
    assert list(objects.list_keys(STAGING_BUCKET, "old/")) == [] and objects.stat(RAW_BUCKET, "old/original") is None
    # A finished upload only loses its bookkeeping: the video and the original stay.
    assert meta.GetVideo(mpb.GetVideoRequest(id="done")).status == S.VIDEO_STATUS_PROCESSING
    assert objects.get_bytes(RAW_BUCKET, "done/original") == b"ok"
    assert b.GetUpload(upb.GetUploadRequest(video_id="fresh")).offset == 1
    assert sweeper.sweep().expired == []


def test_expiry_spares_an_upload_being_appended(platform):
    _create(platform, "busy", 4)
    platform["skew"][0] = 1000.0
    lease = Staging(platform["objects"], lease_s=30.0, clock=platform["clock"]).acquire("busy")
    sweeper = UploadExpiry(Staging(platform["objects"], lease_s=1.0), platform["meta"], expiry_s=1,
                           clock=lambda: time.time() + 5000)
    assert sweeper.sweep().expired == []
    lease.release()
    assert sweeper.sweep().expired == ["busy"]


def test_delete_video_rpc_is_conditional(platform):
    meta = platform["meta"]
    _create(platform, "gone", 1)
    video = meta.GetVideo(mpb.GetVideoRequest(id="gone"))
    assert _code(lambda: meta.DeleteVideo(mpb.DeleteVideoRequest(id="gone", etag="stale"))) == grpc.StatusCode.ABORTED
    meta.DeleteVideo(mpb.DeleteVideoRequest(id="gone", etag=video.etag))
    assert _code(lambda: meta.GetVideo(mpb.GetVideoRequest(id="gone"))) == grpc.StatusCode.NOT_FOUND
    assert list(meta.ListVideos(mpb.ListVideosRequest(channel_id="c")).videos) == []
    assert _code(lambda: meta.DeleteVideo(mpb.DeleteVideoRequest(id="gone"))) == grpc.StatusCode.NOT_FOUND


def test_upload_service_expires_uploads_on_its_own(tmp_path):
    """The sweeper runs inside upload_svc: metadata_svc + upload_svc processes, a 1 s expiry."""
    cfg = Config(data_dir=str(tmp_path / "data"))
    cfg.platform.upload_expiry_s = 1
    cfg.platform.upload_sweep_interval_s = 1
    cfg.services.metadata = f"127.0.0.1:{free_port()}"
    cfg.services.upload = f"127.0.0.1:{free_port()}"
    cfg.mesh.tls = False  # started by hand and called in plain text
    env = dict(os.environ, **cfg.to_env())
    procs = [subprocess.Popen([sys.executable, "-m", m], env=env, stdout=open(tmp_path / f"{m}.log", "wb"),
                              stderr=subprocess.STDOUT) for m in ("metadata_svc", "upload_svc")]
    try:
        assert wait_for_serving(cfg.services.metadata, 30) and wait_for_serving(cfg.services.upload, 30)
        # Standing in for the gateway and the services: calls signed as a service.
        with service_channel(cfg, "metadata") as mch, service_channel(cfg, "upload") as uch:
            meta, up = mpb_grpc.MetadataServiceStub(mch), upb_grpc.UploadServiceStub(uch)
            meta.CreateVideo(mpb.CreateVideoRequest(
                video=video_pb2.Video(id="abandoned", title="t", channel=video_pb2.Channel(id="c"))))
            up.CreateUpload(upb.CreateUploadRequest(video_id="abandoned", length=5))
            _append(up, "abandoned", 0, b"12")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and _code(lambda: meta.GetVideo(mpb.GetVideoRequest(id="abandoned"))) \
                    is None:
                time.sleep(0.2)
            assert _code(lambda: meta.GetVideo(mpb.GetVideoRequest(id="abandoned"))) == grpc.StatusCode.NOT_FOUND, \
                (tmp_path / "upload_svc.log").read_text()[-2000:]
            assert _code(lambda: up.GetUpload(upb.GetUploadRequest(video_id="abandoned"))) == grpc.StatusCode.NOT_FOUND
            assert list(FilesystemObjectStore(tmp_path / "data" / "objects").list_keys(STAGING_BUCKET)) == []
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(20)
