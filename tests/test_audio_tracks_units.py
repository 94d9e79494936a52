"""Alternate audio tracks without a platform: the served HLS master and DASH MPD read back
with m3u8 and mpegdash, track labels, the watch payload's shape, and metadata's rule that an
owner may only remove tracks; the transcoder's encode of a track (padded, aligned, each
family's codec) and its refusal of a file without sound."""
from __future__ import annotations

import subprocess

import av
import imageio_ffmpeg
import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from longtail.metadata.v1 import video_pb2
from gateway.audio_track_json import audio_tracks_json
from gateway.audio_tracks import (hls_master_with_audio, is_audio_track_key,
                                  renditions_for, with_audio_tracks)
from gateway.errors import ApiError
from gateway.routes.audio_tracks import track_label
from metadata_svc.server import _only_removes_audio_tracks
from transcoder_svc import ffmpeg_graphs, packaging, probe

KEY = "videos/v1/h264/master.m3u8"
MPD_KEY = "videos/v1/h264/manifest.mpd"
MASTER = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="default",DEFAULT=YES,AUTOSELECT=YES,CHANNELS="2",URI="audio/playlist.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=500000,AVERAGE-BANDWIDTH=400000,RESOLUTION=426x240,FRAME-RATE=30.000,CODECS="avc1.64001e,mp4a.40.2",AUDIO="aud"
240p/playlist.m3u8
"""
SILENT_MASTER = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=426x240,CODECS="avc1.64001e"
240p/playlist.m3u8
"""
MPD = b"""<?xml version='1.0' encoding='utf-8'?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" profiles="urn:mpeg:dash:profile:isoff-live:2011" minBufferTime="PT4.000S" mediaPresentationDuration="PT6.000S">
  <Period id="0" start="PT0S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">
      <Representation id="240p" bandwidth="300000" width="426" height="240" codecs="avc1.64001e" />
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" lang="und" segmentAlignment="true" startWithSAP="1">
      <Representation id="audio" bandwidth="130000" codecs="mp4a.40.2" audioSamplingRate="48000" />
    </AdaptationSet>
  </Period>
</MPD>
"""
TRACK_PLAYLIST = b"""#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI="init.mp4"
#EXTINF:4.010667,
segment_00000.m4s
#EXTINF:1.989333,
segment_00001.m4s
#EXT-X-ENDLIST
"""


def track(language: str, kind: int, status: int = video_pb2.AUDIO_TRACK_STATUS_READY, version: str = "ab12",
          folder: str = "h264") -> video_pb2.AudioTrack:
    name = video_pb2.AudioTrackKind.Name(kind).rsplit("_", 1)[-1].lower()
    return video_pb2.AudioTrack(language=language, kind=kind, label=f"{language} {name}", status=status,
                                version=version, encodings=[video_pb2.AudioTrackEncoding(
                                    codec="h264", codecs="mp4a.40.2", bitrate_bps=131000,
                                    playlist_object_key=f"videos/v1/{folder}/audio-{language}-{name}-{version}/playlist.m3u8")])


def video_with(*tracks) -> video_pb2.Video:
    return video_pb2.Video(id="v1", audio_tracks=list(tracks))


DUB = track("de", video_pb2.AUDIO_TRACK_KIND_DUB)
DESCRIPTION = track("en", video_pb2.AUDIO_TRACK_KIND_DESCRIPTION)


def test_hls_master_lists_ready_tracks_in_the_existing_audio_group():
    video = video_with(DUB, DESCRIPTION, track("fr", video_pb2.AUDIO_TRACK_KIND_DUB,
                                                status=video_pb2.AUDIO_TRACK_STATUS_FAILED))
    served = with_audio_tracks(KEY, MASTER.encode(), video, lambda k: b"").decode()
    pl = m3u8.loads(served)
    audio = [m for m in pl.media if m.type == "AUDIO"]
    assert [(m.group_id, m.language, m.default, m.autoselect) for m in audio] == [
        ("aud", None, "YES", "YES"), ("aud", "de", "NO", "YES"), ("aud", "en", "NO", "YES")]
    assert audio[1].uri == "audio-de-dub-ab12/playlist.m3u8" and audio[1].name == "de dub"
    assert audio[2].characteristics == "public.accessibility.describes-video"
    assert audio[1].characteristics is None
    assert [p.stream_info.audio for p in pl.playlists] == ["aud"]
    assert served.count("#EXT-X-STREAM-INF") == 1 and "240p/playlist.m3u8" in served


def test_a_master_without_sound_gets_the_group_and_the_audio_codec():
    pl = m3u8.loads(hls_master_with_audio(SILENT_MASTER, KEY, renditions_for(video_with(DUB), KEY)))
    assert [(m.language, m.default) for m in pl.media] == [("de", "YES")]
    assert pl.playlists[0].stream_info.audio == "aud"
    assert pl.playlists[0].stream_info.codecs == "avc1.64001e,mp4a.40.2"


