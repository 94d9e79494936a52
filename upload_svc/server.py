"""gRPC UploadService: resumable appends staged in the object store (upload_svc/staging.py),
then the hand-off to transcoding. Any replica serves any call: nothing is kept locally.
Only the account that owns the video's channel reaches its upload."""
from __future__ import annotations

import logging
from functools import partial

import grpc
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail.upload.v1 import upload_service_pb2 as pb
from longtail.upload.v1 import upload_service_pb2_grpc as pb_grpc
from longtail_common.config import Config, load_config
from longtail_common.grpc_server import client_channel
from longtail_common.lag_exporter import GroupLagExporter
from longtail_common.mesh_identity import caller
from longtail_common.ports import (
    RAW_BUCKET,
    TOPIC_TRANSCODE_REQUESTS,
    InvalidKeyError,
    NotFoundError,
    validate_id,
)
from longtail_common.runtime import setup_logging
from longtail_common.service import Background, Backends, Needs, Running, run_service
from upload_svc.expiry import UploadExpiry
from upload_svc.janitor import RawJanitor
from upload_svc.staging import (
    COMPLETE,
    EXPIRED,
    STORED,
    UPLOADING,
    Appender,
    Busy,
    Lease,
    LeaseLost,
    Staging,
    UploadState,
    raw_key,
)

log = logging.getLogger("upload_svc")

S = video_pb2.VideoStatus


class UploadError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class UploadServicer(pb_grpc.UploadServiceServicer):
    def __init__(self, cfg: Config, objects, producer, metadata: mpb_grpc.MetadataServiceStub,
                 staging: Staging | None = None):
        self.cfg = cfg
        self.producer = producer
        self.metadata = metadata
        self.staging = staging or Staging(objects, lease_s=cfg.platform.upload_lease_s)
        self.max_bytes = cfg.platform.max_upload_bytes
        self.expiry_s = cfg.platform.upload_expiry_s

    # -- RPCs ----------------------------------------------------------------------
    def CreateUpload(self, request, context):
        video_id = self._valid_id(request.video_id, context)
        self._require_owner(video_id, context)
        length = request.length if request.HasField("length") else None
        if length is not None and not 0 <= length <= self.max_bytes:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"upload length must be between 0 and {self.max_bytes} bytes")
        self.staging.create(video_id, length)
        return self._current(video_id, context)  # an empty file is complete at creation

    def GetUpload(self, request, context):
        video_id = self._valid_id(request.video_id, context)
        self._require_owner(video_id, context)
        return self._current(video_id, context)

    def AppendUpload(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be the header")
        header = first.header
        video_id = self._valid_id(header.video_id, context)
        self._require_owner(video_id, context)
        try:
            lease = self._lease_for_append(video_id)
            try:
                offset = self._append(lease, header, request_iterator)
            finally:
                self._finish(lease)
        except UploadError as exc:
            context.abort(exc.code, str(exc))
        except LeaseLost as exc:
            context.abort(grpc.StatusCode.ABORTED, f"{exc}; ask for the offset and resume")
        return self._describe(video_id, lease.state, offset)

    # -- helpers -------------------------------------------------------------------
    def _require_owner(self, video_id: str, context) -> None:
        """An account reaches only the uploads of videos in its own channels (the account
        that created the video); admins and services reach any."""
        principal = caller()
        if principal is None or principal.is_service or principal.admin:
            return
        try:
            video = self.metadata.GetVideo(mpb.GetVideoRequest(id=video_id), timeout=15)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no upload for video {video_id}")
            raise
        if not principal.is_account or video.channel.owner_account_id != principal.account_id:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"the upload of video {video_id} belongs to another account")

    def _valid_id(self, video_id: str, context) -> str:
        try:
            return validate_id(video_id, "video id")
        except InvalidKeyError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def _lease_for_append(self, video_id: str) -> Lease:
        try:
            lease = self.staging.acquire(video_id)
        except NotFoundError:
            raise UploadError(grpc.StatusCode.NOT_FOUND, f"no upload for video {video_id}") from None
        except Busy as exc:
            raise UploadError(grpc.StatusCode.ABORTED, f"{exc}: ask for the offset and retry") from None
        if lease.state.phase != UPLOADING:
            lease.release()
            if lease.state.phase == EXPIRED:
                raise UploadError(grpc.StatusCode.NOT_FOUND, f"no upload for video {video_id} (expired)")
            raise UploadError(grpc.StatusCode.FAILED_PRECONDITION, "upload already complete")
        return lease

    def _append(self, lease: Lease, header, messages) -> int:
        """Checks the header against the stored offset and length, then takes the bytes in;
        returns the new offset."""
        progress = self.staging.progress(lease.video_id, lease.state)
        if header.offset != progress.offset:
            raise UploadError(grpc.StatusCode.FAILED_PRECONDITION,
                              f"offset mismatch: upload is at {progress.offset}, request at {header.offset}")
        length = lease.state.length
        if header.HasField("length"):
            if length is not None and length != header.length:
                raise UploadError(grpc.StatusCode.INVALID_ARGUMENT, "upload length cannot change once set")
            if header.length > self.max_bytes or header.length < progress.offset:
                raise UploadError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid upload length {header.length}")
            if length is None:
                lease.save(length=header.length)
                length = header.length
        appender = Appender(self.staging, lease, progress)
        try:
            for msg in messages:
                data = msg.data
                if length is not None and appender.offset + len(data) > length:
                    raise UploadError(grpc.StatusCode.INVALID_ARGUMENT, f"data beyond the declared length {length}")
                if length is None and appender.offset + len(data) > self.max_bytes:
                    raise UploadError(grpc.StatusCode.INVALID_ARGUMENT, f"upload larger than {self.max_bytes} bytes")
                appender.add(data)
        except LeaseLost:
            raise
        except BaseException:
            # Whatever arrived is kept (tus semantics): a dropped connection resumes here.
            appender.keep()
            raise
        if length is not None and appender.offset == length:
            appender.store()
            return length
        appender.keep()
        return appender.offset

    def _current(self, video_id: str, context) -> pb.Upload:
        """The upload as it stands, after finishing a store or hand-off that a crash (or an
        empty upload's creation) left to do, unless another request holds the upload."""
        state = self.staging.load(video_id)
        if state is None or state.phase == EXPIRED:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no upload for video {video_id}")
        offset = self.staging.progress(video_id, state).offset
        if state.phase == STORED or (state.phase == UPLOADING and offset == state.length):
            try:
                lease = self.staging.acquire(video_id)
            except (Busy, NotFoundError):
                return self._describe(video_id, state, offset)
            try:
                if lease.state.phase == UPLOADING:
                    Appender(self.staging, lease, self.staging.progress(video_id, lease.state)).store()
            finally:
                self._finish(lease)
            state = lease.state
        return self._describe(video_id, state, offset)

    def _describe(self, video_id: str, state: UploadState, offset: int) -> pb.Upload:
        upload = pb.Upload(video_id=video_id, offset=offset, complete=state.phase == COMPLETE)
        if state.length is not None:
            upload.length = state.length
        if state.phase == UPLOADING:
            expire = Timestamp()
            expire.FromNanoseconds(int((state.touched + self.expiry_s) * 1e9))
            upload.expire_time.CopyFrom(expire)
        return upload

    def _finish(self, lease: Lease) -> None:
        """Hands a stored upload off to transcoding; in any case releases the lease."""
        if lease.state.phase != STORED:
            lease.release()
            return
        try:
            self._hand_off(lease)
        except BaseException:
            lease.release()  # still STORED: the next GetUpload hands it off
            raise

    def _hand_off(self, lease: Lease) -> None:
        """metadata -> PROCESSING; publish the TranscodeRequest; phase -> complete (releasing
        the lease). Every step is idempotent, so an interrupted hand-off is simply run again."""
        video_id, length = lease.video_id, lease.state.length
        key = raw_key(video_id)
        video = self.metadata.GetVideo(mpb.GetVideoRequest(id=video_id), timeout=30)
        if video.status == S.VIDEO_STATUS_UPLOADING:
            patch = video_pb2.Video(
                id=video_id, etag=video.etag, status=S.VIDEO_STATUS_PROCESSING,
                raw_object_key=key, size_bytes=length,
            )
            self.metadata.UpdateVideo(
                mpb.UpdateVideoRequest(
                    video=patch, update_mask=field_mask_pb2.FieldMask(paths=["status", "raw_object_key", "size_bytes"])
                ),
                timeout=30,
            )
        request = events_pb2.TranscodeRequest(video_id=video_id, raw_bucket=RAW_BUCKET, raw_object_key=key)
        request.request_time.GetCurrentTime()
        self.producer.publish(TOPIC_TRANSCODE_REQUESTS, request.SerializeToString(), key=video_id.encode())
        lease.release(phase=COMPLETE)
        log.info("upload of %s complete (%d bytes); transcode requested", video_id, length)


