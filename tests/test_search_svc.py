"""search_svc: the FTS5 index, the video.published handler and the SearchService contract
(served in-process over real gRPC, metadata faked)."""
from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail.search.v1 import search_service_pb2 as pb
from longtail.search.v1 import search_service_pb2_grpc as pb_grpc
from longtail_common.consumer import PermanentError
from longtail_common.ports import Message
from search_svc.index import BadQueryError, Entry, SearchIndex, fts_query
from search_svc.server import PublishedHandler, SearchServicer

S = video_pb2.VideoStatus


class FakeRpcError(grpc.RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code


class FakeMetadata:
    """The two MetadataService calls search uses, over a dict of videos."""

    def __init__(self):
        self.videos: dict[str, video_pb2.Video] = {}
        self.down = False

    def add(self, vid, title, status=S.VIDEO_STATUS_READY, description="", publish_s=1000):
        video = video_pb2.Video(id=vid, title=title, description=description, status=status,
                                channel=video_pb2.Channel(id="chan", name="The Channel"), duration_seconds=9.5,
                                publish_time=Timestamp(seconds=publish_s))
        video.thumbnails.add(kind="poster", object_key=f"videos/{vid}/poster.jpg", width=640, height=360)
        self.videos[vid] = video
        return video

    def GetVideo(self, request, timeout=None):
        if self.down:
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE)
        if request.id not in self.videos:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND)
        return self.videos[request.id]

    def BatchGetVideos(self, request, timeout=None):
        if self.down:
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE)
        return mpb.BatchGetVideosResponse(videos=[self.videos[i] for i in request.ids if i in self.videos])


def published(vid: str) -> Message:
    return Message(topic="video.published", partition=0, offset=0, key=vid.encode(),
                   value=events_pb2.VideoPublished(video_id=vid).SerializeToString())


@pytest.fixture()
def index(tmp_path):
    idx = SearchIndex(tmp_path / "search" / "index.sqlite3")
    yield idx
    idx.close()


@pytest.fixture()
def stack(index):
    """A SearchService on a real gRPC server over the index and a fake metadata."""
    meta = FakeMetadata()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_SearchServiceServicer_to_server(SearchServicer(index, meta), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield meta, PublishedHandler(index, meta), pb_grpc.SearchServiceStub(channel)
    channel.close()
    server.stop(None)


def test_fts_query_neutralises_syntax():
    assert fts_query('cats AND "dogs" OR title:x*') == '"cats"* "AND"* "dogs"* "OR"* "title"* "x"*'
    with pytest.raises(BadQueryError):
        fts_query(" ** () ")


def test_index_search_prefix_diacritics_and_removal(index):
    index.upsert(Entry("v1", "Café racer build", "restoring an old motorbike", publish_time_us=1))
    index.upsert(Entry("v2", "Bread baking", "sourdough at home, cafe style", publish_time_us=2))
    assert [e.video_id for e in index.search("racer", 10)] == ["v1"]
    assert [e.video_id for e in index.search("moto", 10)] == ["v1"]  # prefix
    # Title matches rank above description matches; "cafe" matches "Café".
    assert [e.video_id for e in index.search("cafe", 10)] == ["v1", "v2"]
    assert [e.video_id for e in index.search("cafe sourdough", 10)] == ["v2"]  # every word must match
    index.upsert(Entry("v1", "Renamed", "", publish_time_us=1))  # re-index replaces, not duplicates
    assert index.search("racer", 10) == [] and [e.video_id for e in index.search("renamed", 10)] == ["v1"]
    assert [e.video_id for e in index.latest(10)] == ["v2", "v1"]
    assert index.remove("v1") and not index.remove("v1")
    assert index.search("renamed", 10) == [] and [e.video_id for e in index.latest(10)] == ["v2"]


def test_handler_indexes_only_ready_videos(index):
    meta = FakeMetadata()
    handler = PublishedHandler(index, meta)
    meta.add("ready1", "Sunset timelapse")
    meta.add("proc1", "Sunset processing", status=S.VIDEO_STATUS_PROCESSING)
    handler(published("ready1"))
    handler(published("proc1"))
    handler(published("ready1"))  # redelivery is harmless
    assert [e.video_id for e in index.search("sunset", 10)] == ["ready1"]
    entry = index.get("ready1")
    assert entry.poster_object_key == "videos/ready1/poster.jpg" and entry.channel_name == "The Channel"

    # An event for a video that was unpublished or deleted since takes it out.
    meta.videos["ready1"].status = S.VIDEO_STATUS_FAILED
    handler(published("ready1"))
    assert index.get("ready1") is None
    meta.add("ready2", "Another sunset")
    handler(published("ready2"))
    del meta.videos["ready2"]
    handler(published("ready2"))
    assert index.latest(10) == []

    with pytest.raises(PermanentError):
        handler(Message(topic="video.published", partition=0, offset=1, key=None, value=b"\xff\xff"))
    meta.down = True
    meta.add("ready3", "x")
    with pytest.raises(grpc.RpcError):  # transient: the consume loop retries it
        handler(published("ready3"))


def test_service_search_latest_pagination_and_errors(stack):
    meta, handler, stub = stack
    for i in range(5):
        meta.add(f"v{i}", f"Kestrel flight {i}", publish_s=1000 + i)
        handler(published(f"v{i}"))
    first = stub.SearchVideos(pb.SearchVideosRequest(query="kestrel", page_size=2))
    assert len(first.results) == 2 and first.next_page_token
    seen = [r.video_id for r in first.results]
    token = first.next_page_token
    while token:
        page = stub.SearchVideos(pb.SearchVideosRequest(query="kestrel", page_size=2, page_token=token))
        seen += [r.video_id for r in page.results]
        token = page.next_page_token
    assert sorted(seen) == [f"v{i}" for i in range(5)]
    latest = stub.ListLatestVideos(pb.ListLatestVideosRequest(page_size=3))
    assert [r.video_id for r in latest.results] == ["v4", "v3", "v2"]
    r = latest.results[0]
    assert r.title == "Kestrel flight 4" and r.channel_name == "The Channel" and r.publish_time.seconds == 1004

    for bad in [pb.SearchVideosRequest(query=""), pb.SearchVideosRequest(query="?!"),
                pb.SearchVideosRequest(query="x", page_size=101),
                pb.SearchVideosRequest(query="x", page_token="garbage"),
                pb.SearchVideosRequest(query="other", page_token=first.next_page_token)]:
        with pytest.raises(grpc.RpcError) as err:
            stub.SearchVideos(bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad


def test_service_never_returns_a_video_that_is_not_ready(stack, index):
    meta, handler, stub = stack
    meta.add("keep", "Harbour seals")
    meta.add("gone", "Harbour cranes")
    handler(published("keep"))
    handler(published("gone"))
    # Unpublished (or deleted) without any event: the answer and the index both drop it.
    meta.videos["gone"].status = S.VIDEO_STATUS_FAILED
    resp = stub.SearchVideos(pb.SearchVideosRequest(query="harbour"))
    assert [r.video_id for r in resp.results] == ["keep"]
    assert index.get("gone") is None
    del meta.videos["keep"]
    assert list(stub.ListLatestVideos(pb.ListLatestVideosRequest()).results) == []
    # Metadata down: no unverified answers.
    meta.add("keep", "Harbour seals")
    handler(published("keep"))
    meta.down = True
    with pytest.raises(grpc.RpcError) as err:
        stub.SearchVideos(pb.SearchVideosRequest(query="harbour"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
