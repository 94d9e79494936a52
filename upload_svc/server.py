"""gRPC UploadService: resumable appends into a staging directory, then hand-off."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import pathlib
import threading
from contextlib import contextmanager
from functools import partial

import grpc
from google.protobuf import field_mask_pb2

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail.upload.v1 import upload_service_pb2 as pb
from longtail.upload.v1 import upload_service_pb2_grpc as pb_grpc
from longtail_common.config import Config, load_config
from longtail_common.grpc_server import client_channel
from longtail_common.ports import RAW_BUCKET, TOPIC_TRANSCODE_REQUESTS, InvalidKeyError, validate_id
from longtail_common.runtime import setup_logging
from longtail_common.service import Background, Backends, Needs, Running, run_service
from upload_svc.janitor import RawJanitor

log = logging.getLogger("upload_svc")

S = video_pb2.VideoStatus


class UploadError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class StagingArea:
    """Partial uploads on local disk: `<id>.part` (the bytes) and `<id>.json` (length, state).

    The offset is the size of the part file, so it survives restarts; an flock on the
    part file serialises appends even across several upload_svc processes.
    """

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def part(self, video_id: str) -> pathlib.Path:
        return self.root / f"{video_id}.part"

    def state_path(self, video_id: str) -> pathlib.Path:
        return self.root / f"{video_id}.json"

    def exists(self, video_id: str) -> bool:
        return self.state_path(video_id).exists()

    def read_state(self, video_id: str) -> dict:
        return json.loads(self.state_path(video_id).read_text())

    def write_state(self, video_id: str, state: dict) -> None:
        tmp = self.state_path(video_id).with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_path(video_id))

    def offset(self, video_id: str) -> int:
        try:
            return self.part(video_id).stat().st_size
        except FileNotFoundError:
            return 0

    @contextmanager
    def locked(self, video_id: str):
        with open(self.part(video_id), "ab") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield fh
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class UploadServicer(pb_grpc.UploadServiceServicer):
    def __init__(self, cfg: Config, objects, producer, metadata: mpb_grpc.MetadataServiceStub):
        self.cfg = cfg
        self.objects = objects
        self.producer = producer
        self.metadata = metadata
        self.staging = StagingArea(cfg.data_path / "staging")
        self.max_bytes = cfg.platform.max_upload_bytes
        self._finalize_lock = threading.Lock()

    # -- RPCs ----------------------------------------------------------------------
    def CreateUpload(self, request, context):
        video_id = self._valid_id(request.video_id, context)
        length = request.length if request.HasField("length") else None
        if length is not None and not 0 <= length <= self.max_bytes:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"upload length must be between 0 and {self.max_bytes} bytes")
        if not self.staging.exists(video_id):
            self.staging.part(video_id).touch()
            self.staging.write_state(video_id, {"length": length, "finalized": False})
        if self._is_complete(video_id, self.staging.read_state(video_id)):
            self._finalize(video_id)  # an empty file is complete at creation
        return self._describe(video_id)

    def GetUpload(self, request, context):
        video_id = self._valid_id(request.video_id, context)
        if not self.staging.exists(video_id):
            context.abort(grpc.StatusCode.NOT_FOUND, f"no upload for video {video_id}")
        state = self.staging.read_state(video_id)
        if self._is_complete(video_id, state) and not state.get("finalized"):
            # A previous hand-off was interrupted (crash between steps): finish it now.
            self._finalize(video_id)
        return self._describe(video_id)

    def AppendUpload(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be the header")
        header = first.header
        video_id = self._valid_id(header.video_id, context)
        if not self.staging.exists(video_id):
            context.abort(grpc.StatusCode.NOT_FOUND, f"no upload for video {video_id}")
        with self.staging.locked(video_id) as fh:
            state = self.staging.read_state(video_id)
            if state.get("finalized"):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "upload already complete")
            offset = self.staging.offset(video_id)
            if header.offset != offset:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"offset mismatch: upload is at {offset}, request at {header.offset}")
            if header.HasField("length"):
                if state["length"] is not None and state["length"] != header.length:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "upload length cannot change once set")
                if header.length > self.max_bytes or header.length < offset:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid upload length {header.length}")
                state["length"] = header.length
                self.staging.write_state(video_id, state)
            length = state["length"]
            written = offset
            try:
                for msg in request_iterator:
                    data = msg.data
                    if length is not None and written + len(data) > length:
                        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"data beyond the declared length {length}")
                    if length is None and written + len(data) > self.max_bytes:
                        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"upload larger than {self.max_bytes} bytes")
                    fh.write(data)
                    written += len(data)
            finally:
                # Whatever arrived is kept (tus semantics): a dropped connection resumes here.
                fh.flush()
                os.fsync(fh.fileno())
        if self._is_complete(video_id, self.staging.read_state(video_id)):
            self._finalize(video_id)
        return self._describe(video_id)

    # -- helpers -------------------------------------------------------------------
    def _valid_id(self, video_id: str, context) -> str:
        try:
            return validate_id(video_id, "video id")
        except InvalidKeyError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def _is_complete(self, video_id: str, state: dict) -> bool:
        return state["length"] is not None and self.staging.offset(video_id) == state["length"]

    def _describe(self, video_id: str) -> pb.Upload:
        state = self.staging.read_state(video_id)
        offset = self.staging.offset(video_id) if not state.get("finalized") else state["length"]
        upload = pb.Upload(video_id=video_id, offset=offset, complete=bool(state.get("finalized")))
        if state["length"] is not None:
            upload.length = state["length"]
        return upload

    def _finalize(self, video_id: str) -> None:
        """raw bucket <- staged file; metadata -> PROCESSING; publish TranscodeRequest.

        Every step is idempotent, so an interrupted hand-off is simply run again.
        """
        with self._finalize_lock:
            state = self.staging.read_state(video_id)
            if state.get("finalized"):
                return
            raw_key = f"{video_id}/original"
            self.objects.put_file(RAW_BUCKET, raw_key, str(self.staging.part(video_id)))
            video = self.metadata.GetVideo(mpb.GetVideoRequest(id=video_id), timeout=30)
            if video.status == S.VIDEO_STATUS_UPLOADING:
                patch = video_pb2.Video(
                    id=video_id, etag=video.etag, status=S.VIDEO_STATUS_PROCESSING,
                    raw_object_key=raw_key, size_bytes=state["length"],
                )
                self.metadata.UpdateVideo(
                    mpb.UpdateVideoRequest(
                        video=patch, update_mask=field_mask_pb2.FieldMask(paths=["status", "raw_object_key", "size_bytes"])
                    ),
                    timeout=30,
                )
            request = events_pb2.TranscodeRequest(video_id=video_id, raw_bucket=RAW_BUCKET, raw_object_key=raw_key)
            request.request_time.GetCurrentTime()
            self.producer.publish(TOPIC_TRANSCODE_REQUESTS, request.SerializeToString(), key=video_id.encode())
            state["finalized"] = True
            self.staging.write_state(video_id, state)
            self.staging.part(video_id).unlink(missing_ok=True)
            log.info("upload of %s complete (%d bytes); transcode requested", video_id, state["length"])


def serve(cfg: Config) -> None:
    def start(backends: Backends) -> Running:
        """The servicer, and the janitor that deletes raw originals once they are transcoded."""
        producer = backends.bus.producer()
        metadata = mpb_grpc.MetadataServiceStub(client_channel(cfg, "metadata"))
        janitor = RawJanitor(backends.objects, metadata, cfg.platform.raw_retention_s)
        sweep_interval_s = max(1, cfg.platform.raw_sweep_interval_s)
        return Running(UploadServicer(cfg, backends.objects, producer, metadata),
                       background=[Background("raw-janitor", partial(janitor.run, interval_s=sweep_interval_s))],
                       close=[producer.close, backends.bus.close])

    run_service(cfg, name="longtail.upload.v1.UploadService", address=cfg.services.upload,
                add_servicer=pb_grpc.add_UploadServiceServicer_to_server,
                needs=Needs(bucket=RAW_BUCKET, topics=True), start=start)


def main() -> None:
    setup_logging("upload_svc")
    serve(load_config())
