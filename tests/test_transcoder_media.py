"""transcoder_svc's probe, ladder, ffmpeg graphs and packaging on real clips from
../shared/media: probing, the ladder, limits, CMAF packaging (HLS master + DASH MPD
checked with the m3u8 and mpegdash parsers), codec families, the storyboard."""
from __future__ import annotations

import io
import os
import re
import signal
import threading
import time
from pathlib import Path

import av
import ffmpeg
import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from transcoder_svc import ffmpeg_graphs, ladder, packaging, probe

SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def shared(name: str) -> str:
    path = SHARED_MEDIA / name
    if not path.exists():
        pytest.skip(f"{path} is missing: ../shared/media must be beside the project")
    return str(path)


def info(width, height, **kw) -> probe.MediaInfo:
    base = dict(rotation=0, duration_s=10.0, frame_rate=30.0, video_codec="h264", video_stream_index=0,
                has_audio=True, audio_stream_index=1)
    base.update(kw)
    return probe.MediaInfo(width=width, height=height, **base)


@pytest.mark.parametrize(
    "size, expected",
    [
        ((3840, 2160), ["144p", "240p", "360p", "480p", "720p", "1080p", "1440p", "2160p"]),
        ((1920, 1080), ["144p", "240p", "360p", "480p", "720p", "1080p"]),
        ((1280, 720), ["144p", "240p", "360p", "480p", "720p"]),
        ((768, 432), ["144p", "240p", "360p", "432p"]),  # source size kept as top rung
        ((767, 431), ["144p", "240p", "360p", "430p"]),  # odd size: rounded down, never up
        ((767, 432), ["144p", "240p", "360p", "432p"]),  # odd long side: 766 wide, not 768
        ((720, 1280), ["144p", "240p", "360p", "480p", "720p"]),  # portrait: rung = short side
        ((320, 180), ["144p", "180p"]),
        ((160, 90), ["90p"]),  # smaller than the smallest rung: only the source size
        ((7680, 4320), ["144p", "240p", "360p", "480p", "720p", "1080p", "1440p", "2160p"]),  # capped at 2160p
    ],
)
def test_ladder_never_upscales(size, expected):
    rungs = ladder.ladder_for(info(*size))
    assert [r.name for r in rungs] == expected
    for r in rungs:
        assert r.width <= size[0] and r.height <= size[1]
        assert r.width % 2 == 0 and r.height % 2 == 0
        assert abs(r.width / r.height - size[0] / size[1]) < 0.02
    assert [r.video_bitrate_bps for r in rungs] == sorted(r.video_bitrate_bps for r in rungs)


def test_ladder_keeps_frame_rate_up_to_60_and_levels_follow():
    at30 = {r.name: r for r in ladder.ladder_for(info(1920, 1080, frame_rate=30.0))}
    at60 = {r.name: r for r in ladder.ladder_for(info(1920, 1080, frame_rate=59.94))}
    at120 = {r.name: r for r in ladder.ladder_for(info(1920, 1080, frame_rate=120.0))}
    assert at60["1080p"].frame_rate == 59.94 and at120["1080p"].frame_rate == 60
    assert at60["1080p"].video_bitrate_bps > at30["1080p"].video_bitrate_bps  # more frames, more bits
    assert at30["1080p"].h264_level == "4.0" and at60["1080p"].h264_level == "4.2"
    assert at30["1080p"].codecs == "avc1.640028"
    four_k = ladder.ladder_for(info(3840, 2160, frame_rate=60.0))[-1]
    assert four_k.h264_level == "5.2" and four_k.codecs_for("vp9") == "vp09.00.51.08"
    assert four_k.codecs_for("av1") == "av01.0.13M.08"  # level 5.1
    assert at30["720p"].codecs_for("av1") == "av01.0.05M.08"  # level 3.1