def serve(cfg: Config) -> None:
    def start(backends: Backends) -> Running:
        """The servicer, the janitor that deletes raw originals once they are transcoded, the
        sweeper of abandoned uploads, and the consumer groups' lag exporter (this service
        consumes nothing, so it stays up whichever consumers stop)."""
        producer = backends.bus.producer()
        metadata = mpb_grpc.MetadataServiceStub(client_channel(cfg, "metadata"))
        janitor = RawJanitor(backends.objects, metadata, cfg.platform.raw_retention_s)
        staging = Staging(backends.objects, lease_s=cfg.platform.upload_lease_s)
        expiry = UploadExpiry(staging, metadata, cfg.platform.upload_expiry_s)
        return Running(UploadServicer(cfg, backends.objects, producer, metadata, staging),
                       background=[
                           Background("raw-janitor", partial(
                               janitor.run, interval_s=max(1, cfg.platform.raw_sweep_interval_s))),
                           Background("upload-expiry", partial(
                               expiry.run, interval_s=max(1, cfg.platform.upload_sweep_interval_s))),
                           Background("group-lag", GroupLagExporter(backends.bus).run),
                       ],
                       close=[producer.close, backends.bus.close])

    run_service(cfg, name="longtail.upload.v1.UploadService", address=cfg.services.upload,
                add_servicer=pb_grpc.add_UploadServiceServicer_to_server,
                needs=Needs(bucket=RAW_BUCKET, topics=True), start=start)


def main() -> None:
    setup_logging("upload_svc")
    serve(load_config())
