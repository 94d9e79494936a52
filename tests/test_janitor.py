"""Raw uploads are temporary: upload_svc's janitor deletes the raw original of videos READY
for longer than platform.raw_retention_s and keeps FAILED ones (embedded backends,
metadata through its gRPC API)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail.upload.v1 import upload_service_pb2 as upb
from longtail.upload.v1 import upload_service_pb2_grpc as upb_grpc
from longtail_cli.launcher import free_port
from longtail_common.adapters.fs_objects import FilesystemObjectStore
from longtail_common.config import Config
from tests.auth_helpers import service_channel
from longtail_common.grpc_server import wait_for_serving
from longtail_common.ports import RAW_BUCKET
from upload_svc.janitor import RawJanitor
from tests.inprocess_metadata import inprocess_metadata

S = video_pb2.VideoStatus


@pytest.fixture()
def metadata(tmp_path):
    """The real MetadataService on SQLite, in-process."""
    with inprocess_metadata(tmp_path) as stub:
        yield stub


def _video(stub, vid: str, *statuses, publish_s: float | None = None, reason: str = "") -> None:
    stub.CreateVideo(mpb.CreateVideoRequest(video=video_pb2.Video(id=vid, title=vid, channel=video_pb2.Channel(id="c"))))
    for status in statuses:
        patch, paths = video_pb2.Video(id=vid, status=status), ["status"]
        if status == S.VIDEO_STATUS_READY:
            patch.publish_time.CopyFrom(Timestamp(seconds=int(publish_s)))
            paths.append("publish_time")
        if status == S.VIDEO_STATUS_FAILED:
            patch.failure_reason, paths = reason, paths + ["failure_reason"]
        stub.UpdateVideo(mpb.UpdateVideoRequest(video=patch, update_mask=field_mask_pb2.FieldMask(paths=paths)))


def test_sweep_deletes_only_old_ready_raw_files(tmp_path, metadata):
    now = 1_800_000_000.0
    objects = FilesystemObjectStore(tmp_path / "objects")
    P, R, F = S.VIDEO_STATUS_PROCESSING, S.VIDEO_STATUS_READY, S.VIDEO_STATUS_FAILED
    _video(metadata, "oldready", P, R, publish_s=now - 7200)
    _video(metadata, "newready", P, R, publish_s=now - 60)
    _video(metadata, "failed", P, F, reason="not a video")
    _video(metadata, "processing", P)
    for vid in ("oldready", "newready", "failed", "processing", "unknownvid"):
        objects.put_bytes(RAW_BUCKET, f"{vid}/original", b"raw bytes")
    objects.put_bytes(RAW_BUCKET, "oldready/sidecar.json", b"{}")

    janitor = RawJanitor(objects, metadata, retention_s=3600, clock=lambda: now)
    result = janitor.sweep()
    assert sorted(result.deleted) == ["oldready/original", "oldready/sidecar.json"]
    assert (result.kept_failed, result.kept_recent, result.kept_other) == (1, 1, 2)
    left = sorted(objects.list_keys(RAW_BUCKET))
    assert left == ["failed/original", "newready/original", "processing/original", "unknownvid/original"]
    assert janitor.sweep().deleted == []  # idempotent

    # Later, the newer READY one goes too; FAILED stays until an operator acts.
    later = RawJanitor(objects, metadata, retention_s=3600, clock=lambda: now + 3600)
    assert later.sweep().deleted == ["newready/original"]
    assert "failed/original" in set(objects.list_keys(RAW_BUCKET))


def test_negative_retention_is_refused(metadata, tmp_path):
    with pytest.raises(ValueError, match="raw_retention_s"):
        RawJanitor(FilesystemObjectStore(tmp_path), metadata, retention_s=-1)


def test_upload_service_sweeps_on_its_own(tmp_path):
    """The janitor runs inside upload_svc: metadata_svc + upload_svc processes, a tiny retention."""
    cfg = Config(data_dir=str(tmp_path / "data"))
    cfg.mesh.tls = False  # started by hand and called in plain text
    cfg.platform.raw_retention_s = 1
    cfg.platform.raw_sweep_interval_s = 1
    cfg.services.metadata = f"127.0.0.1:{free_port()}"
    cfg.services.upload = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, **cfg.to_env())
    procs = [subprocess.Popen([sys.executable, "-m", m], env=env, stdout=open(tmp_path / f"{m}.log", "wb"),
                              stderr=subprocess.STDOUT) for m in ("metadata_svc", "upload_svc")]
    try:
        assert wait_for_serving(cfg.services.metadata, 30) and wait_for_serving(cfg.services.upload, 30)
        # Standing in for the gateway and the services: calls signed as a service.
        with service_channel(cfg, "metadata") as mch, service_channel(cfg, "upload") as uch:
            meta, up = mpb_grpc.MetadataServiceStub(mch), upb_grpc.UploadServiceStub(uch)
            for vid in ("willgo", "stays"):
                meta.CreateVideo(mpb.CreateVideoRequest(
                    video=video_pb2.Video(id=vid, title=vid, channel=video_pb2.Channel(id="c"))))
                up.CreateUpload(upb.CreateUploadRequest(video_id=vid, length=5))
                up.AppendUpload(iter([upb.AppendUploadRequest(header=upb.AppendUploadRequest.Header(video_id=vid, offset=0)),
                                      upb.AppendUploadRequest(data=b"12345")]))
                assert meta.GetVideo(mpb.GetVideoRequest(id=vid)).status == S.VIDEO_STATUS_PROCESSING
            # Play placement/transcoder: one READY (now), one FAILED.
            _video_update(meta, "willgo", S.VIDEO_STATUS_READY)
            _video_update(meta, "stays", S.VIDEO_STATUS_FAILED)
            raw = tmp_path / "data" / "objects" / "raw"
            assert (raw / "willgo" / "original").exists()
            deadline = time.monotonic() + 20
            while (raw / "willgo" / "original").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not (raw / "willgo" / "original").exists(), (tmp_path / "upload_svc.log").read_text()[-2000:]
            assert (raw / "stays" / "original").read_bytes() == b"12345"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(20)


def _video_update(stub, vid: str, status) -> None:
    patch, paths = video_pb2.Video(id=vid, status=status), ["status"]
    if status == S.VIDEO_STATUS_READY:
        patch.publish_time.GetCurrentTime()
        paths.append("publish_time")
    stub.UpdateVideo(mpb.UpdateVideoRequest(video=patch, update_mask=field_mask_pb2.FieldMask(paths=paths)))
