"""Caption files and the manifests that carry them, without a platform: the line-by-line
check of uploads (WebVTT, SRT), SRT to WebVTT, caption labels, the segmented HLS subtitle
playlist, and the subtitle tracks added to a master playlist and an MPD (read back with
the m3u8 and mpegdash parsers the other manifest tests use)."""
from __future__ import annotations

import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from longtail.metadata.v1 import caption_pb2, video_pb2
from longtail_common.captions import (
    CaptionFileError,
    caption_objects,
    cues_to_vtt,
    language_label,
    parse_caption_file,
    vtt_words,
)
from gateway.caption_tracks import is_caption_key, manifest_video, with_captions
from search_svc.index import Entry, SearchIndex

SRT = (b"1\n00:00:01,000 --> 00:00:02,500\nHello <i>world</i>\n\n"
       b"2\n00:00:11,000 --> 00:00:13,000\nSecond cue\nover two lines\n")
VTT = b"WEBVTT\n\nNOTE a comment\n\nintro\n00:01.000 --> 00:02.000 line:80%\nBonjour\n\n00:00:03.000 --> 00:00:04.000\nSalut\n"

MASTER = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="default",DEFAULT=YES,AUTOSELECT=YES,CHANNELS="2",URI="audio/playlist.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=300000,AVERAGE-BANDWIDTH=250000,RESOLUTION=426x240,FRAME-RATE=25.000,CODECS="avc1.64001e,mp4a.40.2",AUDIO="aud"
240p/playlist.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=700000,RESOLUTION=854x480,FRAME-RATE=25.000,CODECS="avc1.64001f,mp4a.40.2",AUDIO="aud"
480p/playlist.m3u8
"""
MPD = b"""<?xml version='1.0' encoding='utf-8'?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" profiles="urn:mpeg:dash:profile:isoff-live:2011" minBufferTime="PT4.000S" mediaPresentationDuration="PT20.000S">
  <Period id="0" start="PT0S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4">
      <Representation id="240p" bandwidth="250000" width="426" height="240" codecs="avc1.64001e">
        <SegmentTemplate timescale="1000" startNumber="0" initialization="240p/init.mp4" media="240p/segment_$Number%05d$.m4s" />
      </Representation>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" lang="und" />
  </Period>
