"""Privacy, edit and delete below the gateway, without running the platform: the real
MetadataService on SQLite in-process, placement's deleter and late-result guard on the
filesystem object store, and search_svc's handlers (metadata faked where noted)."""
from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail.search.v1 import search_service_pb2 as spb
from longtail_common.adapters.fs_objects import FilesystemObjectStore
from longtail_common.adapters.sqlite_viewcounts import SqliteViewCountStore
from longtail_common.config import Config
from longtail_common.ports import (
    MEDIA_BUCKET,
    RAW_BUCKET,
    STAGING_BUCKET,
    CatalogEntry,
    DailyViews,
    Message,
)
from placement_svc import deleter, edge
from placement_svc.server import ResultHandler
from search_svc.index import SearchIndex
from search_svc.server import DeletedHandler, PublishedHandler, RecordStillThere, SearchServicer
from tests.inprocess_metadata import inprocess_metadata

S = video_pb2.VideoStatus
P = video_pb2.Privacy
REGIONS = ["US", "GB", "JP"]


@pytest.fixture()
def metadata(tmp_path):
    """The real MetadataService on SQLite, in-process."""
    with inprocess_metadata(tmp_path) as stub:
        yield stub


def update(stub, video: video_pb2.Video, *paths: str) -> video_pb2.Video:
    return stub.UpdateVideo(mpb.UpdateVideoRequest(video=video, update_mask=field_mask_pb2.FieldMask(paths=paths)))


def make_ready(stub, vid: str, privacy=P.PRIVACY_UNSPECIFIED, channel="c") -> video_pb2.Video:
    stub.CreateVideo(mpb.CreateVideoRequest(video=video_pb2.Video(id=vid, title=f"Video {vid}", privacy=privacy,
                                                                 channel=video_pb2.Channel(id=channel))))
    update(stub, video_pb2.Video(id=vid, status=S.VIDEO_STATUS_PROCESSING), "status")
    return update(stub, video_pb2.Video(id=vid, status=S.VIDEO_STATUS_READY, publish_time=Timestamp(seconds=1)),
                  "status", "publish_time")


# -- metadata_svc ------------------------------------------------------------------------


def test_privacy_defaults_to_public_and_only_known_levels_are_stored(metadata):
    assert make_ready(metadata, "v1").privacy == P.PRIVACY_PUBLIC
    assert make_ready(metadata, "v2", P.PRIVACY_PRIVATE).privacy == P.PRIVACY_PRIVATE
    for bad in (P.PRIVACY_UNSPECIFIED, 9):
        with pytest.raises(grpc.RpcError) as err:
            update(metadata, video_pb2.Video(id="v1", privacy=bad), "privacy")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        update(metadata, video_pb2.Video(id="v1", title="  "), "title")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    read = metadata.GetVideo(mpb.GetVideoRequest(id="v1"))
    with pytest.raises(grpc.RpcError) as err:  # a stale etag loses (AIP-154)
        update(metadata, video_pb2.Video(id="v1", title="New", etag="stale"), "title")
    assert err.value.code() == grpc.StatusCode.ABORTED
    edited = update(metadata, video_pb2.Video(id="v1", title="New", privacy=P.PRIVACY_UNLISTED, etag=read.etag),
                    "title", "privacy")
    assert (edited.title, edited.privacy, edited.status) == ("New", P.PRIVACY_UNLISTED, S.VIDEO_STATUS_READY)
    assert edited.etag != read.etag


def test_channel_listing_shows_public_videos_unless_all_are_asked_for(metadata):
    levels = [P.PRIVACY_PUBLIC, P.PRIVACY_PRIVATE, P.PRIVACY_UNLISTED, P.PRIVACY_PRIVATE, P.PRIVACY_PUBLIC,
              P.PRIVACY_PRIVATE, P.PRIVACY_PRIVATE, P.PRIVACY_PUBLIC]
    for i, level in enumerate(levels):
        make_ready(metadata, f"v{i}", level)
    public = [f"v{i}" for i in reversed(range(len(levels))) if levels[i] == P.PRIVACY_PUBLIC]

    def pages(**kw):
        seen, token = [], ""
        while True:
            resp = metadata.ListVideos(mpb.ListVideosRequest(channel_id="c", page_size=2, page_token=token,
                                                             status=S.VIDEO_STATUS_READY, **kw))
            assert len(resp.videos) <= 2
            seen += [v.id for v in resp.videos]
            token = resp.next_page_token
            if not token:
                return seen

    assert pages() == public  # newest first, none skipped or repeated across pages
    assert pages(include_non_public=True) == [f"v{i}" for i in reversed(range(len(levels)))]
    # A change of privacy shows at once.
    update(metadata, video_pb2.Video(id="v1", privacy=P.PRIVACY_PUBLIC), "privacy")
    assert "v1" in pages()