def test_tracks_of_another_family_or_not_ready_are_left_out():
    other = track("it", video_pb2.AUDIO_TRACK_KIND_MAIN, folder="vp9")
    assert renditions_for(video_with(other), KEY) == []
    assert with_audio_tracks(KEY, MASTER.encode(), video_with(other), lambda k: b"") == MASTER.encode()


def test_mpd_gets_an_audio_adaptation_set_per_track_with_its_role():
    read = {DUB.encodings[0].playlist_object_key: TRACK_PLAYLIST,
            DESCRIPTION.encodings[0].playlist_object_key: TRACK_PLAYLIST}
    served = with_audio_tracks(MPD_KEY, MPD, video_with(DUB, DESCRIPTION), read.__getitem__)
    mpd = MPEGDASHParser.parse(served.decode())
    sets = mpd.periods[0].adaptation_sets
    audio = [a for a in sets if a.content_type == "audio"]
    assert [(a.lang, a.roles[0].value) for a in audio] == [("und", "main"), ("de", "dub"), ("en", "description")]
    assert [a.id for a in sets] == [0, 1, 2, 3]
    assert audio[2].accessibilities[0].value == "1"
    rep = audio[1].representations[0]
    assert rep.codecs == "mp4a.40.2" and rep.bandwidth == 131000
    template = rep.segment_templates[0]
    assert template.initialization == "audio-de-dub-ab12/init.mp4"
    assert template.media == "audio-de-dub-ab12/segment_$Number%05d$.m4s" and template.start_number == 0
    assert [(s.t, s.d) for s in template.segment_timelines[0].Ss] == [(0, 4011), (None, 1989)]


def test_track_keys():
    assert is_audio_track_key("videos/v1/h264/audio-pt-BR-dub-0a1b2c/segment_00003.m4s")
    assert is_audio_track_key("videos/v1/h264-fast/audio-de-main-0a1b2c/init.mp4")
    assert not is_audio_track_key("videos/v1/h264/audio/segment_00003.m4s")
    assert not is_audio_track_key("videos/v1/h264/audio-de-dub-0a1b2c/../master.m3u8")


def test_labels():
    assert track_label("de", "dub", "") == "Deutsch (dub)"
    assert track_label("en", "description", "") == "English (audio description)"
    assert track_label("fr", "main", " VF ") == "VF"
    with pytest.raises(ApiError):
        track_label("fr", "main", "a\nb")


def test_watch_payload_lists_ready_tracks():
    failed = track("fr", video_pb2.AUDIO_TRACK_KIND_DUB, status=video_pb2.AUDIO_TRACK_STATUS_FAILED)
    assert audio_tracks_json(video_with(DESCRIPTION, failed, DUB)) == [
        {"language": "de", "label": "de dub", "kind": "dub"},
        {"language": "en", "label": "en description", "kind": "description"}]


def test_an_owner_may_remove_tracks_but_not_add_or_change_them():
    current = video_with(DUB, DESCRIPTION)
    assert _only_removes_audio_tracks(current, video_with(DESCRIPTION))
    assert _only_removes_audio_tracks(current, video_with())
    changed = video_pb2.AudioTrack()
    changed.CopyFrom(DUB)
    changed.encodings[0].playlist_object_key = "videos/other/h264/audio-de-dub-ab12/playlist.m3u8"
    assert not _only_removes_audio_tracks(current, video_with(changed))
    assert not _only_removes_audio_tracks(current, video_with(DUB, DESCRIPTION, track("it", 2)))


@pytest.mark.parametrize("codec,expected", [("aac", "aac"), ("opus", "opus")])
def test_a_short_track_is_padded_to_the_video_in_aligned_segments(tmp_path, codec, expected):

    src = tmp_path / "tone.wav"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f",
                    "lavfi", "-i", "sine=frequency=660:sample_rate=22050:duration=3", str(src)], check=True)
    ffmpeg_graphs.encode_audio_track(str(src), probe.probe_audio(str(src)), str(tmp_path / "out"), codec, 6.0,
                                     timeout_s=60)
    pl = packaging.read_media_playlist(tmp_path / "out" / "playlist.m3u8")
    assert [round(d) for _, d in pl.segments] == [4, 2] and pl.init == "init.mp4"
    data = (tmp_path / "out" / "init.mp4").read_bytes() + (tmp_path / "out" / pl.segments[0][0]).read_bytes()
    (tmp_path / "first.mp4").write_bytes(data)
    with av.open(str(tmp_path / "first.mp4")) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.codec_context.sample_rate, stream.codec_context.channels) == (
            expected, 48000, 2)


def test_a_file_without_sound_is_refused(tmp_path):

    silent = tmp_path / "silent.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f",
                    "lavfi", "-i", "testsrc2=size=64x64:rate=10:duration=1", "-c:v", "libx264", str(silent)],
                   check=True)
    with pytest.raises(probe.MediaError, match="no audio stream"):
        probe.probe_audio(str(silent))
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(probe.MediaError, match="empty"):
        probe.probe_audio(str(tmp_path / "empty"))