def test_default_ladder_is_constant_quality_under_a_bits_per_pixel_cap():
    rungs = {r.name: r for r in ladder.ladder_for(info(1920, 1080))}
    for r in rungs.values():
        crf, bpp = ladder.CONSTANT_QUALITY[int(r.name[:-1])]
        assert r.crf == crf and r.video_bitrate_bps == int(r.width * r.height * 30.0 * bpp)
    # a rung between standard sizes takes the row of the standard size under it
    native = ladder.ladder_for(info(768, 432, frame_rate=12.5))[-1]
    assert native.name == "432p" and native.video_bitrate_bps == int(768 * 432 * 12.5 * ladder.CONSTANT_QUALITY[360][1])
    # "average": the fixed ladder (per-title encoding's ceilings), no CRF
    fixed = {r.name: r for r in ladder.ladder_for(info(1920, 1080), "average")}
    assert {n: r.video_bitrate_bps for n, r in fixed.items()} == {n: b for n, b in
                                                                  ((f"{p}p", b) for p, b in ladder.LADDER) if n in fixed}
    assert all(r.crf == 0 for r in fixed.values())
    with pytest.raises(ValueError, match="unknown rate control 'vbr'"):
        ladder.ladder_for(info(640, 360), "vbr")


def test_encoder_args_constant_quality_per_family():
    cq = ladder.ladder_for(info(1280, 720))[-1]
    for family, cap in [("h264", ["-maxrate:v:0", str(cq.video_bitrate_bps)]), ("vp9", ["-b:v:0"]),
                        ("av1", ["-maxrate:v:0"])]:
        args = ffmpeg_graphs.encoder_args(family, [cq], 30.0)
        assert args[args.index("-crf:v:0") + 1] == f"{ladder.family_crf(family, cq.crf, top=True):g}"
        assert args[args.index(cap[0]) + 1] == str(cq.bitrate_for(family, top=True))
        assert args[args.index("-force_key_frames") + 1] == "expr:gte(t,n_forced*4)"  # a keyframe every segment
        if family != "vp9":
            assert args[args.index("-bufsize:v:0") + 1] == str(2 * cq.bitrate_for(family, top=True))
    h264 = ffmpeg_graphs.encoder_args("h264", [cq], 30.0)
    assert h264[h264.index("-sc_threshold") + 1] == "0"  # no keyframe but on segment boundaries
    fixed = ladder.ladder_for(info(1280, 720), "average")[-1]
    assert "-crf:v:0" not in ffmpeg_graphs.encoder_args("h264", [fixed], 30.0)
    rungs = ladder.ladder_for(info(1280, 720))
    effort = ffmpeg_graphs.Effort(x264_preset="slow", x264_small_presets=((240, "slower"),))
    args = ffmpeg_graphs.encoder_args("h264", rungs, 30.0, effort=effort)
    assert [args[args.index(f"-preset:v:{i}") + 1] for i in range(len(rungs))] == ["slower", "slower", "slow",
                                                                                    "slow", "slow"]


def test_top_rung_crf_is_capped_so_the_big_screen_keeps_its_quality():
    # 480p's row is CRF 24; as the top rung (a 480p source) it gets TOP_RUNG_MAX_CRF
    assert ladder.CONSTANT_QUALITY[480][0] > ladder.TOP_RUNG_MAX_CRF
    small = ladder.ladder_for(info(640, 480))
    assert small[-1].name == "480p" and small[-1].crf == ladder.TOP_RUNG_MAX_CRF
    assert [r.crf for r in small[:-1]] == [ladder.CONSTANT_QUALITY[p][0] for p in (144, 240, 360)]
    big = {r.name: r for r in ladder.ladder_for(info(1280, 720))}
    assert big["480p"].crf == ladder.CONSTANT_QUALITY[480][0]  # not the top: the table's
    assert big["720p"].crf == min(ladder.CONSTANT_QUALITY[720][0], ladder.TOP_RUNG_MAX_CRF)


@pytest.mark.parametrize("size, box, expected", [
    ((1920, 1080), (1920, 818, 0, 130), (1920, 818, 0, 130)),  # 2.35:1 film in a 16:9 frame
    ((1920, 1080), (1440, 1080, 240, 0), (1440, 1080, 240, 0)),  # 4:3 pillarboxed
    ((1920, 1080), (1920, 819, 0, 131), (1920, 818, 0, 132)),  # odd: even sizes and offsets
    ((640, 480), (630, 478, 4, 0), None),  # a few dark edge pixels: not bars
    ((1920, 1080), (1920, 900, 0, 20), None),  # off-centre: a dark scene edge, not a letterbox
    ((1920, 1080), (1920, 400, 0, 340), None),  # would leave under half the frame
    ((1280, 720), (1280, 720, 0, 0), None),
])
def test_letterbox_crops_only_centred_bars(size, box, expected):
    assert probe.letterbox(*size, box) == expected


