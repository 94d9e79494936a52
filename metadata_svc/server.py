"""gRPC MetadataService over the MetadataStore port, served beside AccountService; an
account changes only the channels and videos it owns."""
from __future__ import annotations

import logging
import uuid

import grpc
from google.protobuf import empty_pb2, field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as pb
from longtail.metadata.v1 import metadata_service_pb2_grpc as pb_grpc
from longtail.accounts.v1 import account_service_pb2_grpc as accounts_grpc
from longtail.metadata.v1 import video_pb2
from longtail_common.adapters import make_account_store
from longtail_common.config import Config, load_config
from longtail_common.language_tags import LanguageTagError, canonical_language
from longtail_common.mesh_identity import caller, may_act_for
from longtail_common.ports import (
    AlreadyExistsError,
    ChannelRecord,
    ConflictError,
    InvalidKeyError,
    MetadataStore,
    NotFoundError,
    TOPIC_VIDEO_CHANGED,
    TopicProducer,
    VideoRecord,
    validate_id,
)
from longtail_common.runtime import setup_logging
from longtail_common.service import Backends, Needs, Running, run_service
from metadata_svc.account_server import AccountServicer
from metadata_svc.captions import CaptionRefused, checked_caption, to_record, video_captions
from metadata_svc.accounts import Accounts
from metadata_svc.usage import account_usage

log = logging.getLogger("metadata_svc")

S = video_pb2.VideoStatus
# Which status changes are legal. Anything else is a bug in a caller, refused loudly.
ALLOWED_TRANSITIONS = {
    (S.VIDEO_STATUS_UPLOADING, S.VIDEO_STATUS_PROCESSING),
    (S.VIDEO_STATUS_UPLOADING, S.VIDEO_STATUS_FAILED),
    (S.VIDEO_STATUS_PROCESSING, S.VIDEO_STATUS_READY),
    (S.VIDEO_STATUS_PROCESSING, S.VIDEO_STATUS_FAILED),
    (S.VIDEO_STATUS_FAILED, S.VIDEO_STATUS_PROCESSING),  # operator retries a failed video
}

# Fields a client may name in an update mask. id, channel, create_time and etag are
# managed here and never written by callers.
UPDATABLE_FIELDS = {
    "title",
    "description",
    "thumbnails",
    "ad_breaks",
    "duration_seconds",
    "status",
    "failure_reason",
    "renditions",
    "placements",
    "manifests",
    "raw_object_key",
    "size_bytes",
    "language",
    "category",
    "publish_time",
    "privacy",
    "downloads",
    "download_policy",
    "audio_tracks",
}

P = video_pb2.Privacy
# Videos stored before privacy existed carry UNSPECIFIED: they were public.
LISTED_PRIVACY = {P.PRIVACY_UNSPECIFIED, P.PRIVACY_PUBLIC}
SETTABLE_PRIVACY = {P.PRIVACY_PUBLIC, P.PRIVACY_UNLISTED, P.PRIVACY_PRIVATE}
# What an account may change of its own videos; the rest (status, renditions, placements,
# ...) is the services' to write.
ACCOUNT_UPDATABLE_FIELDS = {"title", "description", "language", "category", "privacy", "download_policy"}

MAX_TITLE = 200
MAX_DESCRIPTION = 5000
MAX_PAGE_SIZE = 100
# A public-only listing skips the channel's other videos; it reads at most this many per
# call, then answers a short page with a token to go on from.
MAX_LISTING_SCAN = 2000


def _only_removes_audio_tracks(current: video_pb2.Video, patch: video_pb2.Video) -> bool:
    """Whether the patch's audio_tracks are some of the video's, unchanged: an owner may
    delete tracks, but only the transcoder records (and so points at files of) one."""
    have = [t.SerializeToString(deterministic=True) for t in current.audio_tracks]
    return all(t.SerializeToString(deterministic=True) in have for t in patch.audio_tracks)