# -- placement: the deleter and late transcode results -----------------------------------


class FakeRpcError(grpc.RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return self._code.name


def lay_out_everything(objects: FilesystemObjectStore, vid: str) -> None:
    """What a video leaves behind across the buckets, mid-upload and after transcoding."""
    objects.put_bytes(RAW_BUCKET, f"{vid}/original", b"raw bytes")
    upload_id = objects.create_multipart(RAW_BUCKET, f"{vid}/original")
    objects.upload_part(RAW_BUCKET, f"{vid}/original", upload_id, 1, b"part")
    objects.put_bytes(STAGING_BUCKET, f"{vid}/upload.json", b"{}")
    objects.put_bytes(STAGING_BUCKET, f"{vid}/tail-000000000000004", b"tail")
    for key in ("h264/master.m3u8", "h264/720p/seg0.m4s", "poster.jpg", "storyboard.jpg", "storyboard.vtt",
                "h264/_result.json"):
        objects.put_bytes(MEDIA_BUCKET, f"videos/{vid}/{key}", b"x")
    for region in ("US", "JP", "FR"):
        objects.put_bytes(edge.edge_bucket(region), f"videos/{vid}/h264/master.m3u8", b"x")


def traces(objects: FilesystemObjectStore, vid: str) -> list[str]:
    found = [f"{b}/{k}" for b in (RAW_BUCKET, STAGING_BUCKET) for k in objects.list_keys(b, f"{vid}/")]
    found += [f"{b}/{k}" for b in (MEDIA_BUCKET, *(edge.edge_bucket(r) for r in ("US", "GB", "JP", "FR")))
              for k in objects.list_keys(b, f"videos/{vid}/")]
    return found + [f"multipart {k}" for k, _ in objects.list_multipart_uploads(RAW_BUCKET, f"{vid}/")]


def deleted_message(vid: str, regions=()) -> Message:
    event = events_pb2.VideoDeleted(video_id=vid, channel_id="c", raw_object_key=f"{vid}/original", regions=regions)
    return Message(topic="video.deleted", partition=0, offset=0, key=vid.encode(), value=event.SerializeToString())


def test_deleter_removes_every_trace_once_and_again(tmp_path, metadata):
    objects = FilesystemObjectStore(tmp_path / "objects")
    counts = SqliteViewCountStore(tmp_path / "vc.sqlite3")
    for vid in ("gone", "kept"):
        make_ready(metadata, vid)
        lay_out_everything(objects, vid)
        counts.apply_views(f"views/{vid}", 1, [DailyViews(vid, "JP", "2024-05-01", 3, 100)])
        counts.put_video(CatalogEntry(vid, "c", "en", "", "2024-05-01", 10))
    handler = deleter.VideoDeleter(metadata, objects, counts, REGIONS)
    for _ in range(2):  # a redelivery finds nothing left to do, and fails on nothing
        handler(deleted_message("gone", regions=["FR"]))
        assert traces(objects, "gone") == []
        with pytest.raises(grpc.RpcError) as err:
            metadata.GetVideo(mpb.GetVideoRequest(id="gone"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert {r.video_id for r in counts.daily_views()} == {"kept"}
        assert [e.video_id for e in counts.list_videos()] == ["kept"]
    assert len(traces(objects, "kept")) == 13  # another video's files are untouched
    metadata.GetVideo(mpb.GetVideoRequest(id="kept"))


def test_deleter_deletes_the_record_whatever_it_became_and_a_failing_step_raises(tmp_path, metadata):
    objects = FilesystemObjectStore(tmp_path / "objects")
    metadata.CreateVideo(mpb.CreateVideoRequest(video=video_pb2.Video(id="busy", title="t",
                                                                     channel=video_pb2.Channel(id="c"))))
    update(metadata, video_pb2.Video(id="busy", status=S.VIDEO_STATUS_PROCESSING), "status")  # etag moved on
    deleter.VideoDeleter(metadata, objects, None, REGIONS)(deleted_message("busy"))
    with pytest.raises(grpc.RpcError):
        metadata.GetVideo(mpb.GetVideoRequest(id="busy"))

    class Down:
        def GetVideo(self, request, timeout=None):
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE)

    lay_out_everything(objects, "later")
    with pytest.raises(grpc.RpcError):  # the consume loop retries the whole message
        deleter.VideoDeleter(Down(), objects, None, REGIONS)(deleted_message("later"))
    assert traces(objects, "later")  # nothing removed before the record is known gone


class RacingMetadata:
    """A PROCESSING video deleted by its owner between placement's read and its READY write."""

    def __init__(self, deleted_before_read: bool):
        self.deleted_before_read = deleted_before_read
        self.updates = []

    def GetVideo(self, request, timeout=None):
        if self.deleted_before_read:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND)
        return video_pb2.Video(id=request.id, channel=video_pb2.Channel(id="c"), status=S.VIDEO_STATUS_PROCESSING,
                               etag="e1")

    def UpdateVideo(self, request, timeout=None):
        self.updates.append(request)
        raise FakeRpcError(grpc.StatusCode.NOT_FOUND)  # the compare-and-set finds no record


class Producer:
    def __init__(self):
        self.sent = []

    def publish(self, topic, value, key=None, headers=None):
        self.sent.append(topic)


class CdnEverywhere:
    family = "gbm"


class LatestCdnModel:
    def get(self):
        return CdnEverywhere()


@pytest.mark.parametrize("deleted_before_read", [True, False])
def test_a_late_transcode_result_never_brings_a_deleted_video_back(tmp_path, monkeypatch, deleted_before_read):
    from placement_svc.model import learned

    monkeypatch.setattr(learned, "decide_new_video", lambda features, model, regions: {r: "cdn" for r in regions})
    objects = FilesystemObjectStore(tmp_path / "objects")
    for key in ("h264/master.m3u8", "h264/720p/seg0.m4s", "poster.jpg", "h264/_result.json"):
        objects.put_bytes(MEDIA_BUCKET, f"videos/late/{key}", b"x")  # written after the deleter ran
    cfg = Config(data_dir=str(tmp_path))
    cfg.platform.regions = REGIONS
    meta, producer = RacingMetadata(deleted_before_read), Producer()
    counts = SqliteViewCountStore(tmp_path / "vc.sqlite3")
    handler = ResultHandler(cfg, meta, producer, objects=objects, view_counts=counts, models=LatestCdnModel())
    result = events_pb2.TranscodeResult(video_id="late", success=True, duration_seconds=3.0)
    handler(Message(topic="transcode.results", partition=0, offset=0, key=b"late", value=result.SerializeToString()))
    assert producer.sent == []  # never published
    assert len(meta.updates) == (0 if deleted_before_read else 1)
    assert traces(objects, "late") == []  # media and the edge copies pushed meanwhile are gone
    assert counts.list_videos() == []


# -- search_svc ------------------------------------------------------------------------


class FakeMetadata:
    def __init__(self):
        self.videos: dict[str, video_pb2.Video] = {}

    def add(self, vid, privacy=P.PRIVACY_UNSPECIFIED):
        self.videos[vid] = video_pb2.Video(id=vid, title=f"Lighthouse {vid}", status=S.VIDEO_STATUS_READY,
                                           privacy=privacy, channel=video_pb2.Channel(id="c"),
                                           publish_time=Timestamp(seconds=len(self.videos) + 1))

    def GetVideo(self, request, timeout=None):
        if request.id not in self.videos:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND)
        return self.videos[request.id]

    def BatchGetVideos(self, request, timeout=None):
        return mpb.BatchGetVideosResponse(videos=[self.videos[i] for i in request.ids if i in self.videos])


