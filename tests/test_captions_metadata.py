"""metadata_svc's caption rules, in-process on SQLite: languages stored canonical, one
caption per language, an automatic caption never over an uploaded one (an upload replaces
an automatic one), files only under the caption's own folder, captions answered with the
video but never written into its record; and how the automatic captions job cuts words
into cues and picks its engine."""
from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from longtail.metadata.v1 import caption_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail_common.adapters.sqlite_metadata import SqliteMetadataStore
from metadata_svc.server import MetadataServicer
from transcoder_svc import asr
from tests.inprocess_metadata import inprocess_metadata

K = caption_pb2.CaptionKind


@pytest.fixture()
def metadata(tmp_path):
    with inprocess_metadata(tmp_path, video_id="v1") as stub:
        yield stub


def caption(language: str, automatic: bool = False, folder: str | None = None, **fields) -> caption_pb2.Caption:
    base = f"videos/v1/captions/{folder or language}/abc/"
    return caption_pb2.Caption(language=language, kind=K.CAPTION_KIND_SUBTITLES, automatic=automatic,
                               object_key=base + "captions.vtt", playlist_object_key=base + "playlist.m3u8", **fields)


def create(stub, c: caption_pb2.Caption) -> caption_pb2.Caption:
    return stub.CreateCaption(mpb.CreateCaptionRequest(video_id="v1", caption=c))


def test_a_caption_is_stored_canonical_named_and_labelled(metadata):
    made = create(metadata, caption("pt-br", folder="pt-BR"))
    assert (made.language, made.name, made.label) == ("pt-BR", "videos/v1/captions/pt-BR", "Português (Brasil)")
    assert made.HasField("create_time")
    auto = create(metadata, caption("en", automatic=True, engine="pocketsphinx"))
    assert auto.label == "English (automatic)" and auto.engine == "pocketsphinx"
    assert [c.language for c in metadata.ListCaptions(mpb.ListCaptionsRequest(video_id="v1")).captions] == [
        "en", "pt-BR"]


def test_automatic_never_replaces_uploaded_but_uploads_replace_automatic(metadata):
    create(metadata, caption("en", automatic=True))
    create(metadata, caption("en", label="English CC"))
    with pytest.raises(grpc.RpcError) as err:
        create(metadata, caption("en", automatic=True))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    [kept] = metadata.ListCaptions(mpb.ListCaptionsRequest(video_id="v1")).captions
    assert (kept.label, kept.automatic) == ("English CC", False)


@pytest.mark.parametrize("bad", [
    caption("english"), caption("und"), caption("en", folder="fr"),
    caption_pb2.Caption(language="en", kind=K.CAPTION_KIND_SUBTITLES, object_key="videos/v2/captions/en/a/captions.vtt",
                        playlist_object_key="videos/v1/captions/en/a/playlist.m3u8"),
    caption_pb2.Caption(language="en", object_key="videos/v1/captions/en/a/captions.vtt",
                        playlist_object_key="videos/v1/captions/en/a/playlist.m3u8"),  # no kind
    caption("en", label='say "hi"'),
])
def test_bad_captions_are_refused(metadata, bad):
    with pytest.raises(grpc.RpcError) as err:
        create(metadata, bad)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_captions_come_with_the_video_and_stay_out_of_its_record(metadata):
    before = metadata.GetVideo(mpb.GetVideoRequest(id="v1"))
    create(metadata, caption("fr"))
    video = metadata.GetVideo(mpb.GetVideoRequest(id="v1"))
    assert [c.language for c in video.captions] == ["fr"] and video.etag == before.etag  # the record is untouched
    # A writer that sends the video back whole (captions and all) stores no copy of them.
    patch = video_pb2.Video()
    patch.CopyFrom(video)
    patch.title = "renamed"
    from google.protobuf import field_mask_pb2
    updated = metadata.UpdateVideo(mpb.UpdateVideoRequest(video=patch, update_mask=field_mask_pb2.FieldMask(
        paths=["title"])))
    assert not updated.captions
    metadata.DeleteCaption(mpb.DeleteCaptionRequest(video_id="v1", language="fr"))
    assert not metadata.GetVideo(mpb.GetVideoRequest(id="v1")).captions
    with pytest.raises(grpc.RpcError) as err:
        metadata.DeleteCaption(mpb.DeleteCaptionRequest(video_id="v1", language="fr"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        metadata.ListCaptions(mpb.ListCaptionsRequest(video_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_words_are_cut_into_cues_at_pauses_and_when_full():
    words = [("one", 0.0, 0.3), ("two", 0.35, 0.6), ("three", 1.5, 1.8)] + [
        (f"w{i}", 2.0 + i * 0.3, 2.2 + i * 0.3) for i in range(10)]
    cues = asr.words_to_cues(words)
    assert [c.text for c in cues] == ["one two", "three w0 w1 w2 w3 w4 w5 w6", "w7 w8 w9"]
    assert (cues[0].start_s, cues[0].end_s) == (0.0, 0.6)
    assert asr.words_to_cues([]) == []


def test_engines_are_named_or_imported():
    assert asr.make_engine("pocketsphinx").name == "pocketsphinx"
    assert isinstance(asr.make_engine("transcoder_svc.asr:PocketSphinxEngine"), asr.PocketSphinxEngine)
    with pytest.raises(ValueError):
        asr.make_engine("whisper")
    with pytest.raises(ValueError, match="no fr model"):
        asr.PocketSphinxEngine().transcribe(b"\0" * 3200, "fr")


def test_caption_writes_announce_which_caption_on_video_changed(tmp_path):
    """Gateways and search re-read the video on `video.changed`; a webhook consumer tells
    `captions.ready` from its `caption` part (the local durable log, the embedded bus)."""
    from longtail_common.adapters import make_topic_bus
    from longtail_common.config import Config
    from longtail_common.ports import TOPIC_VIDEO_CHANGED
    from longtail.events.v1 import events_pb2
    from metadata_svc.server import ChangeFeed

    bus = make_topic_bus(Config(data_dir=str(tmp_path)))
    bus.ensure_topics({TOPIC_VIDEO_CHANGED: 1})
    consumer = bus.consumer([TOPIC_VIDEO_CHANGED], "check")
    producer = bus.producer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    mpb_grpc.add_MetadataServiceServicer_to_server(
        MetadataServicer(SqliteMetadataStore(tmp_path / "m.sqlite3"), ChangeFeed(producer)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = mpb_grpc.MetadataServiceStub(channel)
            stub.CreateVideo(mpb.CreateVideoRequest(video=video_pb2.Video(id="v1", title="t",
                                                                          channel=video_pb2.Channel(id="c"))))
            etag = stub.GetVideo(mpb.GetVideoRequest(id="v1")).etag
            create(stub, caption("en", automatic=True))
            stub.DeleteCaption(mpb.DeleteCaptionRequest(video_id="v1", language="en"))
        events = []
        for _ in range(20):
            for message in consumer.poll(timeout_s=0.5, max_records=10):
                event = events_pb2.VideoChanged()
                event.ParseFromString(message.value)
                events.append(event)
            if len(events) >= 3:
                break
        consumer.close()
    finally:
        server.stop(0)
        producer.close()
        bus.close()
    assert [e.HasField("caption") for e in events] == [False, True, True]
    assert [(e.caption.language, e.caption.automatic, e.caption.deleted, e.etag) for e in events[1:]] == [
        ("en", True, False, etag), ("en", True, True, etag)]