def _audio_track_problem(current: video_pb2.Video, patch: video_pb2.Video) -> str | None:
    """What is wrong with the language of a track the patch adds: it names the track's
    folder of files, so it must be a canonical BCP-47 tag. Tracks already stored pass, so a
    track recorded before this check can still be deleted."""
    had = {t.language for t in current.audio_tracks}
    for track in patch.audio_tracks:
        if track.language in had:
            continue
        try:
            canonical = canonical_language(track.language)
        except LanguageTagError as exc:
            return str(exc)
        if canonical != track.language:
            return f"language {track.language!r} is not in canonical form ({canonical!r})"
    return None


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def _new_etag() -> str:
    return uuid.uuid4().hex[:16]


def _to_record(video: video_pb2.Video) -> VideoRecord:
    if video.captions:  # output only: captions are kept in their own table
        stored = video_pb2.Video()
        stored.CopyFrom(video)
        del stored.captions[:]
        video = stored
    return VideoRecord(
        video_id=video.id,
        channel_id=video.channel.id,
        status=video.status,
        create_time_us=video.create_time.ToMicroseconds(),
        etag=video.etag,
        payload=video.SerializeToString(deterministic=True),
    )


def _from_record(record: VideoRecord) -> video_pb2.Video:
    video = video_pb2.Video()
    video.ParseFromString(record.payload)
    return video


def is_listed(video: video_pb2.Video) -> bool:
    """Whether listings, search and the latest videos may show it (PUBLIC)."""
    return video.privacy in LISTED_PRIVACY


def _visible(video: video_pb2.Video) -> bool:
    """A private video exists only for its channel's owner, admins and services."""
    return video.privacy != P.PRIVACY_PRIVATE or may_act_for(video.channel.owner_account_id)


def _text_problem(video: video_pb2.Video, fields) -> str | None:
    """What is wrong with the title, description or privacy among `fields`, if anything."""
    if "title" in fields and not video.title.strip():
        return "title is required"
    if "title" in fields and len(video.title) > MAX_TITLE:
        return f"title longer than {MAX_TITLE} characters"
    if "description" in fields and len(video.description) > MAX_DESCRIPTION:
        return f"description longer than {MAX_DESCRIPTION} characters"
    if "privacy" in fields and video.privacy not in SETTABLE_PRIVACY:
        return "privacy must be PUBLIC, UNLISTED or PRIVATE"
    return None


def _channel_message(record: ChannelRecord) -> video_pb2.Channel:
    return video_pb2.Channel(id=record.channel_id, name=record.name, owner_account_id=record.owner_account_id)


def _validate_channel(channel: video_pb2.Channel) -> ChannelRecord:
    validate_id(channel.id, "channel id")
    if channel.owner_account_id:
        validate_id(channel.owner_account_id, "owner account id")
    return ChannelRecord(channel.id, channel.name or channel.id, channel.owner_account_id)


class ChangeFeed:
    """Publishes `video.changed` after each successful write of a video record.

    The write has happened whatever the topic does: a failed publish is logged, not
    turned into an error the caller would retry (the gateways' cache TTL bounds how long
    they miss it)."""

    def __init__(self, producer: TopicProducer | None):
        self._producer = producer

    def publish(self, video_id: str, change: int, etag: str = "",
                caption: events_pb2.CaptionChanged | None = None) -> None:
        if self._producer is None:
            return
        event = events_pb2.VideoChanged(video_id=video_id, change=change, etag=etag, change_time=_now(),
                                        caption=caption)
        try:
            self._producer.publish(TOPIC_VIDEO_CHANGED, event.SerializeToString(), key=video_id.encode())
        except Exception:  # noqa: BLE001 - see the class docstring
            log.exception("could not publish the change of video %s", video_id)


