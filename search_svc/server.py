"""search_svc process: the consumers that keep the index (`video.published`,
`video.changed`, `video.deleted`) plus the SearchService API.

Only READY and PUBLIC videos are indexed or returned: unlisted and private ones play by
link or for their owner, never through search or the latest videos. Every event is
handled by re-reading the video from metadata (events may be redelivered, stale or out of
order), and every answer is checked against metadata again, so an edit or a delete takes
effect in answers at once and in the index as soon as its event is read.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import pathlib
import threading
import uuid

import grpc

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail.search.v1 import search_service_pb2 as pb
from longtail.search.v1 import search_service_pb2_grpc as pb_grpc
from longtail_common.config import Config, load_config
from longtail_common.consumer import PermanentError
from longtail_common.grpc_server import client_channel
from longtail_common.captions import vtt_words
from longtail_common.ports import (
    MEDIA_BUCKET,
    TOPIC_VIDEO_CHANGED,
    TOPIC_VIDEO_DELETED,
    TOPIC_VIDEO_PUBLISHED,
    Message,
    NotFoundError,
    ObjectStore,
)
from longtail_common.proto_enums import THUMBNAIL_KIND
from longtail_common.runtime import setup_logging
from longtail_common.service import Backends, Consumer, Needs, Running, run_service
from search_svc.index import BadQueryError, Entry, SearchIndex

log = logging.getLogger("search_svc")
S = video_pb2.VideoStatus
P = video_pb2.Privacy
# Each replica's groups are these names and its replica id (`replica_groups`).
CONSUMER_GROUP = "search"
DELETED_GROUP = "search-deleted"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_QUERY_CHARS = 200
# Caption words indexed per video: a feature film's dialogue is ~100 KB of text.
MAX_CAPTION_CHARS = 256 * 1024


def entry_from_video(video: video_pb2.Video) -> Entry:
    poster = next((t.object_key for t in video.thumbnails if THUMBNAIL_KIND.text(t) == "poster"), "")
    if not poster and video.thumbnails:
        poster = video.thumbnails[0].object_key
    return Entry(
        video_id=video.id, title=video.title, description=video.description, channel_id=video.channel.id,
        channel_name=video.channel.name, duration_seconds=video.duration_seconds,
        publish_time_us=video.publish_time.ToMicroseconds() if video.HasField("publish_time") else 0,
        poster_object_key=poster,
    )


def caption_words(objects: ObjectStore | None, video: video_pb2.Video) -> str:
    """The words of every caption of the video (read from the media bucket), so a word
    spoken or written in a caption finds it."""
    if objects is None:
        return ""
    words = []
    for caption in video.captions:
        try:
            words.append(vtt_words(objects.get_bytes(MEDIA_BUCKET, caption.object_key).decode("utf-8")))
        except (NotFoundError, UnicodeDecodeError, ValueError):
            log.warning("caption %s of video %s is unreadable; not indexed", caption.language, video.id)
    return " ".join(words)[:MAX_CAPTION_CHARS]


def is_searchable(video: video_pb2.Video) -> bool:
    """READY and PUBLIC (UNSPECIFIED: stored before privacy existed, when all were public)."""
    return video.status == S.VIDEO_STATUS_READY and video.privacy in (P.PRIVACY_UNSPECIFIED, P.PRIVACY_PUBLIC)


class PublishedHandler:
    """Indexes a published or edited video (`video.published`, `video.changed`), but only
    as metadata says it is now: the event may be a redelivery, stale, or about a video that
    was unpublished, made unlisted or private, or deleted since."""

    def __init__(self, index: SearchIndex, metadata: mpb_grpc.MetadataServiceStub, lock: threading.Lock | None = None,
                 objects: ObjectStore | None = None):
        self.index = index
        self.metadata = metadata
        self.objects = objects  # where caption files are read from (None: captions not indexed)
        # Read-then-write under one lock shared with the delete handler: a delete seen after
        # this read cannot be undone by this write.
        self.lock = lock or threading.Lock()

    def __call__(self, message: Message) -> None:
        event = events_pb2.VideoChanged() if message.topic == TOPIC_VIDEO_CHANGED else events_pb2.VideoPublished()
        try:
            event.ParseFromString(message.value)
        except Exception as exc:  # noqa: BLE001
            raise PermanentError(f"undecodable {type(event).__name__}: {exc}") from exc
        if not event.video_id:
            raise PermanentError(f"{type(event).__name__} without video_id")
        with self.lock:
            self._reconcile(event.video_id)

    def _reconcile(self, video_id: str) -> None:
        try:
            video = self.metadata.GetVideo(mpb.GetVideoRequest(id=video_id), timeout=15)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                self.index.remove(video_id)
                log.info("video %s is gone; removed from the index", video_id)
                return
            raise  # retried by the consume loop
        if is_searchable(video):
            entry = entry_from_video(video)
            entry.captions = caption_words(self.objects, video)
            self.index.upsert(entry)
            log.info("indexed video %s", video.id)
        elif self.index.remove(video.id):
            log.info("video %s is %s, %s; removed from the index", video.id, S.Name(video.status),
                     P.Name(video.privacy))


class RecordStillThere(Exception):
    """A deleted video's record is not gone yet (its deleter has not got to it): retry."""


