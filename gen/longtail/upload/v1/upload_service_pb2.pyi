import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from longtail.auth.v1 import access_pb2 as _access_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Upload(_message.Message):
    __slots__ = ("video_id", "offset", "length", "complete", "expire_time")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    offset: int
    length: int
    complete: bool
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, video_id: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., complete: _Optional[bool] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateUploadRequest(_message.Message):
    __slots__ = ("video_id", "length")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    length: int
    def __init__(self, video_id: _Optional[str] = ..., length: _Optional[int] = ...) -> None: ...

class GetUploadRequest(_message.Message):
    __slots__ = ("video_id",)
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    def __init__(self, video_id: _Optional[str] = ...) -> None: ...

class AppendUploadRequest(_message.Message):
    __slots__ = ("header", "data")
    class Header(_message.Message):
        __slots__ = ("video_id", "offset", "length")
        VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
        OFFSET_FIELD_NUMBER: _ClassVar[int]
        LENGTH_FIELD_NUMBER: _ClassVar[int]
        video_id: str
        offset: int
        length: int
        def __init__(self, video_id: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: AppendUploadRequest.Header
    data: bytes
    def __init__(self, header: _Optional[_Union[AppendUploadRequest.Header, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...
