import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from longtail.metadata.v1 import video_pb2 as _video_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ViewKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIEW_KIND_UNSPECIFIED: _ClassVar[ViewKind]
    VIEW_KIND_START: _ClassVar[ViewKind]
    VIEW_KIND_PROGRESS: _ClassVar[ViewKind]
    VIEW_KIND_COMPLETE: _ClassVar[ViewKind]

class VideoChange(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIDEO_CHANGE_UNSPECIFIED: _ClassVar[VideoChange]
    VIDEO_CHANGE_CREATED: _ClassVar[VideoChange]
    VIDEO_CHANGE_UPDATED: _ClassVar[VideoChange]
    VIDEO_CHANGE_DELETED: _ClassVar[VideoChange]
VIEW_KIND_UNSPECIFIED: ViewKind
VIEW_KIND_START: ViewKind
VIEW_KIND_PROGRESS: ViewKind
VIEW_KIND_COMPLETE: ViewKind
VIDEO_CHANGE_UNSPECIFIED: VideoChange
VIDEO_CHANGE_CREATED: VideoChange
VIDEO_CHANGE_UPDATED: VideoChange
VIDEO_CHANGE_DELETED: VideoChange

class TranscodeRequest(_message.Message):
    __slots__ = ("video_id", "raw_bucket", "raw_object_key", "request_time", "chunk", "add_codecs", "make_downloads", "automatic_captions", "make_audio_track")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    RAW_BUCKET_FIELD_NUMBER: _ClassVar[int]
    RAW_OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TIME_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    ADD_CODECS_FIELD_NUMBER: _ClassVar[int]
    MAKE_DOWNLOADS_FIELD_NUMBER: _ClassVar[int]
    AUTOMATIC_CAPTIONS_FIELD_NUMBER: _ClassVar[int]
    MAKE_AUDIO_TRACK_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    raw_bucket: str
    raw_object_key: str
    request_time: _timestamp_pb2.Timestamp
    chunk: TranscodeChunk
    add_codecs: _containers.RepeatedScalarFieldContainer[str]
    make_downloads: _containers.RepeatedCompositeFieldContainer[_video_pb2.Download]
    automatic_captions: bool
    make_audio_track: _video_pb2.AudioTrack
    def __init__(self, video_id: _Optional[str] = ..., raw_bucket: _Optional[str] = ..., raw_object_key: _Optional[str] = ..., request_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., chunk: _Optional[_Union[TranscodeChunk, _Mapping]] = ..., add_codecs: _Optional[_Iterable[str]] = ..., make_downloads: _Optional[_Iterable[_Union[_video_pb2.Download, _Mapping]]] = ..., automatic_captions: _Optional[bool] = ..., make_audio_track: _Optional[_Union[_video_pb2.AudioTrack, _Mapping]] = ...) -> None: ...

class TranscodeChunk(_message.Message):
    __slots__ = ("index", "count", "start_seconds", "duration_seconds")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    index: int
    count: int
    start_seconds: float
    duration_seconds: float
    def __init__(self, index: _Optional[int] = ..., count: _Optional[int] = ..., start_seconds: _Optional[float] = ..., duration_seconds: _Optional[float] = ...) -> None: ...

class TranscodeResult(_message.Message):
    __slots__ = ("video_id", "success", "failure_reason", "duration_seconds", "renditions", "thumbnails", "manifests", "worker_id", "added_codecs")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RENDITIONS_FIELD_NUMBER: _ClassVar[int]
    THUMBNAILS_FIELD_NUMBER: _ClassVar[int]
    MANIFESTS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDED_CODECS_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    success: bool
    failure_reason: str
    duration_seconds: float
    renditions: _containers.RepeatedCompositeFieldContainer[_video_pb2.Rendition]
    thumbnails: _containers.RepeatedCompositeFieldContainer[_video_pb2.Thumbnail]
    manifests: _containers.RepeatedCompositeFieldContainer[_video_pb2.StreamManifest]
    worker_id: str
    added_codecs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, video_id: _Optional[str] = ..., success: _Optional[bool] = ..., failure_reason: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., renditions: _Optional[_Iterable[_Union[_video_pb2.Rendition, _Mapping]]] = ..., thumbnails: _Optional[_Iterable[_Union[_video_pb2.Thumbnail, _Mapping]]] = ..., manifests: _Optional[_Iterable[_Union[_video_pb2.StreamManifest, _Mapping]]] = ..., worker_id: _Optional[str] = ..., added_codecs: _Optional[_Iterable[str]] = ...) -> None: ...