class DeletedHandler:
    """Takes a deleted video out of the index (`video.deleted`), once its record is gone:
    removing it while the record still says READY would let a redelivered
    `video.published` put it back."""

    def __init__(self, index: SearchIndex, metadata: mpb_grpc.MetadataServiceStub, lock: threading.Lock):
        self.index = index
        self.metadata = metadata
        self.lock = lock

    def __call__(self, message: Message) -> None:
        event = events_pb2.VideoDeleted()
        try:
            event.ParseFromString(message.value)
        except Exception as exc:  # noqa: BLE001
            raise PermanentError(f"undecodable VideoDeleted: {exc}") from exc
        if not event.video_id:
            raise PermanentError("VideoDeleted without video_id")
        with self.lock:
            try:
                self.metadata.GetVideo(mpb.GetVideoRequest(id=event.video_id), timeout=15)
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    raise
                self.index.remove(event.video_id)
                log.info("video %s deleted; removed from the index", event.video_id)
                return
        raise RecordStillThere(f"video {event.video_id} is deleted but its record is still there")


def encode_token(kind: str, offset: int) -> str:
    raw = json.dumps({"k": hashlib.sha256(kind.encode()).hexdigest()[:16], "o": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(kind: str, token: str) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = int(data["o"])
        same = data["k"] == hashlib.sha256(kind.encode()).hexdigest()[:16]
    except Exception:  # noqa: BLE001
        raise ValueError("invalid page_token") from None
    if not same or offset < 0:
        raise ValueError("page_token belongs to another query")
    return offset


class SearchServicer(pb_grpc.SearchServiceServicer):
    def __init__(self, index: SearchIndex, metadata: mpb_grpc.MetadataServiceStub):
        self.index = index
        self.metadata = metadata

    def _page(self, context, page_size: int, kind: str, token: str) -> tuple[int, int]:
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"page_size must be between 0 and {MAX_PAGE_SIZE}")
        try:
            offset = decode_token(kind, token)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return page_size or DEFAULT_PAGE_SIZE, offset

    def _ready_only(self, entries: list[Entry]) -> list[pb.SearchResult]:
        """Re-checks the page against metadata: what is no longer READY and PUBLIC (or gone)
        is dropped from the answer and from the index, so no answer waits for an event."""
        if not entries:
            return []
        found = self.metadata.BatchGetVideos(mpb.BatchGetVideosRequest(ids=[e.video_id for e in entries]), timeout=15)
        ready = {v.id: v for v in found.videos if is_searchable(v)}
        out = []
        for entry in entries:
            video = ready.get(entry.video_id)
            if video is None:
                self.index.remove(entry.video_id)
                continue
            fresh = entry_from_video(video)  # titles may have been edited since indexing
            result = pb.SearchResult(
                video_id=fresh.video_id, title=fresh.title, description=fresh.description,
                channel_id=fresh.channel_id, channel_name=fresh.channel_name,
                duration_seconds=fresh.duration_seconds, poster_object_key=fresh.poster_object_key,
            )
            if video.HasField("publish_time"):
                result.publish_time.CopyFrom(video.publish_time)
            out.append(result)
        return out

    def _answer(self, context, fetch, limit: int, offset: int, kind: str, response_type):
        try:
            entries = fetch(limit + 1, offset)
        except BadQueryError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            results = self._ready_only(entries[:limit])
        except grpc.RpcError as exc:
            # Without metadata we cannot prove the results are READY: fail closed.
            context.abort(grpc.StatusCode.UNAVAILABLE, f"metadata unavailable: {exc.code().name}")
        token = encode_token(kind, offset + limit) if len(entries) > limit else ""
        return response_type(results=results, next_page_token=token)

    def SearchVideos(self, request, context):
        query = request.query.strip()
        if not query:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "query is required")
        if len(query) > MAX_QUERY_CHARS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"query is longer than {MAX_QUERY_CHARS} characters")
        limit, offset = self._page(context, request.page_size, "search:" + query, request.page_token)
        return self._answer(context, lambda n, o: self.index.search(query, n, o), limit, offset,
                            "search:" + query, pb.SearchVideosResponse)

    def ListLatestVideos(self, request, context):
        limit, offset = self._page(context, request.page_size, "latest", request.page_token)
        return self._answer(context, self.index.latest, limit, offset, "latest", pb.ListLatestVideosResponse)


