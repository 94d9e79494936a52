"""bench/peer_bench.py: PeerTube's bitrate, frame-rate and resolution rules as re-implemented
there, against values worked out by hand from PeerTube's formulas, and the x264 options of
its default VOD profile (no encodes)."""
from __future__ import annotations

import pytest

from tests.bench_modules import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("peer_bench")


def test_bits_per_pixel_targets_match_hand_computed_values(bench):
    # 1080 x (1080 x 1.7778 = 1920.024) x 30 fps x 0.10 bpp = 6,220,877.76 -> floor
    assert bench.average_bitrate(1080, 1.7778, 30) == 6_220_877
    # the minimum table, 0.02 bpp: 1080 x 1920.024 x 30 x 0.02 = 1,244,175.55
    assert bench.min_bitrate(1080, 1.7778, 30) == 1_244_175
    # 432p takes 360p's 0.15 bpp: 432 x 768.0096 x 13 x 0.15 = 646,971.29
    assert bench.average_bitrate(432, 1.7778, 13) == 646_971
    # the max table at 720p, 0.19 bpp: 720 x 1280.016 x 30 x 0.19 = 5,253,185.66
    assert bench.max_bitrate(720, 1.7778, 30) == 5_253_185
    # portrait (ratio < 1): the long side is res / ratio: 406 x 719.986 x 20 x 0.15 = 876,942.7
    assert bench.average_bitrate(406, 0.5639, 20) == 876_942


def test_below_144p_the_tables_fall_back_to_fixed_rates(bench):
    assert bench.average_bitrate(100, 1.7778, 30) == 192_000
    assert bench.max_bitrate(100, 1.7778, 30) == 256_000
    assert bench.min_bitrate(100, 1.7778, 30) == 10_000


def test_target_is_capped_by_the_input_plus_30_percent_and_floored_by_the_minimum(bench):
    assert bench.target_bitrate(2_000_000, 1080, 1.7778, 30) == pytest.approx(2_600_000)
    assert bench.target_bitrate(None, 1080, 1.7778, 30) == 6_220_877  # no input bitrate: the table
    # 100 kb/s x 1.3 is under 720p's minimum, 720 x 1280.016 x 30 x 0.02 = 552,966.9
    assert bench.target_bitrate(100_000, 720, 1.7778, 30) == 552_966


def test_javascript_rounding_and_aspect_ratio(bench):
    assert bench.js_round(12.5) == 13  # Math.round; Python's round gives 12
    assert bench.aspect_ratio(1920, 1080) == 1.7778
    assert bench.aspect_ratio(406, 720) == 0.5639


def test_output_fps_rules(bench):
    assert bench.output_fps(60, 480, is_origin=False) == 30  # small rungs: a standard divisor
    assert bench.output_fps(50, 360, is_origin=False) == 25
    assert bench.output_fps(60, 720, is_origin=False) == 60  # 720p and up keep the rate
    assert bench.output_fps(60, 480, is_origin=True) == 60  # so does the original
    assert bench.output_fps(120, 1080, is_origin=True) == 60  # fps.max 60
    assert bench.output_fps(13, 240, is_origin=False) == 13


def test_resolutions_original_first_then_every_standard_one_below(bench):
    assert bench.resolutions_to_encode(1080) == [1080, 720, 480, 360, 240, 144]
    assert bench.resolutions_to_encode(432) == [432, 360, 240, 144]
    assert bench.resolutions_to_encode(720) == [720, 480, 360, 240, 144]


def test_x264_options_are_the_default_vod_profile(bench):
    args = bench.peertube_rung_command("in.mp4", "out.mp4", 360, False, 449_285, 13)
    pairs = dict(zip(args[:-1], args[1:]))
    assert {k: pairs[k] for k in ("-vcodec", "-preset", "-maxrate", "-bufsize", "-b_strategy", "-bf", "-r", "-g",
                                  "-pix_fmt", "-threads", "-map_metadata", "-movflags")} == {
        "-vcodec": "libx264", "-preset": "veryfast", "-maxrate": "449285", "-bufsize": "898570",
        "-b_strategy": "1", "-bf": "16", "-r": "13", "-g": "26", "-pix_fmt": "yuv420p", "-threads": "1",
        "-map_metadata": "-1", "-movflags": "faststart"}
    assert "-crf" not in args and "-b:v" not in args  # x264's default CRF 23 under the VBV cap
    assert "[0:v]scale=h=360:w=-2[s0]" in args
    portrait = bench.peertube_rung_command("in.mp4", "out.mp4", 360, True, 449_285, 13)
    assert "[0:v]scale=h=-2:w=360[s0]" in portrait


def test_compare_reports_bd_rate_ratios_and_vmaf_by_height(bench):
    peer = {"ladder_kbps": 1000, "cpu_s": 10.0, "rungs": {
        "360p": {"height": 360, "bitrate_bps": 300_000, "display_vmaf": 80.0},
        "720p": {"height": 720, "bitrate_bps": 700_000, "display_vmaf": 95.0}}}
    doubled = {"ladder_kbps": 2000, "cpu_s": 12.0, "rungs": {  # twice the bits for the same VMAF
        "360p": {"height": 360, "bitrate_bps": 600_000, "display_vmaf": 80.0},
        "720p": {"height": 720, "bitrate_bps": 1_400_000, "display_vmaf": 95.0}}}
    c = bench.compare(doubled, peer)
    assert c["bd_rate_pct"] == pytest.approx(100.0, abs=0.5)
    assert c["kbps_ratio"] == 2.0 and c["cpu_ratio"] == 1.2
    assert c["display_vmaf_delta_by_height"] == {360: 0.0, 720: 0.0}