class MetadataServicer(pb_grpc.MetadataServiceServicer):
    def __init__(self, store: MetadataStore, changes: ChangeFeed | None = None):
        self.store = store
        self.changes = changes or ChangeFeed(None)

    # -- helpers -------------------------------------------------------------------
    @staticmethod
    def _abort_for(context, exc: Exception):
        if isinstance(exc, NotFoundError):
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        if isinstance(exc, ConflictError):
            context.abort(grpc.StatusCode.ABORTED, str(exc))
        if isinstance(exc, AlreadyExistsError):
            context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        if isinstance(exc, (InvalidKeyError, ValueError)):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise exc

    def _load(self, video_id: str, context) -> video_pb2.Video:
        try:
            validate_id(video_id, "video id")
        except InvalidKeyError as exc:
            self._abort_for(context, exc)
        record = self.store.get_video(video_id)
        video = _from_record(record) if record is not None else None
        if video is None or not _visible(video):
            context.abort(grpc.StatusCode.NOT_FOUND, f"video {video_id} not found")
        return video

    @staticmethod
    def _require_owner(context, video: video_pb2.Video) -> None:
        """Only the owner of the video's channel (or an admin, or a service) changes it."""
        if not may_act_for(video.channel.owner_account_id):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"video {video.id} belongs to another account")

    # -- RPCs ----------------------------------------------------------------------
    def GetVideo(self, request, context):
        video = self._load(request.id, context)
        video.captions.extend(video_captions(self.store, video.id))
        return video

    def BatchGetVideos(self, request, context):
        if len(request.ids) > 1000:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "at most 1000 ids per batch")
        ids = [i for i in request.ids if i]
        try:
            for i in ids:
                validate_id(i, "video id")
        except InvalidKeyError as exc:
            self._abort_for(context, exc)
        videos = [v for v in map(_from_record, self.store.get_videos(ids)) if _visible(v)]
        return pb.BatchGetVideosResponse(videos=videos)

    def ListVideos(self, request, context):
        if not request.channel_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "channel_id is required")
        page_size = request.page_size or 20
        if page_size < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_size must be positive")
        page_size = min(page_size, MAX_PAGE_SIZE)
        channel = self.store.get_channel(request.channel_id) if request.include_non_public else None
        if channel is not None and not may_act_for(channel.owner_account_id):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"only its owner lists channel {channel.channel_id} in full")
        try:
            videos, cursor = self._list_page(request, page_size)
        except Exception as exc:  # noqa: BLE001
            self._abort_for(context, exc)
        return pb.ListVideosResponse(videos=videos, next_page_token=cursor or "")

    def _list_page(self, request, page_size: int) -> tuple[list[video_pb2.Video], str | None]:
        """Up to page_size videos and the cursor after the last one read. Privacy lives in
        the payload, not the index: a public-only listing reads on past the others, asking
        the store for exactly the rows still wanted, so its cursor never skips one."""
        videos: list[video_pb2.Video] = []
        cursor, scanned = request.page_token or None, 0
        while True:
            want = page_size - len(videos)
            records, cursor = self.store.list_channel_videos(request.channel_id, want, cursor, request.status or None)
            scanned += want
            videos += [v for v in map(_from_record, records) if request.include_non_public or is_listed(v)]
            if cursor is None or len(videos) >= page_size or scanned >= MAX_LISTING_SCAN:
                return videos, cursor

    def CreateVideo(self, request, context):
        video = video_pb2.Video()
        video.CopyFrom(request.video)
        try:
            validate_id(video.id, "video id")
            asked = _validate_channel(video.channel)
        except InvalidKeyError as exc:
            self._abort_for(context, exc)
        if video.privacy == P.PRIVACY_UNSPECIFIED:
            video.privacy = P.PRIVACY_PUBLIC
        problem = _text_problem(video, ("title", "description", "privacy"))
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if not may_act_for(asked.owner_account_id):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "a channel can only be made for the calling account")
        channel = self._channel_for_upload(asked)
        if not may_act_for(channel.owner_account_id):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"channel {channel.channel_id} belongs to another account")
        video.channel.CopyFrom(_channel_message(channel))
        video.status = S.VIDEO_STATUS_UPLOADING
        now = _now()
        video.create_time.CopyFrom(now)
        video.update_time.CopyFrom(now)
        video.etag = _new_etag()
        try:
            self.store.create_video(_to_record(video))
        except Exception as exc:  # noqa: BLE001
            self._abort_for(context, exc)
        self.changes.publish(video.id, events_pb2.VIDEO_CHANGE_CREATED, video.etag)
        log.info("created video %s", video.id)
        return video

    def UpdateVideo(self, request, context):
        patch = request.video
        current = self._load(patch.id, context)
        paths = list(request.update_mask.paths)
        if not paths:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "update_mask must name the fields to update")
        bad = [p for p in paths if p.split(".")[0] not in UPDATABLE_FIELDS]
        if bad:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"fields not updatable: {', '.join(bad)}")
        problem = _text_problem(patch, paths) or ("audio_tracks" in paths and _audio_track_problem(current, patch))
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        self._require_owner(context, current)
        principal = caller()
        if principal is not None and principal.is_account:
            refused = sorted({p.split(".")[0] for p in paths} - ACCOUNT_UPDATABLE_FIELDS
                             - ({"audio_tracks"} if _only_removes_audio_tracks(current, patch) else set()))
            if refused:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, f"only services write {', '.join(refused)}")
        if patch.etag and patch.etag != current.etag:
            context.abort(grpc.StatusCode.ABORTED, f"video {patch.id} changed since it was read (etag mismatch)")
        if "status" in paths and patch.status != current.status:
            if (current.status, patch.status) not in ALLOWED_TRANSITIONS:
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"illegal status change {S.Name(current.status)} -> {S.Name(patch.status)}",
                )
        updated = video_pb2.Video()
        updated.CopyFrom(current)
        mask = field_mask_pb2.FieldMask(paths=paths)
        mask.MergeMessage(patch, updated, replace_message_field=True, replace_repeated_field=True)
        updated.update_time.CopyFrom(_now())
        updated.etag = _new_etag()
        try:
            # Compare-and-set against what we read: concurrent writers cannot both win.
            self.store.replace_video(_to_record(updated), expected_etag=current.etag)
        except Exception as exc:  # noqa: BLE001
            self._abort_for(context, exc)
        self.changes.publish(updated.id, events_pb2.VIDEO_CHANGE_UPDATED, updated.etag)
        return updated

    def _channel_for_upload(self, asked: ChannelRecord) -> ChannelRecord:
        """The stored channel; the first upload to a channel creates it, owned by the uploader."""
        stored = self.store.get_channel(asked.channel_id)
        if stored is not None:
            return stored
        try:
            self.store.create_channel(asked)
            log.info("created channel %s for account %s", asked.channel_id, asked.owner_account_id or "(none)")
            return asked
        except AlreadyExistsError:  # a concurrent first upload created it: theirs stands
            return self.store.get_channel(asked.channel_id)

    def DeleteVideo(self, request, context):
        current = self._load(request.id, context)
        self._require_owner(context, current)
        if request.etag and request.etag != current.etag:
            context.abort(grpc.StatusCode.ABORTED, f"video {request.id} changed since it was read (etag mismatch)")
        try:
            # Compare-and-set against what we read: a concurrent update wins over the delete.
            self.store.delete_video(request.id, expected_etag=current.etag)
        except Exception as exc:  # noqa: BLE001
            self._abort_for(context, exc)
        self.changes.publish(request.id, events_pb2.VIDEO_CHANGE_DELETED)
        log.info("deleted video %s (%s)", request.id, S.Name(current.status))
        return empty_pb2.Empty()

    def CreateCaption(self, request, context):
        video = self._load(request.video_id, context)
        self._require_owner(context, video)
        try:
            caption = checked_caption(self.store, video.id, request.caption)
        except CaptionRefused as refused:
            context.abort(getattr(grpc.StatusCode, refused.code), str(refused))
        try:
            self.store.put_caption(to_record(caption))
        except Exception as exc:  # noqa: BLE001
            self._abort_for(context, exc)
        # The video's record is unchanged (its etag too): the event tells players and search.
        self.changes.publish(video.id, events_pb2.VIDEO_CHANGE_UPDATED, video.etag, events_pb2.CaptionChanged(
            language=caption.language, automatic=caption.automatic))
        log.info("caption %s of video %s recorded (automatic: %s)", caption.language, video.id, caption.automatic)
        return caption

    def ListCaptions(self, request, context):
        video = self._load(request.video_id, context)
        return pb.ListCaptionsResponse(captions=video_captions(self.store, video.id))

    def DeleteCaption(self, request, context):
        video = self._load(request.video_id, context)
        self._require_owner(context, video)
        caption = next((c for c in video_captions(self.store, video.id) if c.language == request.language), None)
        if caption is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"video {video.id} has no caption in {request.language!r}")
        try:
            self.store.delete_caption(video.id, caption.language)
        except Exception as exc:  # noqa: BLE001
            self._abort_for(context, exc)
        self.changes.publish(video.id, events_pb2.VIDEO_CHANGE_UPDATED, video.etag, events_pb2.CaptionChanged(
            language=caption.language, automatic=caption.automatic, deleted=True))
        return caption

    def GetChannel(self, request, context):
        record = self.store.get_channel(request.id)
        if record is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"channel {request.id} not found")
        return _channel_message(record)

    def CreateChannel(self, request, context):
        try:
            record = _validate_channel(request.channel)
            if not record.owner_account_id:
                raise ValueError("channel.owner_account_id is required")
            if not may_act_for(record.owner_account_id):
                context.abort(grpc.StatusCode.PERMISSION_DENIED, "a channel can only be made for the calling account")
            self.store.create_channel(record)
        except (InvalidKeyError, ValueError, AlreadyExistsError) as exc:
            self._abort_for(context, exc)
        log.info("created channel %s for account %s", record.channel_id, record.owner_account_id)
        return _channel_message(record)

    def ListChannels(self, request, context):
        if not request.owner_account_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "owner_account_id is required")
        records = self.store.list_owned_channels(request.owner_account_id)
        response = pb.ListChannelsResponse(channels=[_channel_message(r) for r in records])
        if request.include_usage:
            response.usage.CopyFrom(account_usage(self.store, records))
        return response