def test_cropped_ladder_keeps_rung_names_and_display_proportions():
    whole = ladder.ladder_for(info(1920, 1080))
    cropped = ladder.ladder_for(info(1920, 1080, crop=(1920, 818, 0, 130)))
    assert [r.name for r in cropped] == [r.name for r in whole]  # labelled as the frame
    for w, c in zip(whole, cropped):
        assert c.width == w.width and c.width % 2 == 0 and c.height % 2 == 0
        assert abs(c.width / c.height - 1920 / 818) < 0.03  # the picture's shape: nothing stretched
        assert c.crf == w.crf  # the frame's row of the table
        assert c.video_bitrate_bps == int(c.width * c.height * 30.0 * ladder.CONSTANT_QUALITY[int(c.name[:-1])][1])
    assert (cropped[-1].width, cropped[-1].height) == (1920, 818)


def test_limits_reject_with_reason():
    limits = probe.Limits(max_duration_s=600, max_long_side=1920, max_short_side=1080, max_source_bytes=10**9)
    probe.check_limits(info(1080, 1920, duration_s=600), 10**9, limits)  # portrait 1080p fits
    with pytest.raises(probe.MediaError, match="601 s long; the limit is 600 s"):
        probe.check_limits(info(1920, 1080, duration_s=601), 1000, limits)
    with pytest.raises(probe.MediaError, match="3840x2160; the limit is 1920x1080"):
        probe.check_limits(info(3840, 2160), 1000, limits)
    with pytest.raises(probe.MediaError, match="the limit is 1.00 GB"):
        probe.check_limits(info(640, 360), 2 * 10**9, limits)


def test_probe_reads_rotation_and_display_size():
    i = probe.probe(shared("cockatoo_portrait_rot90_h264.mp4"))
    assert (i.width, i.height) == (406, 720)  # coded 720x406, displayed portrait
    assert i.rotation in (90, 270)
    assert i.duration_s == pytest.approx(14.0, abs=0.1)


def test_probe_picks_the_video_stream_when_audio_comes_first():
    i = probe.probe(shared("friday_480p_h264_aac.mp4"))  # audio is stream 0, video stream 1
    assert i.video_stream_index == 1 and i.audio_stream_index == 0
    assert (i.width, i.height) == (640, 480) and i.has_audio


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"),
    (b"hello, this is not a video\n" * 100, "not a video"),
])
def test_probe_rejects_non_video(tmp_path, content, reason):
    path = tmp_path / "upload"
    path.write_bytes(content)
    with pytest.raises(probe.MediaError) as err:
        probe.probe(str(path))
    assert reason in err.value.reason


def test_probe_rejects_audio_only(tmp_path):
    import numpy as np

    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate = 48000
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(probe.MediaError) as err:
        probe.probe(str(path))
    assert "no video stream" in err.value.reason


def _decode_segment(folder: Path, init: str, segment: str):
    """Opens init + one media segment the way a player joins them."""
    blob = (folder / init).read_bytes() + (folder / segment).read_bytes()
    return av.open(io.BytesIO(blob))


@pytest.fixture(scope="module")
def friday_ladder(tmp_path_factory):
    out = tmp_path_factory.mktemp("friday")
    src = shared("friday_480p_h264_aac.mp4")
    i = probe.probe(src)
    rungs = ladder.ladder_for(i)
    return out, i, rungs, ffmpeg_graphs.transcode(src, str(out), i, rungs, timeout_s=300)


