import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from longtail.metadata.v1 import caption_pb2 as _caption_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VideoStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIDEO_STATUS_UNSPECIFIED: _ClassVar[VideoStatus]
    VIDEO_STATUS_UPLOADING: _ClassVar[VideoStatus]
    VIDEO_STATUS_PROCESSING: _ClassVar[VideoStatus]
    VIDEO_STATUS_READY: _ClassVar[VideoStatus]
    VIDEO_STATUS_FAILED: _ClassVar[VideoStatus]

class Privacy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIVACY_UNSPECIFIED: _ClassVar[Privacy]
    PRIVACY_PUBLIC: _ClassVar[Privacy]
    PRIVACY_UNLISTED: _ClassVar[Privacy]
    PRIVACY_PRIVATE: _ClassVar[Privacy]

class ServedFrom(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVED_FROM_UNSPECIFIED: _ClassVar[ServedFrom]
    SERVED_FROM_ORIGIN: _ClassVar[ServedFrom]
    SERVED_FROM_CDN: _ClassVar[ServedFrom]

class AdPosition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AD_POSITION_UNSPECIFIED: _ClassVar[AdPosition]
    AD_POSITION_PRE_ROLL: _ClassVar[AdPosition]
    AD_POSITION_MID_ROLL: _ClassVar[AdPosition]
    AD_POSITION_POST_ROLL: _ClassVar[AdPosition]

class ThumbnailKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    THUMBNAIL_KIND_UNSPECIFIED: _ClassVar[ThumbnailKind]
    THUMBNAIL_KIND_POSTER: _ClassVar[ThumbnailKind]
    THUMBNAIL_KIND_STORYBOARD: _ClassVar[ThumbnailKind]
    THUMBNAIL_KIND_STORYBOARD_VTT: _ClassVar[ThumbnailKind]
    THUMBNAIL_KIND_PREVIEW: _ClassVar[ThumbnailKind]

class AudioTrackKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_TRACK_KIND_UNSPECIFIED: _ClassVar[AudioTrackKind]
    AUDIO_TRACK_KIND_MAIN: _ClassVar[AudioTrackKind]
    AUDIO_TRACK_KIND_DUB: _ClassVar[AudioTrackKind]
    AUDIO_TRACK_KIND_DESCRIPTION: _ClassVar[AudioTrackKind]

class AudioTrackStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_TRACK_STATUS_UNSPECIFIED: _ClassVar[AudioTrackStatus]
    AUDIO_TRACK_STATUS_PROCESSING: _ClassVar[AudioTrackStatus]
    AUDIO_TRACK_STATUS_READY: _ClassVar[AudioTrackStatus]
    AUDIO_TRACK_STATUS_FAILED: _ClassVar[AudioTrackStatus]

class DownloadKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOWNLOAD_KIND_UNSPECIFIED: _ClassVar[DownloadKind]
    DOWNLOAD_KIND_MP4: _ClassVar[DownloadKind]
    DOWNLOAD_KIND_M4A: _ClassVar[DownloadKind]

class DownloadPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOWNLOAD_POLICY_UNSPECIFIED: _ClassVar[DownloadPolicy]
    DOWNLOAD_POLICY_ALLOWED: _ClassVar[DownloadPolicy]
    DOWNLOAD_POLICY_DISABLED: _ClassVar[DownloadPolicy]

class ContainerFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTAINER_FORMAT_UNSPECIFIED: _ClassVar[ContainerFormat]
    CONTAINER_FORMAT_MPEGTS: _ClassVar[ContainerFormat]
    CONTAINER_FORMAT_FMP4: _ClassVar[ContainerFormat]
    CONTAINER_FORMAT_WEBM: _ClassVar[ContainerFormat]

class StreamProtocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_PROTOCOL_UNSPECIFIED: _ClassVar[StreamProtocol]
    STREAM_PROTOCOL_HLS: _ClassVar[StreamProtocol]
    STREAM_PROTOCOL_DASH: _ClassVar[StreamProtocol]

class PlacementPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLACEMENT_POLICY_UNSPECIFIED: _ClassVar[PlacementPolicy]
    PLACEMENT_POLICY_NEW_VIDEO_ORIGIN: _ClassVar[PlacementPolicy]
    PLACEMENT_POLICY_COLD_START_MLP: _ClassVar[PlacementPolicy]
    PLACEMENT_POLICY_COLD_START_GBM: _ClassVar[PlacementPolicy]
    PLACEMENT_POLICY_MODEL_MLP: _ClassVar[PlacementPolicy]
    PLACEMENT_POLICY_MODEL_GBM: _ClassVar[PlacementPolicy]
    PLACEMENT_POLICY_RULE_YESTERDAY: _ClassVar[PlacementPolicy]
    PLACEMENT_POLICY_FIRST_REQUEST_FILL: _ClassVar[PlacementPolicy]
VIDEO_STATUS_UNSPECIFIED: VideoStatus
VIDEO_STATUS_UPLOADING: VideoStatus
VIDEO_STATUS_PROCESSING: VideoStatus
VIDEO_STATUS_READY: VideoStatus
VIDEO_STATUS_FAILED: VideoStatus
PRIVACY_UNSPECIFIED: Privacy
PRIVACY_PUBLIC: Privacy
PRIVACY_UNLISTED: Privacy
PRIVACY_PRIVATE: Privacy
SERVED_FROM_UNSPECIFIED: ServedFrom
SERVED_FROM_ORIGIN: ServedFrom
SERVED_FROM_CDN: ServedFrom
AD_POSITION_UNSPECIFIED: AdPosition
AD_POSITION_PRE_ROLL: AdPosition
AD_POSITION_MID_ROLL: AdPosition
AD_POSITION_POST_ROLL: AdPosition
THUMBNAIL_KIND_UNSPECIFIED: ThumbnailKind
THUMBNAIL_KIND_POSTER: ThumbnailKind
THUMBNAIL_KIND_STORYBOARD: ThumbnailKind
THUMBNAIL_KIND_STORYBOARD_VTT: ThumbnailKind
THUMBNAIL_KIND_PREVIEW: ThumbnailKind
AUDIO_TRACK_KIND_UNSPECIFIED: AudioTrackKind
AUDIO_TRACK_KIND_MAIN: AudioTrackKind
AUDIO_TRACK_KIND_DUB: AudioTrackKind
AUDIO_TRACK_KIND_DESCRIPTION: AudioTrackKind
AUDIO_TRACK_STATUS_UNSPECIFIED: AudioTrackStatus
AUDIO_TRACK_STATUS_PROCESSING: AudioTrackStatus
AUDIO_TRACK_STATUS_READY: AudioTrackStatus
AUDIO_TRACK_STATUS_FAILED: AudioTrackStatus
DOWNLOAD_KIND_UNSPECIFIED: DownloadKind
DOWNLOAD_KIND_MP4: DownloadKind
DOWNLOAD_KIND_M4A: DownloadKind
DOWNLOAD_POLICY_UNSPECIFIED: DownloadPolicy
DOWNLOAD_POLICY_ALLOWED: DownloadPolicy
DOWNLOAD_POLICY_DISABLED: DownloadPolicy
CONTAINER_FORMAT_UNSPECIFIED: ContainerFormat
CONTAINER_FORMAT_MPEGTS: ContainerFormat
CONTAINER_FORMAT_FMP4: ContainerFormat
CONTAINER_FORMAT_WEBM: ContainerFormat
STREAM_PROTOCOL_UNSPECIFIED: StreamProtocol
STREAM_PROTOCOL_HLS: StreamProtocol
STREAM_PROTOCOL_DASH: StreamProtocol
PLACEMENT_POLICY_UNSPECIFIED: PlacementPolicy
PLACEMENT_POLICY_NEW_VIDEO_ORIGIN: PlacementPolicy
PLACEMENT_POLICY_COLD_START_MLP: PlacementPolicy
PLACEMENT_POLICY_COLD_START_GBM: PlacementPolicy
PLACEMENT_POLICY_MODEL_MLP: PlacementPolicy
PLACEMENT_POLICY_MODEL_GBM: PlacementPolicy
PLACEMENT_POLICY_RULE_YESTERDAY: PlacementPolicy
PLACEMENT_POLICY_FIRST_REQUEST_FILL: PlacementPolicy

class Channel(_message.Message):
    __slots__ = ("id", "name", "owner_account_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    owner_account_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., owner_account_id: _Optional[str] = ...) -> None: ...

class Thumbnail(_message.Message):
    __slots__ = ("kind", "object_key", "width", "height", "thumbnail_kind")
    KIND_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_KIND_FIELD_NUMBER: _ClassVar[int]
    kind: str
    object_key: str
    width: int
    height: int
    thumbnail_kind: ThumbnailKind
    def __init__(self, kind: _Optional[str] = ..., object_key: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., thumbnail_kind: _Optional[_Union[ThumbnailKind, str]] = ...) -> None: ...

class AdBreak(_message.Message):
    __slots__ = ("position", "offset_seconds", "duration_seconds", "creative_url", "ad_id")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CREATIVE_URL_FIELD_NUMBER: _ClassVar[int]
    AD_ID_FIELD_NUMBER: _ClassVar[int]
    position: AdPosition
    offset_seconds: float
    duration_seconds: float
    creative_url: str
    ad_id: str
    def __init__(self, position: _Optional[_Union[AdPosition, str]] = ..., offset_seconds: _Optional[float] = ..., duration_seconds: _Optional[float] = ..., creative_url: _Optional[str] = ..., ad_id: _Optional[str] = ...) -> None: ...

class Rendition(_message.Message):
    __slots__ = ("codec", "width", "height", "bitrate_bps", "container", "object_key", "frame_rate", "codecs", "vmaf", "container_format")
    CODEC_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BITRATE_BPS_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    CODECS_FIELD_NUMBER: _ClassVar[int]
    VMAF_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FORMAT_FIELD_NUMBER: _ClassVar[int]
    codec: str
    width: int
    height: int
    bitrate_bps: int
    container: str
    object_key: str
    frame_rate: float
    codecs: str
    vmaf: float
    container_format: ContainerFormat
    def __init__(self, codec: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., bitrate_bps: _Optional[int] = ..., container: _Optional[str] = ..., object_key: _Optional[str] = ..., frame_rate: _Optional[float] = ..., codecs: _Optional[str] = ..., vmaf: _Optional[float] = ..., container_format: _Optional[_Union[ContainerFormat, str]] = ...) -> None: ...

class Download(_message.Message):
    __slots__ = ("kind", "height", "size_bytes", "object_key")
    KIND_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    kind: DownloadKind
    height: int
    size_bytes: int
    object_key: str
    def __init__(self, kind: _Optional[_Union[DownloadKind, str]] = ..., height: _Optional[int] = ..., size_bytes: _Optional[int] = ..., object_key: _Optional[str] = ...) -> None: ...

class AudioTrackEncoding(_message.Message):
    __slots__ = ("codec", "playlist_object_key", "codecs", "bitrate_bps")
    CODEC_FIELD_NUMBER: _ClassVar[int]
    PLAYLIST_OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    CODECS_FIELD_NUMBER: _ClassVar[int]
    BITRATE_BPS_FIELD_NUMBER: _ClassVar[int]
    codec: str
    playlist_object_key: str
    codecs: str
    bitrate_bps: int
    def __init__(self, codec: _Optional[str] = ..., playlist_object_key: _Optional[str] = ..., codecs: _Optional[str] = ..., bitrate_bps: _Optional[int] = ...) -> None: ...

class AudioTrack(_message.Message):
    __slots__ = ("language", "kind", "label", "status", "failure_reason", "source_object_key", "encodings", "version", "create_time")
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    ENCODINGS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    language: str
    kind: AudioTrackKind
    label: str
    status: AudioTrackStatus
    failure_reason: str
    source_object_key: str
    encodings: _containers.RepeatedCompositeFieldContainer[AudioTrackEncoding]
    version: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, language: _Optional[str] = ..., kind: _Optional[_Union[AudioTrackKind, str]] = ..., label: _Optional[str] = ..., status: _Optional[_Union[AudioTrackStatus, str]] = ..., failure_reason: _Optional[str] = ..., source_object_key: _Optional[str] = ..., encodings: _Optional[_Iterable[_Union[AudioTrackEncoding, _Mapping]]] = ..., version: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PlacementDecision(_message.Message):
    __slots__ = ("region", "served_from", "policy", "predicted_views", "decide_time", "placement_policy", "fill_on_first_request")
    REGION_FIELD_NUMBER: _ClassVar[int]
    SERVED_FROM_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_VIEWS_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_POLICY_FIELD_NUMBER: _ClassVar[int]
    FILL_ON_FIRST_REQUEST_FIELD_NUMBER: _ClassVar[int]
    region: str
    served_from: ServedFrom
    policy: str
    predicted_views: float
    decide_time: _timestamp_pb2.Timestamp
    placement_policy: PlacementPolicy
    fill_on_first_request: bool
    def __init__(self, region: _Optional[str] = ..., served_from: _Optional[_Union[ServedFrom, str]] = ..., policy: _Optional[str] = ..., predicted_views: _Optional[float] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., placement_policy: _Optional[_Union[PlacementPolicy, str]] = ..., fill_on_first_request: _Optional[bool] = ...) -> None: ...

class StreamManifest(_message.Message):
    __slots__ = ("codec", "protocol", "object_key", "stream_protocol")
    CODEC_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    STREAM_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    codec: str
    protocol: str
    object_key: str
    stream_protocol: StreamProtocol
    def __init__(self, codec: _Optional[str] = ..., protocol: _Optional[str] = ..., object_key: _Optional[str] = ..., stream_protocol: _Optional[_Union[StreamProtocol, str]] = ...) -> None: ...

class Video(_message.Message):
    __slots__ = ("id", "title", "description", "channel", "thumbnails", "ad_breaks", "duration_seconds", "status", "failure_reason", "renditions", "placements", "manifests", "raw_object_key", "size_bytes", "language", "category", "create_time", "update_time", "publish_time", "etag", "privacy", "downloads", "download_policy", "captions", "audio_tracks")
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    THUMBNAILS_FIELD_NUMBER: _ClassVar[int]
    AD_BREAKS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    RENDITIONS_FIELD_NUMBER: _ClassVar[int]
    PLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    MANIFESTS_FIELD_NUMBER: _ClassVar[int]
    RAW_OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    DOWNLOADS_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_POLICY_FIELD_NUMBER: _ClassVar[int]
    CAPTIONS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_TRACKS_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    description: str
    channel: Channel
    thumbnails: _containers.RepeatedCompositeFieldContainer[Thumbnail]
    ad_breaks: _containers.RepeatedCompositeFieldContainer[AdBreak]
    duration_seconds: float
    status: VideoStatus
    failure_reason: str
    renditions: _containers.RepeatedCompositeFieldContainer[Rendition]
    placements: _containers.RepeatedCompositeFieldContainer[PlacementDecision]
    manifests: _containers.RepeatedCompositeFieldContainer[StreamManifest]
    raw_object_key: str
    size_bytes: int
    language: str
    category: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    publish_time: _timestamp_pb2.Timestamp
    etag: str
    privacy: Privacy
    downloads: _containers.RepeatedCompositeFieldContainer[Download]
    download_policy: DownloadPolicy
    captions: _containers.RepeatedCompositeFieldContainer[_caption_pb2.Caption]
    audio_tracks: _containers.RepeatedCompositeFieldContainer[AudioTrack]
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., channel: _Optional[_Union[Channel, _Mapping]] = ..., thumbnails: _Optional[_Iterable[_Union[Thumbnail, _Mapping]]] = ..., ad_breaks: _Optional[_Iterable[_Union[AdBreak, _Mapping]]] = ..., duration_seconds: _Optional[float] = ..., status: _Optional[_Union[VideoStatus, str]] = ..., failure_reason: _Optional[str] = ..., renditions: _Optional[_Iterable[_Union[Rendition, _Mapping]]] = ..., placements: _Optional[_Iterable[_Union[PlacementDecision, _Mapping]]] = ..., manifests: _Optional[_Iterable[_Union[StreamManifest, _Mapping]]] = ..., raw_object_key: _Optional[str] = ..., size_bytes: _Optional[int] = ..., language: _Optional[str] = ..., category: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., publish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ..., privacy: _Optional[_Union[Privacy, str]] = ..., downloads: _Optional[_Iterable[_Union[Download, _Mapping]]] = ..., download_policy: _Optional[_Union[DownloadPolicy, str]] = ..., captions: _Optional[_Iterable[_Union[_caption_pb2.Caption, _Mapping]]] = ..., audio_tracks: _Optional[_Iterable[_Union[AudioTrack, _Mapping]]] = ...) -> None: ...