def event(topic: str, vid: str) -> Message:
    message = {"video.published": events_pb2.VideoPublished, "video.changed": events_pb2.VideoChanged}[topic]
    return Message(topic=topic, partition=0, offset=0, key=vid.encode(),
                   value=message(video_id=vid).SerializeToString())


class Context:
    def abort(self, code, details):
        raise AssertionError(f"aborted {code}: {details}")


def test_search_indexes_public_videos_only_and_follows_changes_and_deletes(tmp_path):
    index, meta = SearchIndex(tmp_path / "index.sqlite3"), FakeMetadata()
    published = PublishedHandler(index, meta)
    deleted = DeletedHandler(index, meta, published.lock)
    for vid, privacy in (("old", P.PRIVACY_UNSPECIFIED), ("pub", P.PRIVACY_PUBLIC),
                         ("unl", P.PRIVACY_UNLISTED), ("prv", P.PRIVACY_PRIVATE)):
        meta.add(vid, privacy)
        published(event("video.published", vid))
    assert {e.video_id for e in index.search("lighthouse", 10)} == {"old", "pub"}

    servicer = SearchServicer(index, meta)
    meta.videos["pub"].privacy = P.PRIVACY_PRIVATE  # no event read yet: answers change at once
    latest = servicer.ListLatestVideos(spb.ListLatestVideosRequest(), Context())
    assert [r.video_id for r in latest.results] == ["old"]
    meta.videos["unl"].privacy = P.PRIVACY_PUBLIC
    published(event("video.changed", "unl"))
    assert {e.video_id for e in index.search("lighthouse", 10)} == {"old", "unl"}

    with pytest.raises(RecordStillThere):  # its record is not gone yet: retried later
        deleted(deleted_message("old"))
    assert index.get("old") is not None
    del meta.videos["old"]
    deleted(deleted_message("old"))
    published(event("video.published", "old"))  # a stale redelivery cannot bring it back
    assert index.get("old") is None
    index.close()
