"""The top rung's quality check (transcoder_svc/top_rung.py): the decision, and the
whole-file and chunk encodes re-encoding the top rung before anything is packaged."""
from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from longtail_common.config import Config
from transcoder_svc import ffmpeg_graphs, ladder, packaging, probe
from transcoder_svc.jobs.base import Job
from transcoder_svc.top_rung import TopRungCheck


def test_a_top_rung_short_of_the_goal_gets_a_lower_crf_from_the_measured_point():
    check = TopRungCheck(min_vmaf=93.0, vmaf_per_crf=1.0, min_crf=18.0)
    # Big Buck Bunny's 720p at CRF 23 scores 90.9: 2.1 points short -> 20.9, a half step down
    assert check.retry_crf(23.0, 90.9, 1_360_000, 3_000_000) == 20.5
    assert check.retry_crf(23.0, 92.6, 1_000_000, 3_000_000) == 22.5
    assert TopRungCheck(vmaf_per_crf=2.0).retry_crf(23.0, 91.0, 1e6, 3e6) == 22.0  # a steeper slope, a smaller step


def test_a_top_rung_at_the_goal_or_that_cannot_gain_is_kept():
    check = TopRungCheck(min_vmaf=93.0, min_crf=18.0)
    assert check.retry_crf(23.0, 93.0, 1e6, 3e6) is None  # reached it
    assert check.retry_crf(23.0, 97.5, 1e6, 3e6) is None
    assert check.retry_crf(0.0, 80.0, 1e6, 3e6) is None  # an average-bitrate rung: no CRF to lower
    assert check.retry_crf(18.0, 85.0, 1e6, 3e6) is None  # at the floor already
    assert check.retry_crf(23.0, 85.0, 2.9e6, 3e6) is None  # its cap binds: a lower CRF buys nothing
    assert check.retry_crf(23.0, 86.0, 1e6, 3e6) == 18.0  # far short: bounded by the floor
    assert check.retry_crf(23.0, 60.0, 1e6, 3e6) is None  # implausibly short: a measurement error, not a CRF


def test_the_check_is_on_by_default_and_config_can_turn_it_off():
    tc = Config().transcoder
    assert TopRungCheck.from_config(tc) == TopRungCheck(min_vmaf=93.0, vmaf_per_crf=1.0, min_crf=18.0, subsample=4,
                                                        score_below_psnr_db=46.0)
    assert TopRungCheck.from_config(dataclasses.replace(tc, top_rung_min_vmaf=0)) is None
    with pytest.raises(ValueError, match="top_rung"):
        TopRungCheck.from_config(dataclasses.replace(tc, top_rung_vmaf_per_crf=0))
    with pytest.raises(ValueError, match="top_rung_score_below_psnr_db"):
        TopRungCheck.from_config(dataclasses.replace(tc, top_rung_score_below_psnr_db=-1))


def test_only_a_top_rung_under_the_psnr_gate_and_its_cap_is_scored():
    check = TopRungCheck(score_below_psnr_db=46.0)
    assert check.wants_score(41.3, 1.36e6, 2.5e6)  # Big Buck Bunny's 720p at CRF 23 (VMAF 90.7)
    assert not check.wants_score(47.2, 1.16e6, 2.0e6)  # the lowest PSNR of a top rung at VMAF >= 94.7 on the bench
    assert check.wants_score(None, 1e6, 3e6)  # not reported: scored
    assert TopRungCheck(score_below_psnr_db=0).wants_score(60.0, 1e6, 3e6)  # 0: every top rung is scored
    # The test card at CRF 23 (44.6 dB) fills 92 % of its cap: no lower CRF could add bits, so
    # nothing a score says would change it.
    assert not check.wants_score(44.6, 2.32e6, 2.53e6)
    assert not TopRungCheck(score_below_psnr_db=0).wants_score(44.6, 2.32e6, 2.53e6)


def test_first_encodes_check_their_top_rung_upgrades_encode_the_recorded_one():
    class Ctx:
        cfg = Config()

    job = Job.__new__(Job)
    job.ctx, job.added = Ctx(), []
    assert job.top_check() is not None
    job.added = ["av1"]
    assert job.top_check() is None


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[str, probe.MediaInfo]:
    path = tmp_path_factory.mktemp("top") / "clip.mp4"
    subprocess.run([ffmpeg_graphs.ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=s=480x270:r=15:d=4", "-c:v", "libx264", "-preset", "ultrafast",
                    "-qp", "0", "-pix_fmt", "yuv420p", str(path)], check=True)
    return str(path), probe.probe(str(path))


# A goal no encode reaches (VMAF 100 is a perfect copy): the check must redo the top rung,
# here at its floor (a slope that small asks for far more than the floor).
UNREACHABLE = TopRungCheck(min_vmaf=100.0, vmaf_per_crf=0.01, min_crf=12.0, subsample=2, max_shortfall=100.0,
                           score_below_psnr_db=0)
EASY = TopRungCheck(min_vmaf=1.0)


def uncapped(info: probe.MediaInfo) -> list[ladder.Rung]:
    """The default ladder, its top rung's cap raised out of reach (the test card is busy
    enough to reach the table's: the check would rightly leave it)."""
    rungs = ladder.ladder_for(info)
    return rungs[:-1] + [dataclasses.replace(rungs[-1], video_bitrate_bps=rungs[-1].video_bitrate_bps * 10)]


