from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from longtail.auth.v1 import access_pb2 as _access_pb2
from longtail.metadata.v1 import caption_pb2 as _caption_pb2
from longtail.metadata.v1 import video_pb2 as _video_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateCaptionRequest(_message.Message):
    __slots__ = ("video_id", "caption")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    caption: _caption_pb2.Caption
    def __init__(self, video_id: _Optional[str] = ..., caption: _Optional[_Union[_caption_pb2.Caption, _Mapping]] = ...) -> None: ...

class ListCaptionsRequest(_message.Message):
    __slots__ = ("video_id",)
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    def __init__(self, video_id: _Optional[str] = ...) -> None: ...

class ListCaptionsResponse(_message.Message):
    __slots__ = ("captions",)
    CAPTIONS_FIELD_NUMBER: _ClassVar[int]
    captions: _containers.RepeatedCompositeFieldContainer[_caption_pb2.Caption]
    def __init__(self, captions: _Optional[_Iterable[_Union[_caption_pb2.Caption, _Mapping]]] = ...) -> None: ...

class DeleteCaptionRequest(_message.Message):
    __slots__ = ("video_id", "language")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    language: str
    def __init__(self, video_id: _Optional[str] = ..., language: _Optional[str] = ...) -> None: ...

class GetVideoRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class BatchGetVideosRequest(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetVideosResponse(_message.Message):
    __slots__ = ("videos",)
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    videos: _containers.RepeatedCompositeFieldContainer[_video_pb2.Video]
    def __init__(self, videos: _Optional[_Iterable[_Union[_video_pb2.Video, _Mapping]]] = ...) -> None: ...

class ListVideosRequest(_message.Message):
    __slots__ = ("channel_id", "page_size", "page_token", "status", "include_non_public")
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_NON_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    channel_id: str
    page_size: int
    page_token: str
    status: _video_pb2.VideoStatus
    include_non_public: bool
    def __init__(self, channel_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., status: _Optional[_Union[_video_pb2.VideoStatus, str]] = ..., include_non_public: _Optional[bool] = ...) -> None: ...

class ListVideosResponse(_message.Message):
    __slots__ = ("videos", "next_page_token")
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    videos: _containers.RepeatedCompositeFieldContainer[_video_pb2.Video]
    next_page_token: str
    def __init__(self, videos: _Optional[_Iterable[_Union[_video_pb2.Video, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateVideoRequest(_message.Message):
    __slots__ = ("video",)
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    video: _video_pb2.Video
    def __init__(self, video: _Optional[_Union[_video_pb2.Video, _Mapping]] = ...) -> None: ...

class UpdateVideoRequest(_message.Message):
    __slots__ = ("video", "update_mask")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    video: _video_pb2.Video
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, video: _Optional[_Union[_video_pb2.Video, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteVideoRequest(_message.Message):
    __slots__ = ("id", "etag")
    ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    id: str
    etag: str
    def __init__(self, id: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class GetChannelRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CreateChannelRequest(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: _video_pb2.Channel
    def __init__(self, channel: _Optional[_Union[_video_pb2.Channel, _Mapping]] = ...) -> None: ...

class ListChannelsRequest(_message.Message):
    __slots__ = ("owner_account_id", "include_usage")
    OWNER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_USAGE_FIELD_NUMBER: _ClassVar[int]
    owner_account_id: str
    include_usage: bool
    def __init__(self, owner_account_id: _Optional[str] = ..., include_usage: _Optional[bool] = ...) -> None: ...

class ListChannelsResponse(_message.Message):
    __slots__ = ("channels", "usage")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[_video_pb2.Channel]
    usage: AccountUsage
    def __init__(self, channels: _Optional[_Iterable[_Union[_video_pb2.Channel, _Mapping]]] = ..., usage: _Optional[_Union[AccountUsage, _Mapping]] = ...) -> None: ...

class AccountUsage(_message.Message):
    __slots__ = ("stored_bytes", "uploads_last_day")
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    UPLOADS_LAST_DAY_FIELD_NUMBER: _ClassVar[int]
    stored_bytes: int
    uploads_last_day: int
    def __init__(self, stored_bytes: _Optional[int] = ..., uploads_last_day: _Optional[int] = ...) -> None: ...