</MPD>
"""


def test_srt_is_converted_to_webvtt_with_its_cues():
    parsed = parse_caption_file(SRT, "srt")
    assert parsed.vtt.startswith("WEBVTT")
    assert "00:00:01.000 --> 00:00:02.500" in parsed.vtt and "," not in parsed.vtt.split("\n")[2]
    assert [(c.start_s, c.end_s) for c in parsed.cues] == [(1.0, 2.5), (11.0, 13.0)]
    assert parsed.plain_text() == "Hello world Second cue over two lines"


def test_webvtt_keeps_notes_identifiers_settings_and_short_timestamps():
    parsed = parse_caption_file(VTT, "vtt")
    assert [c.text for c in parsed.cues] == ["Bonjour", "Salut"]
    assert parsed.cues[0].start_s == 1.0 and "line:80%" in parsed.vtt


@pytest.mark.parametrize(("data", "fmt", "line", "says"), [
    (b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nok\n\n00:00:03.000 --> 00:00:0x.000\nbad\n", "vtt", 6, "malformed timing"),
    (b"WEBVTT\n\n00:00:05.000 --> 00:00:03.000\nbackwards\n", "vtt", 3, "ends"),
    (b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nok\n\nno timing here\n", "vtt", 6, "without a timing line"),
    (b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\ncaf\xe9\n", "vtt", 4, "not UTF-8"),
    (b"1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:03.000 --> 00:00:04.000\ndot, not comma\n", "srt", 6,
     "malformed timing"),
    (b"1\nhello\n00:00:01,000 --> 00:00:02,000\n", "srt", 2, "expected a timing line"),
    (b"1\n00:00:01,000 --> 00:00:02,000\n" + b"x" * 2000 + b"\n", "srt", 3, "longer than"),
    (b"00:00:01.000 --> 00:00:02.000\nno header\n", "vtt", 1, "WEBVTT"),
    (b"WEBVTT\n", "vtt", 0, "no cues"),
    (b"   \n", "srt", 1, "empty"),
])
def test_bad_files_name_the_line_at_fault(data, fmt, line, says):
    with pytest.raises(CaptionFileError) as err:
        parse_caption_file(data, fmt)
    assert err.value.line == line and says in str(err.value)
    if line:
        assert str(err.value).startswith(f"line {line}:")


def test_a_huge_file_is_refused_before_it_is_read():
    with pytest.raises(CaptionFileError, match="at most 1000"):
        parse_caption_file(b"WEBVTT\n\n" + b"x" * 2000, "vtt", max_bytes=1000)


def test_labels_name_the_language_in_itself():
    assert (language_label("en"), language_label("fr"), language_label("de")) == ("English", "Français", "Deutsch")


def test_segmented_playlist_spans_the_video_and_repeats_straddling_cues():
    files = caption_objects(parse_caption_file(SRT, "srt").vtt, duration_s=25.2, segment_s=10)
    playlist = m3u8.loads(files["playlist.m3u8"].decode())
    assert playlist.is_endlist and playlist.playlist_type == "vod" and playlist.target_duration == 10
    assert [s.uri for s in playlist.segments] == ["seg_00000.vtt", "seg_00001.vtt", "seg_00002.vtt"]
    assert abs(sum(s.duration for s in playlist.segments) - 25.2) < 0.01
    for segment in playlist.segments:
        text = files[segment.uri].decode()
        assert text.startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000")
    assert "Hello" in files["seg_00000.vtt"].decode() and "Second cue" in files["seg_00001.vtt"].decode()
    assert "-->" not in files["seg_00002.vtt"].decode()
    assert files["captions.vtt"].decode() == parse_caption_file(SRT, "srt").vtt


def test_automatic_cues_make_a_webvtt_file_that_reads_back():
    vtt = cues_to_vtt(parse_caption_file(SRT, "srt").cues)
    assert [c.text for c in parse_caption_file(vtt.encode(), "vtt").cues] == ["Hello world",
                                                                              "Second cue\nover two lines"]
    assert vtt_words(vtt) == "Hello world Second cue over two lines"


def video_with_captions() -> video_pb2.Video:
    video = video_pb2.Video(id="vid1")
    for lang, label, kind in (("en", "English", caption_pb2.CAPTION_KIND_CAPTIONS),
                              ("fr", 'Fran"çais', caption_pb2.CAPTION_KIND_SUBTITLES)):
        base = f"videos/vid1/captions/{lang}/abc123/"
        video.captions.add(language=lang, label=label, kind=kind, object_key=base + "captions.vtt",
                           playlist_object_key=base + "playlist.m3u8")
    return video


def test_master_playlist_gains_a_subtitles_group_every_variant_names():
    key = "videos/vid1/h264/master.m3u8"
    text = with_captions(key, MASTER.encode(), video_with_captions()).decode()
    master = m3u8.loads(text)
    subs = [m for m in master.media if m.type == "SUBTITLES"]
    assert [(m.language, m.name, m.group_id, m.uri) for m in subs] == [
        ("en", "English", "subs", "../captions/en/abc123/playlist.m3u8"),
        ("fr", "Fran çais", "subs", "../captions/fr/abc123/playlist.m3u8")]
    assert "public.accessibility.describes-music-and-sound" in subs[0].characteristics
    assert [m.type for m in master.media] == ["AUDIO", "SUBTITLES", "SUBTITLES"]
    assert all(p.stream_info.subtitles == "subs" and p.stream_info.audio == "aud" for p in master.playlists)
    assert [p.uri for p in master.playlists] == ["240p/playlist.m3u8", "480p/playlist.m3u8"]
    assert text.count("CODECS=\"avc1.64001f,mp4a.40.2\"") == 1  # the rest is left as it was
    assert with_captions(key, MASTER.encode(), video_pb2.Video(id="vid1")) == MASTER.encode()


def test_mpd_gains_a_text_adaptation_set_per_caption():
    key = "videos/vid1/h264/manifest.mpd"
    mpd = MPEGDASHParser.parse(with_captions(key, MPD, video_with_captions()).decode())
    sets = mpd.periods[0].adaptation_sets
    assert [a.content_type for a in sets] == ["video", "audio", "text", "text"]
    text = [a for a in sets if a.content_type == "text"]
    assert [(a.id, a.lang, a.mime_type, a.roles[0].value) for a in text] == [
        (2, "en", "text/vtt", "caption"), (3, "fr", "text/vtt", "subtitle")]
    assert text[0].representations[0].base_urls[0].base_url_value == "../captions/en/abc123/captions.vtt"
    assert sets[0].representations[0].segment_templates[0].media == "240p/segment_$Number%05d$.m4s"


def test_which_keys_are_manifests_and_caption_files():
    assert manifest_video("videos/abc/h264/master.m3u8") == "abc"
    assert manifest_video("videos/abc/av1/manifest.mpd") == "abc"
    assert manifest_video("videos/abc/h264/240p/playlist.m3u8") is None
    assert is_caption_key("videos/abc/captions/pt-BR/0a1b2c/seg_00001.vtt")
    assert not is_caption_key("videos/abc/h264/240p/segment_00001.m4s")


def test_search_finds_a_word_of_the_captions_and_migrates_an_old_index(tmp_path):
    import sqlite3

    path = tmp_path / "index.sqlite3"
    old = sqlite3.connect(path)  # an index made before captions were indexed
    old.execute("CREATE TABLE videos (video_id TEXT PRIMARY KEY, title TEXT NOT NULL, description TEXT NOT NULL,"
                " channel_id TEXT NOT NULL, channel_name TEXT NOT NULL, duration_seconds REAL NOT NULL,"
                " publish_time_us INTEGER NOT NULL, poster_object_key TEXT NOT NULL)")
    old.execute("CREATE VIRTUAL TABLE videos_fts USING fts5(title, description, channel_name, content='videos',"
                " content_rowid='rowid')")
    old.execute("INSERT INTO videos VALUES ('old1', 'Kept title', '', 'c', 'chan', 1.0, 1, '')")
    old.execute("INSERT INTO videos_fts (rowid, title, description, channel_name) VALUES (1, 'Kept title', '', 'chan')")
    old.commit()
    old.close()
    index = SearchIndex(path)
    try:
        assert [e.video_id for e in index.search("kept", 10)] == ["old1"]
        index.upsert(Entry(video_id="v2", title="Cooking", captions="the zucchini goes in first"))
        assert [e.video_id for e in index.search("zucchini", 10)] == ["v2"]
        index.remove("v2")
        assert index.search("zucchini", 10) == []
    finally:
        index.close()


def test_a_caption_is_stored_whole_with_its_playlist_and_segments(tmp_path):
    from longtail_common.adapters.fs_objects import FilesystemObjectStore
    from longtail_common.captions import store_caption_files

    objects = FilesystemObjectStore(tmp_path)
    objects.ensure_bucket("media")
    files = caption_objects(parse_caption_file(SRT, "srt").vtt, duration_s=95.0)
    store_caption_files(objects, "media", "videos/v/captions/en/abc/", files)
    stored = sorted(k.rsplit("/", 1)[1] for k in objects.list_keys("media", "videos/v/captions/en/abc/"))
    assert stored == sorted(files) == ["captions.vtt", "playlist.m3u8"] + [f"seg_0000{i}.vtt" for i in range(4)]
    assert objects.stat("media", "videos/v/captions/en/abc/playlist.m3u8").content_type.startswith(
        "application/vnd.apple.mpegurl")