def test_whole_file_encode_redoes_a_short_top_rung_before_packaging(tmp_path, clip):
    src, info = clip
    rungs = uncapped(info)
    top = rungs[-1]
    kept = ffmpeg_graphs.transcode(src, str(tmp_path / "kept"), info, rungs, storyboard=False, poster=False,
                                   top_check=EASY)
    assert kept.rungs == rungs
    redone = ffmpeg_graphs.transcode(src, str(tmp_path / "redone"), info, rungs, storyboard=False, poster=False,
                                     top_check=UNREACHABLE)
    assert redone.rungs[:-1] == rungs[:-1] and redone.rungs[-1].crf == 12.0
    rate = {r.name: r.average_bitrate_bps for r in redone.renditions}
    kept_rate = {r.name: r.average_bitrate_bps for r in kept.renditions}
    assert rate[top.name] > kept_rate[top.name] * 1.2  # the packaged top rung is the new encode
    assert {n: v for n, v in rate.items() if n != top.name} == {n: v for n, v in kept_rate.items() if n != top.name}
    out = tmp_path / "redone"
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith((".top_rung", "vmaf_"))]
    assert leftovers == []  # nothing but the output is stored
    folder = out / "h264" / top.name
    segments = sorted(p.name for p in folder.glob("*.m4s"))
    assert segments == sorted(p.name for p in (tmp_path / "kept" / "h264" / top.name).glob("*.m4s"))
    init = packaging.read_media_playlist(folder / "playlist.m3u8").init  # its own name (init.mp4, not init_N)
    assert (folder / init).is_file() and len(list(folder.glob("init*.mp4"))) == 1


def test_chunk_encode_redoes_its_own_short_top_rung(tmp_path, clip):
    src, info = clip
    rungs = uncapped(info)
    top = rungs[-1]
    kept = ffmpeg_graphs.encode_chunk(src, str(tmp_path / "kept"), info, rungs, ["h264"], 0.0, 4.0, top_check=EASY)
    redone = ffmpeg_graphs.encode_chunk(src, str(tmp_path / "redone"), info, rungs, ["h264"], 0.0, 4.0,
                                        top_check=UNREACHABLE)
    size = {n: os.path.getsize(p) for n, p in redone["h264"].items()}
    kept_size = {n: os.path.getsize(p) for n, p in kept["h264"].items()}
    assert size[top.name] > kept_size[top.name] * 1.2
    assert all(size[r.name] == kept_size[r.name] for r in rungs[:-1])
    assert not (Path(tmp_path / "redone") / ".top_rung").exists()


def test_a_codec_upgrade_encodes_av1_at_the_popular_preset():
    from transcoder_svc.jobs.base import popular_svtav1_preset

    class Ctx:
        cfg = Config()

    job = Job.__new__(Job)
    job.ctx, job.added = Ctx(), []
    assert job.effort().svtav1_preset == ffmpeg_graphs.SVTAV1_PRESET  # a first encode: the fast default
    job.added = ["av1"]  # an upgrade adding only AV1 (no H.264 re-encode) still takes the slower AV1
    assert job.effort().svtav1_preset == Config().transcoder.popular_svtav1_preset == 8
    args = ffmpeg_graphs.encoder_args("av1", ladder.ladder_for(probe.MediaInfo(
        width=1280, height=720, rotation=0, duration_s=10.0, frame_rate=30.0, video_codec="h264",
        video_stream_index=0, has_audio=False, audio_stream_index=-1)), 30.0, effort=job.effort())
    assert args[args.index("-preset") + 1] == "8"
    with pytest.raises(ValueError, match="popular_svtav1_preset"):
        popular_svtav1_preset(dataclasses.replace(Config(), transcoder=dataclasses.replace(
            Config().transcoder, popular_svtav1_preset=14)))


def test_the_encoder_reports_the_top_rungs_psnr_and_a_high_one_is_not_scored(tmp_path, clip):
    src, info = clip
    rungs = uncapped(info)
    log = str(tmp_path / "psnr.vstats")
    ffmpeg_graphs.run(ffmpeg_graphs.build_command(src, str(tmp_path / "measured"), info, rungs, storyboard=None,
                                                  top_psnr_log=log), 600, "test encode")
    psnr = ffmpeg_graphs.top_rung_psnr(log)
    assert psnr is not None and 30.0 < psnr < 99.0, psnr
    assert not os.path.exists(log)  # read once, then gone: not an output
    assert ffmpeg_graphs.top_rung_psnr(log) is None
    Path(log).write_text("out=  0 st=  0 frame=     0 q= 28.0 PSNR= garbled\n")
    assert ffmpeg_graphs.top_rung_psnr(log) is None and not os.path.exists(log)  # unreadable: scored, and gone
    # The same unreachable goal: under a gate below the measured PSNR nothing is scored or
    # redone; under a gate above it, the rung is scored and redone.
    gated = dataclasses.replace(UNREACHABLE, score_below_psnr_db=psnr - 1.0)
    kept = ffmpeg_graphs.transcode(src, str(tmp_path / "kept"), info, rungs, storyboard=False, poster=False,
                                   top_check=gated)
    assert kept.rungs == rungs
    scored = dataclasses.replace(UNREACHABLE, score_below_psnr_db=psnr + 1.0)
    redone = ffmpeg_graphs.transcode(src, str(tmp_path / "redone"), info, rungs, storyboard=False, poster=False,
                                     top_check=scored)
    assert redone.rungs[-1].crf == 12.0
    assert not list((tmp_path / "redone").rglob(".top_rung*"))