class VideoPublished(_message.Message):
    __slots__ = ("video_id", "channel_id", "title", "publish_time")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_TIME_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    channel_id: str
    title: str
    publish_time: _timestamp_pb2.Timestamp
    def __init__(self, video_id: _Optional[str] = ..., channel_id: _Optional[str] = ..., title: _Optional[str] = ..., publish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VideoChanged(_message.Message):
    __slots__ = ("video_id", "change_time", "change", "etag", "caption")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    change_time: _timestamp_pb2.Timestamp
    change: VideoChange
    etag: str
    caption: CaptionChanged
    def __init__(self, video_id: _Optional[str] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., change: _Optional[_Union[VideoChange, str]] = ..., etag: _Optional[str] = ..., caption: _Optional[_Union[CaptionChanged, _Mapping]] = ...) -> None: ...

class CaptionChanged(_message.Message):
    __slots__ = ("language", "automatic", "deleted")
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    AUTOMATIC_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    language: str
    automatic: bool
    deleted: bool
    def __init__(self, language: _Optional[str] = ..., automatic: _Optional[bool] = ..., deleted: _Optional[bool] = ...) -> None: ...

class VideoDeleted(_message.Message):
    __slots__ = ("video_id", "channel_id", "raw_object_key", "regions", "delete_time")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    RAW_OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    DELETE_TIME_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    channel_id: str
    raw_object_key: str
    regions: _containers.RepeatedScalarFieldContainer[str]
    delete_time: _timestamp_pb2.Timestamp
    def __init__(self, video_id: _Optional[str] = ..., channel_id: _Optional[str] = ..., raw_object_key: _Optional[str] = ..., regions: _Optional[_Iterable[str]] = ..., delete_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EdgeFillRequest(_message.Message):
    __slots__ = ("video_id", "region", "request_time")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TIME_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    region: str
    request_time: _timestamp_pb2.Timestamp
    def __init__(self, video_id: _Optional[str] = ..., region: _Optional[str] = ..., request_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ViewEvent(_message.Message):
    __slots__ = ("video_id", "region", "kind", "bytes_watched", "event_time", "view_kind", "startup_ms", "rebuffer_count", "rebuffer_ms", "ladder_position", "served_from")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BYTES_WATCHED_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    VIEW_KIND_FIELD_NUMBER: _ClassVar[int]
    STARTUP_MS_FIELD_NUMBER: _ClassVar[int]
    REBUFFER_COUNT_FIELD_NUMBER: _ClassVar[int]
    REBUFFER_MS_FIELD_NUMBER: _ClassVar[int]
    LADDER_POSITION_FIELD_NUMBER: _ClassVar[int]
    SERVED_FROM_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    region: str
    kind: str
    bytes_watched: int
    event_time: _timestamp_pb2.Timestamp
    view_kind: ViewKind
    startup_ms: int
    rebuffer_count: int
    rebuffer_ms: int
    ladder_position: int
    served_from: _video_pb2.ServedFrom
    def __init__(self, video_id: _Optional[str] = ..., region: _Optional[str] = ..., kind: _Optional[str] = ..., bytes_watched: _Optional[int] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., view_kind: _Optional[_Union[ViewKind, str]] = ..., startup_ms: _Optional[int] = ..., rebuffer_count: _Optional[int] = ..., rebuffer_ms: _Optional[int] = ..., ladder_position: _Optional[int] = ..., served_from: _Optional[_Union[_video_pb2.ServedFrom, str]] = ...) -> None: ...

class CaptionsReady(_message.Message):
    __slots__ = ("video_id", "language", "kind", "label", "caption_id", "automatic", "ready_time")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CAPTION_ID_FIELD_NUMBER: _ClassVar[int]
    AUTOMATIC_FIELD_NUMBER: _ClassVar[int]
    READY_TIME_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    language: str
    kind: str
    label: str
    caption_id: str
    automatic: bool
    ready_time: _timestamp_pb2.Timestamp
    def __init__(self, video_id: _Optional[str] = ..., language: _Optional[str] = ..., kind: _Optional[str] = ..., label: _Optional[str] = ..., caption_id: _Optional[str] = ..., automatic: _Optional[bool] = ..., ready_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