def replica_groups(index_dir: pathlib.Path) -> tuple[str, str]:
    """This replica's consumer groups (published/changed, deleted). Every replica keeps an
    index of its own, so each reads every event, in groups of its own: a shared group would
    split the events, each index would hold part of the catalogue, and a lost replica's part
    would be lost with it (the node-loss test found that). The id is kept beside the index:
    a restarted replica resumes where its index stands; a new index reads the topics from
    their start (so they must keep every event: no time-based retention on video.*)."""
    path = index_dir / "replica.id"
    try:
        replica = path.read_text().strip()
    except FileNotFoundError:
        replica = uuid.uuid4().hex[:12]
        index_dir.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(".replica.id.tmp")
        staging.write_text(replica)
        os.replace(staging, path)
    return f"{CONSUMER_GROUP}.{replica}", f"{DELETED_GROUP}.{replica}"


def serve(cfg: Config) -> None:
    def start(backends: Backends) -> Running:
        """The servicer, and the consumers that keep the index."""
        index = SearchIndex(cfg.data_path / "search" / "index.sqlite3")
        published_group, deleted_group = replica_groups(cfg.data_path / "search")
        metadata = mpb_grpc.MetadataServiceStub(client_channel(cfg, "metadata"))
        lock = threading.Lock()
        published = Consumer("published-consumer", backends.bus, [TOPIC_VIDEO_PUBLISHED, TOPIC_VIDEO_CHANGED],
                             published_group, PublishedHandler(index, metadata, lock, backends.objects),
                             max_attempts=5,
                             join_timeout_s=30)
        # A group of its own: a delete waiting for its record to go holds up no publishing.
        deleted = Consumer("deleted-consumer", backends.bus, [TOPIC_VIDEO_DELETED], deleted_group,
                           DeletedHandler(index, metadata, lock), max_attempts=9, join_timeout_s=30)
        return Running(SearchServicer(index, metadata), consumers=[published, deleted],
                       close=[backends.bus.close, index.close])

    run_service(cfg, name="longtail.search.v1.SearchService", address=cfg.services.search,
                add_servicer=pb_grpc.add_SearchServiceServicer_to_server,
                needs=Needs(topics=True, bucket=MEDIA_BUCKET), start=start)


def main() -> None:
    setup_logging("search_svc")
    serve(load_config())