def test_cmaf_ladder_hls_and_dash_from_real_clip(friday_ladder):
    out, i, rungs, result = friday_ladder
    assert [r.height for r in result.renditions] == [144, 240, 360, 480]
    assert result.duration_s == pytest.approx(i.duration_s, abs=0.1)

    # HLS master: every video rung with CODECS/BANDWIDTH/RESOLUTION, audio as a rendition group
    master = m3u8.load(str(out / "h264" / "master.m3u8"))
    assert master.is_variant and len(master.playlists) == len(rungs)
    assert [m.type for m in master.media] == ["AUDIO"] and master.media[0].uri == "audio/playlist.m3u8"
    timelines = []
    for r, variant in zip(result.renditions, master.playlists):
        si = variant.stream_info
        assert si.resolution == (r.width, r.height) and si.codecs == r.codecs and si.bandwidth == r.bitrate_bps
        assert si.audio == "aud" and si.average_bandwidth <= si.bandwidth
        assert r.codecs.startswith("avc1.64") and r.codecs.endswith(",mp4a.40.2") and r.container == "fmp4"
        # peak within the VBV cap (1.5x target) plus audio, with room for the short clip
        assert r.bitrate_bps < 2.0 * (r.average_bitrate_bps if r.height < 240 else
                                      next(x for x in rungs if x.height == r.height).video_bitrate_bps
                                      + ffmpeg_graphs.AUDIO_BITRATE_BPS)
        folder = out / "h264" / variant.uri.split("/")[0]
        media_pl = m3u8.load(str(out / "h264" / variant.uri))
        assert media_pl.playlist_type == "vod" and media_pl.is_endlist
        assert media_pl.segment_map[0].uri.startswith("init")
        durations = [s.duration for s in media_pl.segments]
        assert all(d <= ladder.SEGMENT_SECONDS + 0.01 for d in durations)
        timelines.append(durations)
        for seg in media_pl.segments:  # every segment decodes, starts on a keyframe, right size
            with _decode_segment(folder, media_pl.segment_map[0].uri, seg.uri) as c:
                v = c.streams.video[0]
                assert (v.codec_context.name, v.codec_context.width, v.codec_context.height) == ("h264", r.width, r.height)
                assert next(c.demux(v)).is_keyframe
    assert all(t == timelines[0] for t in timelines)  # keyframes aligned: rungs switch cleanly

    audio_pl = m3u8.load(str(out / "h264" / "audio" / "playlist.m3u8"))
    with _decode_segment(out / "h264" / "audio", audio_pl.segment_map[0].uri, audio_pl.segments[0].uri) as c:
        a = c.streams.audio[0].codec_context
        assert (a.name, a.channels, a.sample_rate, a.profile) == ("aac", 2, 48000, "LC")

    # DASH MPD over the very same files
    mpd = MPEGDASHParser.parse(str(out / "h264" / "manifest.mpd"))
    assert mpd.type == "static"
    video_set, audio_set = mpd.periods[0].adaptation_sets
    assert video_set.content_type == "video" and audio_set.content_type == "audio"
    reps = {rep.id: rep for rep in video_set.representations}
    assert sorted(reps, key=lambda n: int(n[:-1])) == [r.name for r in rungs]
    for r in result.renditions:
        rep = reps[r.name]
        assert (rep.width, rep.height) == (r.width, r.height) and rep.codecs == r.codecs.split(",")[0]
        tmpl = rep.segment_templates[0]
        files = sorted(p.name for p in (out / "h264" / r.name).glob("segment_*.m4s"))
        timeline = [s.d for s in tmpl.segment_timelines[0].Ss]
        assert len(timeline) == len(files)
        assert sum(timeline) / tmpl.timescale == pytest.approx(r.duration_s, abs=0.01)
        first = tmpl.media.replace("$RepresentationID$", r.name).replace("$Number%05d$", f"{tmpl.start_number:05d}")
        assert (out / "h264" / first).exists() and (out / "h264" / tmpl.initialization).exists()

    assert result.poster_path and (out / result.poster_path).stat().st_size > 1000
    assert (result.poster_width, result.poster_height) == (640, 480)


def test_storyboard_sprite_and_vtt(friday_ladder):
    out, i, _, result = friday_ladder
    sb = ladder.storyboard_for(i)
    with av.open(str(out / result.storyboard_path)) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (result.storyboard_width, result.storyboard_height)
        assert (frame.width, frame.height) == (sb.columns * 160, sb.rows * 120)
    vtt = (out / result.storyboard_vtt_path).read_text()
    assert vtt.startswith("WEBVTT")
    cues = re.findall(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})\n(\S+)#xywh=(\d+),(\d+),(\d+),(\d+)", vtt)
    assert len(cues) == sb.count == 4  # 6.2 s, one tile per 2 s
    assert cues[0][:2] == ("00:00:00.000", "00:00:02.000") and cues[-1][1] == "00:00:06.167"
    for _, _, name, x, y, w, h in cues:
        assert name == "storyboard.jpg"
        assert int(x) + int(w) <= result.storyboard_width and int(y) + int(h) <= result.storyboard_height


