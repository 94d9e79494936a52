from longtail.auth.v1 import access_pb2 as _access_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetWorkerStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerStatus(_message.Message):
    __slots__ = ("worker_id", "current_video_id", "jobs_done", "jobs_failed")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    JOBS_DONE_FIELD_NUMBER: _ClassVar[int]
    JOBS_FAILED_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    current_video_id: str
    jobs_done: int
    jobs_failed: int
    def __init__(self, worker_id: _Optional[str] = ..., current_video_id: _Optional[str] = ..., jobs_done: _Optional[int] = ..., jobs_failed: _Optional[int] = ...) -> None: ...
