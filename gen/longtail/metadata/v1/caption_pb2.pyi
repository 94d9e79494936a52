import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CaptionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAPTION_KIND_UNSPECIFIED: _ClassVar[CaptionKind]
    CAPTION_KIND_SUBTITLES: _ClassVar[CaptionKind]
    CAPTION_KIND_CAPTIONS: _ClassVar[CaptionKind]
CAPTION_KIND_UNSPECIFIED: CaptionKind
CAPTION_KIND_SUBTITLES: CaptionKind
CAPTION_KIND_CAPTIONS: CaptionKind

class Caption(_message.Message):
    __slots__ = ("name", "video_id", "language", "label", "kind", "automatic", "object_key", "playlist_object_key", "cue_count", "size_bytes", "create_time", "engine")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AUTOMATIC_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    PLAYLIST_OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    CUE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    name: str
    video_id: str
    language: str
    label: str
    kind: CaptionKind
    automatic: bool
    object_key: str
    playlist_object_key: str
    cue_count: int
    size_bytes: int
    create_time: _timestamp_pb2.Timestamp
    engine: str
    def __init__(self, name: _Optional[str] = ..., video_id: _Optional[str] = ..., language: _Optional[str] = ..., label: _Optional[str] = ..., kind: _Optional[_Union[CaptionKind, str]] = ..., automatic: _Optional[bool] = ..., object_key: _Optional[str] = ..., playlist_object_key: _Optional[str] = ..., cue_count: _Optional[int] = ..., size_bytes: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., engine: _Optional[str] = ...) -> None: ...