def test_vp9_and_av1_families_share_one_decode(tmp_path):
    src = shared("cockatoo_portrait_rot90_h264.mp4")  # also: rotation is applied, portrait kept
    i = probe.probe(src)
    rungs = ladder.ladder_for(i)[:2]
    result = ffmpeg_graphs.transcode(src, str(tmp_path), i, rungs, families=("h264", "vp9", "av1"),
                             timeout_s=600, storyboard=False, poster=False)
    assert [f.codec for f in result.families] == ["h264", "vp9", "av1"]
    timelines = set()
    for fam, decoder, prefix in [("h264", "h264", "avc1."), ("vp9", "vp9", "vp09.00."), ("av1", None, "av01.0.")]:
        fam_out = next(f for f in result.families if f.codec == fam)
        assert [(r.width, r.height) for r in fam_out.renditions] == [(144, 256), (240, 426)]  # portrait
        master = m3u8.load(str(tmp_path / fam / "master.m3u8"))
        assert all(p.stream_info.codecs.startswith(prefix) for p in master.playlists)
        assert MPEGDASHParser.parse(str(tmp_path / fam / "manifest.mpd")).periods[0].adaptation_sets[0] \
            .representations[0].codecs.startswith(prefix)
        for r in fam_out.renditions:
            pl = m3u8.load(str(tmp_path / r.playlist_path))
            timelines.add(tuple(s.duration for s in pl.segments))
            assert r.duration_s == pytest.approx(14.0, abs=0.1)
            with _decode_segment(tmp_path / fam / r.name, pl.segment_map[0].uri, pl.segments[-1].uri) as c:
                v = c.streams.video[0].codec_context
                assert v.name in ((decoder,) if decoder else ("libdav1d", "av1", "libaom-av1"))
                assert (v.width, v.height) == (r.width, r.height)
    assert len(timelines) == 1  # every family and rung cut at the same instants


def test_unknown_family_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown codec family 'hevc'"):
        ffmpeg_graphs.transcode("x", str(tmp_path), info(640, 360), ladder.ladder_for(info(640, 360)),
                                families=("hevc",))


def test_truncated_file_fails_with_reason(tmp_path):
    src = shared("car-detection_truncated_1400000B.mp4")
    i = probe.probe(src)  # the header is intact: probing alone cannot tell
    with pytest.raises(probe.MediaError) as err:
        ffmpeg_graphs.transcode(src, str(tmp_path), i, ladder.ladder_for(i)[:1], timeout_s=300)
    assert "truncated" in err.value.reason


def test_timeout_kills_ffmpeg(tmp_path):
    src = shared("sintel_1080p_h264_letterbox.mp4")
    i = probe.probe(src)
    with pytest.raises(probe.MediaError) as err:
        ffmpeg_graphs.transcode(src, str(tmp_path), i, ladder.ladder_for(i), timeout_s=0.5)
    assert "longer than" in err.value.reason
    # no ffmpeg left behind writing into the output directory
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    time.sleep(1.0)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_an_encoder_killed_by_a_signal_is_retried_not_blamed_on_the_file(tmp_path):
    """A crash or the OOM killer is the worker's fault: EncoderKilled (retried by the
    consumer), never a MediaError that would fail the creator's video."""
    src = shared("sintel_1080p_h264_letterbox.mp4")
    args = [ffmpeg_graphs.ffmpeg_exe(), "-nostdin", "-i", src, "-f", "null", "-"]
    killer = threading.Timer(0.5, lambda: [os.kill(int(pid), signal.SIGKILL) for pid in _children_named("ffmpeg")])
    killer.start()
    try:
        with pytest.raises(ffmpeg_graphs.EncoderKilled) as err:
            ffmpeg_graphs.run(args, timeout_s=60, what="decoding")
    finally:
        killer.cancel()
    assert not isinstance(err.value, probe.MediaError) and "signal 9" in str(err.value)


def _children_named(name: str) -> list[str]:
    me = str(os.getpid())
    return [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _is_child(p, me, name)]


def _is_child(proc: Path, parent: str, name: str) -> bool:
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        return fields[1] == parent and name in (proc / "comm").read_text()
    except OSError:
        return False