class MetadataAndAccountServicer(MetadataServicer, AccountServicer):
    """Both services of metadata_svc in one object: the service skeleton binds one servicer,
    and their RPC names do not overlap."""

    def __init__(self, store: MetadataStore, accounts: Accounts, changes: ChangeFeed | None = None):
        MetadataServicer.__init__(self, store, changes)
        AccountServicer.__init__(self, accounts)


def _add_servicers(servicer, server: grpc.Server) -> None:
    pb_grpc.add_MetadataServiceServicer_to_server(servicer, server)
    accounts_grpc.add_AccountServiceServicer_to_server(servicer, server)


def serve(cfg: Config) -> None:
    def start(backends: Backends) -> Running:
        # Opened once the metadata store answers, so its backend is up (same file or keyspace).
        account_store = make_account_store(cfg)
        producer = backends.bus.producer()
        servicer = MetadataAndAccountServicer(backends.metadata_store, Accounts(account_store, cfg.auth),
                                              ChangeFeed(producer))
        return Running(servicer, close=[backends.metadata_store.close, account_store.close, producer.close])

    run_service(cfg, name="longtail.metadata.v1.MetadataService", address=cfg.services.metadata,
                add_servicer=_add_servicers, needs=Needs(metadata_store=True, topics=True), start=start)


def main() -> None:
    setup_logging("metadata_svc")
    serve(load_config())
