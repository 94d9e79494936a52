"""transcoder_svc.media on real clips from ../shared/media: probing, the ladder, HLS output."""
from __future__ import annotations

import os
import re
from pathlib import Path

import av
import pytest

from transcoder_svc import media

SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def shared(name: str) -> str:
    path = SHARED_MEDIA / name
    if not path.exists():
        pytest.skip(f"{path} is missing: ../shared/media must be beside the project")
    return str(path)


def info(width, height, **kw) -> media.MediaInfo:
    base = dict(rotation=0, duration_s=10.0, frame_rate=30.0, video_codec="h264", video_stream_index=0,
                has_audio=True, audio_stream_index=1)
    base.update(kw)
    return media.MediaInfo(width=width, height=height, **base)


@pytest.mark.parametrize(
    "size, expected",
    [
        ((1920, 1080), ["240p", "360p", "480p", "720p", "1080p"]),
        ((1280, 720), ["240p", "360p", "480p", "720p"]),
        ((768, 432), ["240p", "360p", "432p"]),  # source size kept as top rung
        ((767, 431), ["240p", "360p", "430p"]),  # odd size: rounded down, never up
        ((720, 1280), ["240p", "360p", "480p", "720p"]),  # portrait: rung = short side
        ((320, 180), ["180p"]),  # smaller than the smallest rung: only the source size
    ],
)
def test_ladder_never_upscales(size, expected):
    rungs = media.ladder_for(info(*size))
    assert [r.name for r in rungs] == expected
    for r in rungs:
        assert r.width <= size[0] and r.height <= size[1]
        assert r.width % 2 == 0 and r.height % 2 == 0
        assert abs(r.width / r.height - size[0] / size[1]) < 0.02
    assert [r.video_bitrate_bps for r in rungs] == sorted(r.video_bitrate_bps for r in rungs)


def test_probe_reads_rotation_and_display_size():
    i = media.probe(shared("cockatoo_portrait_rot90_h264.mp4"))
    assert (i.width, i.height) == (406, 720)  # coded 720x406, displayed portrait
    assert i.rotation in (90, 270)
    assert i.duration_s == pytest.approx(14.0, abs=0.1)


def test_probe_picks_the_video_stream_when_audio_comes_first():
    i = media.probe(shared("friday_480p_h264_aac.mp4"))  # audio is stream 0, video stream 1
    assert i.video_stream_index == 1 and i.audio_stream_index == 0
    assert (i.width, i.height) == (640, 480) and i.has_audio


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"),
    (b"hello, this is not a video\n" * 100, "not a video"),
])
def test_probe_rejects_non_video(tmp_path, content, reason):
    path = tmp_path / "upload"
    path.write_bytes(content)
    with pytest.raises(media.MediaError) as err:
        media.probe(str(path))
    assert reason in err.value.reason


def test_probe_rejects_audio_only(tmp_path):
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        import numpy as np

        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate = 48000
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(media.MediaError) as err:
        media.probe(str(path))
    assert "no video stream" in err.value.reason


def test_hls_ladder_from_real_clip(tmp_path):
    src = shared("friday_480p_h264_aac.mp4")
    i = media.probe(src)
    rungs = media.ladder_for(i)
    out = media.transcode_hls(src, str(tmp_path), i, rungs, timeout_s=300)
    assert [r.height for r in out.renditions] == [240, 360, 480]
    assert out.duration_s == pytest.approx(i.duration_s, abs=0.5)
    master = (tmp_path / "master.m3u8").read_text()
    for r in out.renditions:
        assert f"RESOLUTION={r.width}x{r.height}" in master
        assert r.codecs.startswith("avc1.64") and r.codecs.endswith("mp4a.40.2")
        assert f'CODECS="{r.codecs}"' in master
        playlist = tmp_path / r.playlist_path
        text = playlist.read_text()
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and "#EXT-X-ENDLIST" in text
        durations = [float(d) for d in re.findall(r"#EXTINF:([0-9.]+)", text)]
        assert all(d <= media.SEGMENT_SECONDS + 0.5 for d in durations)
        # each segment decodes, starts on a keyframe and has the rung's size and audio
        for seg in sorted(playlist.parent.glob("segment_*.ts")):
            with av.open(str(seg)) as c:
                v = c.streams.video[0]
                assert (v.codec_context.width, v.codec_context.height) == (r.width, r.height)
                assert len(c.streams.audio) == 1
                first = next(c.demux(v))
                assert first.is_keyframe
        # measured bitrate within a sane band of the target (VBV capped at 1.5x)
        assert r.bitrate_bps < 2.0 * (next(x for x in rungs if x.height == r.height).video_bitrate_bps
                                      + media.AUDIO_BITRATE_BPS)
    assert out.poster_path and (tmp_path / out.poster_path).stat().st_size > 1000
    assert (out.poster_width, out.poster_height) == (640, 480)


def test_truncated_file_fails_with_reason(tmp_path):
    src = shared("car-detection_truncated_1400000B.mp4")
    i = media.probe(src)  # the header is intact: probing alone cannot tell
    with pytest.raises(media.MediaError) as err:
        media.transcode_hls(src, str(tmp_path), i, media.ladder_for(i)[:1], timeout_s=300)
    assert "truncated" in err.value.reason


def test_timeout_kills_ffmpeg(tmp_path):
    src = shared("sintel_1080p_h264_letterbox.mp4")
    i = media.probe(src)
    with pytest.raises(media.MediaError) as err:
        media.transcode_hls(src, str(tmp_path), i, media.ladder_for(i), timeout_s=0.5)
    assert "longer than" in err.value.reason
    # no ffmpeg left behind writing into the output directory
    before = sorted(os.listdir(tmp_path))
    import time

    time.sleep(1.0)
    assert sorted(os.listdir(tmp_path)) == before