def _frames(folder: Path, playlist: Path) -> int:
    pl = m3u8.load(str(playlist))
    blob = (folder / pl.segment_map[0].uri).read_bytes() + b"".join((folder / s.uri).read_bytes() for s in pl.segments)
    with av.open(io.BytesIO(blob)) as c:
        return sum(1 for p in c.demux(c.streams.video[0]) if p.size)


def test_chunked_encode_matches_whole_file(tmp_path, friday_ladder):
    whole_dir, i, rungs, whole = friday_ladder
    src = shared("friday_480p_h264_aac.mp4")
    rungs = rungs[:2]
    plan = ladder.chunk_plan(i.duration_s, chunk_seconds=4)
    assert plan == [(0, 4), (4, 0.0)]  # 6.2 s: a 4 s chunk and the rest
    chunks = [ffmpeg_graphs.encode_chunk(src, str(tmp_path / f"chunk{k}"), i, rungs, ("h264",), start, length,
                                         timeout_s=300)
              for k, (start, length) in enumerate(plan)]
    joined = ffmpeg_graphs.join_chunks(chunks, src, str(tmp_path / "out"), i, rungs, ("h264",), timeout_s=300,
                               storyboard=False, poster=False)
    frame = 1 / i.frame_rate
    for a, b in zip(joined.renditions, whole.renditions):
        assert (a.name, a.width, a.height, a.codecs) == (b.name, b.width, b.height, b.codecs)
        assert abs(a.duration_s - b.duration_s) <= frame
        assert abs(_frames(tmp_path / "out" / "h264" / a.name, tmp_path / "out" / a.playlist_path)
                   - _frames(whole_dir / "h264" / b.name, whole_dir / b.playlist_path)) <= 1
        seg_a = [s.duration for s in m3u8.load(str(tmp_path / "out" / a.playlist_path)).segments]
        seg_b = [s.duration for s in m3u8.load(str(whole_dir / b.playlist_path)).segments]
        assert len(seg_a) == len(seg_b) and all(abs(x - y) <= frame for x, y in zip(seg_a, seg_b))
    assert m3u8.load(str(tmp_path / "out" / "h264" / "master.m3u8")).media[0].type == "AUDIO"


def test_letterboxed_source_is_cropped_and_encoded_without_its_bars(tmp_path):
    src = shared("friday_480p_h264_aac.mp4")
    boxed = str(tmp_path / "boxed.mp4")  # friday's picture squeezed into 640x272 between black bars
    picture = (ffmpeg.input(src, t=2).video.filter("scale", 640, 272)
               .filter("pad", 640, 480, 0, 104, color="black"))
    ffmpeg_graphs.run(ffmpeg_graphs.command(picture.output(boxed, vcodec="libx264", preset="ultrafast", g=25)),
                      120, "test clip")
    plain = probe.probe(src)
    assert ffmpeg_graphs.detect_crop(src, plain, str(tmp_path)).crop is None  # no bars, no crop
    i = ffmpeg_graphs.detect_crop(boxed, probe.probe(boxed), str(tmp_path))
    w, h, x, y = i.crop  # the bars, give or take friday's own darkest edge rows
    assert (w, x) == (640, 0) and 104 <= y and y + h <= 376 and h >= 266 and (i.width, i.height) == (640, 480)
    rungs = ladder.ladder_for(i)
    result = ffmpeg_graphs.transcode(boxed, str(tmp_path / "out"), i, rungs, timeout_s=300, storyboard=False)
    top = result.renditions[-1]
    assert (top.name, top.width, top.height) == ("480p", 640, h)
    pl = m3u8.load(str(tmp_path / "out" / top.playlist_path))
    with _decode_segment(tmp_path / "out" / "h264" / top.name, pl.segment_map[0].uri, pl.segments[0].uri) as c:
        luma = next(c.decode(video=0)).to_ndarray(format="gray")
    assert luma.shape == (h, 640)
    assert luma[0].max() > 60 and luma[-1].max() > 60  # picture to the edge (a bar row is black throughout)


def _audio_of(folder: Path, segment_index: int = 0):
    """(codec, channels, rate) of an audio rendition's init + one segment, as a player joins them."""
    pl = m3u8.load(str(folder / "playlist.m3u8"))
    with _decode_segment(folder, pl.segment_map[0].uri, pl.segments[segment_index].uri) as c:
        a = c.streams.audio[0].codec_context
        assert sum(f.samples for f in c.decode(audio=0)) > 0  # it decodes, not just parses
        return a.name, a.channels, a.sample_rate


@pytest.mark.parametrize("chunked", [False, True], ids=["whole", "chunked"])
def test_vp9_family_gets_opus_audio_h264_keeps_aac(tmp_path, chunked):
    """AAC-LC for H.264, Opus beside it for VP9 (whole-file and chunked paths alike): the
    VP9 master's variants and its MPD's audio set name "opus", the H.264 ones mp4a.40.2."""
    src = shared("friday_480p_h264_aac.mp4")  # 6.2 s, AAC
    i = probe.probe(src)
    rungs = ladder.ladder_for(i)[:1]  # 144p keeps it quick
    families = ("h264", "vp9")
    if chunked:
        chunks = [ffmpeg_graphs.encode_chunk(src, str(tmp_path / f"chunk{k}"), i, rungs, families, start, length,
                                     timeout_s=300)
                  for k, (start, length) in enumerate(ladder.chunk_plan(i.duration_s, chunk_seconds=4))]
        out = tmp_path / "out"
        result = ffmpeg_graphs.join_chunks(chunks, src, str(out), i, rungs, families, timeout_s=300,
                                   storyboard=False, poster=False)
    else:
        out = tmp_path
        result = ffmpeg_graphs.transcode(src, str(out), i, rungs, families=families, timeout_s=300,
                                 storyboard=False, poster=False)
    expected = {"h264": ("aac", "mp4a.40.2"), "vp9": ("opus", "opus")}
    for fam in result.families:
        name, codecs = expected[fam.codec]
        assert fam.audio_codec == name
        master = m3u8.load(str(out / fam.codec / "master.m3u8"))
        assert [(m.type, m.group_id, m.uri) for m in master.media] == [("AUDIO", "aud", "audio/playlist.m3u8")]
        for variant, r in zip(master.playlists, fam.renditions):
            assert variant.stream_info.codecs.split(",")[1] == codecs and variant.stream_info.audio == "aud"
            assert r.codecs == variant.stream_info.codecs
        video_set, audio_set = MPEGDASHParser.parse(str(out / fam.codec / "manifest.mpd")).periods[0].adaptation_sets
        assert audio_set.content_type == "audio" and audio_set.mime_type == "audio/mp4"
        (rep,) = audio_set.representations
        assert rep.codecs == codecs and rep.audio_sampling_rate == "48000"
        tmpl = rep.segment_templates[0]
        assert (out / fam.codec / tmpl.initialization).exists()
        audio_dir = out / fam.codec / "audio"
        pl = m3u8.load(str(audio_dir / "playlist.m3u8"))
        # the audio covers the video, and DASH's timeline lists the very segments HLS does
        assert sum(s.duration for s in pl.segments) == pytest.approx(i.duration_s, abs=0.1)
        assert len(tmpl.segment_timelines[0].Ss) == len(pl.segments)
        for k in range(len(pl.segments)):
            assert _audio_of(audio_dir, k) == (name, 2, 48000)
    opus_fam = next(f for f in result.families if f.codec == "vp9")
    audio_pl = packaging.read_media_playlist(out / "vp9" / "audio" / "playlist.m3u8")
    opus_peak, _ = packaging._bitrates(out / "vp9" / "audio", audio_pl)
    assert opus_peak < 1.5 * ffmpeg_graphs.OPUS_BITRATE_BPS  # BANDWIDTH counts the Opus track at its size
    assert all(r.bitrate_bps > opus_peak for r in opus_fam.renditions)


def test_chunk_plan_carries_the_crop():
    from transcoder_svc.jobs.chunked import ChunkPlan

    cropped = info(1920, 1080, crop=(1920, 818, 0, 130))
    plan = ChunkPlan(info=cropped, rungs=ladder.ladder_for(cropped), families=["h264"], added=[],
                     chunks=[(0, 8), (8, 0.0)])
    back = ChunkPlan.from_json(plan.to_json())
    assert back.info == cropped and back.info.crop == (1920, 818, 0, 130)  # every chunk crops alike
    assert [(r.width, r.height) for r in back.rungs] == [(r.width, r.height) for r in plan.rungs]
