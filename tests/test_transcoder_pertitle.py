"""Per-title encoding: curve logic on synthetic curves, and a real (tiny) VMAF analysis."""
from __future__ import annotations

import dataclasses
import json
import subprocess

import av
import pytest

from transcoder_svc import ffmpeg_graphs, ladder, probe
from transcoder_svc import pertitle as pt


# ---------------------------------------------------------------------------------------
# pure logic


def test_pareto_frontier_drops_points_that_buy_no_quality():
    pts = [(100_000, 50.0), (200_000, 70.0), (300_000, 69.0), (400_000, 80.0), (500_000, 80.0)]
    assert pt.pareto_frontier(pts) == [(100_000, 50.0), (200_000, 70.0), (400_000, 80.0)]


def test_upper_hull_drops_points_under_the_chord():
    # (200k, 55) lies under the chord from (100k, 50) to (400k, 80) in log-rate: dominated.
    pts = [(100_000, 50.0), (200_000, 55.0), (400_000, 80.0), (800_000, 90.0)]
    assert pt.upper_hull(pts) == [(100_000, 50.0), (400_000, 80.0), (800_000, 90.0)]


def test_interpolation_is_monotone_and_inverse():
    curve = [(100_000, 60.0), (400_000, 90.0), (1_600_000, 96.0)]
    assert pt.vmaf_at(curve, 200_000) == pytest.approx(75.0)  # halfway in log rate
    assert pt.rate_for(curve, 75.0) == pytest.approx(200_000, rel=1e-6)
    assert pt.vmaf_at(curve, 50_000) == 60.0 and pt.vmaf_at(curve, 9e6) == 96.0
    assert pt.rate_for(curve, 99.0) == 1_600_000  # unreachable: the top of the curve


def test_choose_bitrate_respects_ceiling_target_and_loss_guard():
    easy = [(100_000, 90.0), (400_000, 97.0), (1_000_000, 99.0)]
    # Pure target: 95 is reached well under the ceiling.
    pure = pt.choose_bitrate(easy, 1_000_000, target=95.0, max_loss=None)
    assert 100_000 < pure < 400_000
    # Guard: never more than 0.5 below what the ceiling scores (99) -> 98.5 needs more bits.
    guarded = pt.choose_bitrate(easy, 1_000_000, target=95.0, max_loss=0.5)
    assert pure < guarded <= 1_000_000
    assert pt.vmaf_at(easy, guarded) >= 98.5 - 1e-6
    hard = [(100_000, 30.0), (400_000, 50.0), (1_000_000, 70.0)]
    assert pt.choose_bitrate(hard, 1_000_000, target=95.0, max_loss=None) == 1_000_000


def _r(name, h, b):
    return pt.make_rung(name, h * 16 // 9 // 2 * 2, h, b)


def test_ladder_hull_drops_dominated_middle_rung():
    chosen = [(_r("240p", 240, 200_000), 200_000), (_r("360p", 360, 420_000), 420_000),
              (_r("480p", 480, 450_000), 450_000), (_r("720p", 720, 1_000_000), 1_000_000)]
    kept, dropped = pt.ladder_hull(chosen, min_step=1.25)
    assert [r.name for r, _ in kept] == ["240p", "480p", "720p"]
    assert "360p" in dropped and "480p" in dropped["360p"]


def test_ladder_hull_keeps_bottom_rung_and_drops_the_one_above():
    chosen = [(_r("240p", 240, 300_000), 300_000), (_r("360p", 360, 320_000), 320_000),
              (_r("720p", 720, 1_000_000), 1_000_000)]
    kept, dropped = pt.ladder_hull(chosen, min_step=1.25)
    assert [r.name for r, _ in kept] == ["240p", "720p"] and list(dropped) == ["360p"]


def test_ladder_hull_drops_a_bottom_rung_costing_as_much_as_the_one_above():
    # A still slide: the fixed 234p rung (145 kbps asked) produces 45 kbps, the per-title
    # rung above it (540p, better picture) 40: the bottom serves no one.
    ladder = [(_r("234p", 234, 145_000), 145_000), (_r("540p", 540, 117_000), 117_000),
              (_r("1080p", 1080, 390_000), 390_000)]
    bits = _bits({(416, 234): [(145_000, 45_000)], (960, 540): [(117_000, 40_000)],
                  (1920, 1080): [(390_000, 109_000)]})
    kept, dropped = pt.ladder_hull(ladder, 1.25, bits)
    assert [r.name for r, _ in kept] == ["540p", "1080p"] and "540p" in dropped["234p"]


def test_ladder_hull_lowers_bottom_when_only_two_rungs_collide():
    chosen = [(_r("240p", 240, 900_000), 900_000), (_r("720p", 720, 1_000_000), 1_000_000)]
    kept, dropped = pt.ladder_hull(chosen, min_step=1.25)
    assert [r.name for r, _ in kept] == ["240p", "720p"] and not dropped
    assert kept[0][1] * 1.25 <= kept[1][1]


def test_ladder_hull_leaves_a_well_spaced_ladder_alone():
    chosen = [(_r("240p", 240, 200_000), 200_000), (_r("480p", 480, 600_000), 600_000),
              (_r("720p", 720, 1_500_000), 1_500_000)]
    assert pt.ladder_hull(chosen, min_step=1.25) == (chosen, {})


def test_choose_size_takes_the_resolution_needing_fewest_bits():
    small, big = (426, 240), (1280, 720)
    # Display VMAF (scored at 720p): the small picture tops out at 70 however many bits.
    hulls = {small: [(50_000, 50.0), (150_000, 65.0), (300_000, 70.0)],
             big: [(100_000, 60.0), (300_000, 85.0), (1_000_000, 95.0)]}
    size, rate = pt.choose_size(300_000, 65.0, hulls, small)
    assert size == big and 100_000 < rate < 150_000  # the big picture gets there cheaper
    # Goal 55 sits below the big curve's cheapest point: no extrapolation, small wins.
    assert pt.choose_size(300_000, 55.0, hulls, small)[0] == small
    # Nothing reaches 99 under the ceiling: keep the default size at the ceiling.
    assert pt.choose_size(300_000, 99.0, hulls, small) == (small, 300_000)


def _bits(measured: dict) -> pt.SampleEncodes:
    """Encodes of which only the bits produced are known: size -> [(rate asked, produced)]."""
    bits = pt.SampleEncodes()
    for size, points in measured.items():
        for asked, produced in points:
            bits.add(size, asked, produced)
    return bits


def test_sample_encodes_interpolate_what_a_rate_produces():
    # What x264 produced on the bench's still slide: a fraction of the rate asked.
    encodes = _bits({(416, 234): [(20_000, 10_354), (58_000, 22_498), (145_000, 44_952)],
                     (1920, 1080): [(390_000, 109_408), (1_170_000, 152_221), (7_800_000, 146_620)]})
    assert encodes.bits((416, 234), 145_000) == 44_952
    assert 22_498 < encodes.bits((416, 234), 100_000) < 44_952
    assert encodes.bits((416, 234), 10_000) == pytest.approx(10_354 / 2)  # under the cheapest point: in proportion
    # asking more never produces fewer bits (x264 did, 152 -> 147 kbps: noise, not a saving)
    assert encodes.bits((1920, 1080), 7_800_000) == pytest.approx(encodes.bits((1920, 1080), 3_000_000)) == 152_221
    assert encodes.bits((1280, 720), 300_000) == 300_000  # a size never measured: the rate asked


def test_choose_size_compares_the_bits_produced_not_the_rate_asked():
    small, big = (640, 360), (1920, 1080)
    hulls = {small: [(20_000, 21.0), (146_000, 70.9), (365_000, 74.3)],
             big: [(390_000, 95.7), (1_170_000, 97.2)]}
    # Asked, 360p needs 337 kbps for 74 and 1080p 390; produced, 360p 76 kbps and 1080p 70.
    bits = _bits({small: [(146_000, 48_918), (365_000, 79_332)], big: [(390_000, 70_000), (1_170_000, 100_000)]})
    assert pt.choose_size(1_170_000, 74.0, hulls, small) == (small, 337_000)
    assert pt.choose_size(1_170_000, 74.0, hulls, small, bits) == (big, 390_000)


def test_ladder_hull_judges_rungs_on_the_bits_they_produce():
    # Asked 145 and 160 kbps (within 1.25x), produced 40 and 80 (2x apart): two rungs.
    ladder = [(_r("234p", 234, 145_000), 145_000), (_r("360p", 360, 160_000), 160_000),
              (_r("1080p", 1080, 1_000_000), 1_000_000)]
    bits = _bits({(416, 234): [(145_000, 40_000)], (640, 360): [(160_000, 80_000)],
                  (1920, 1080): [(1_000_000, 200_000)]})
    assert list(pt.ladder_hull(ladder, 1.25)[1]) == ["360p"]
    assert pt.ladder_hull(ladder, 1.25, bits) == (ladder, {})
    # and the other way: asked 2x apart, produced within 1.25x (the larger one drops)
    bits = _bits({(416, 234): [(145_000, 70_000)], (640, 360): [(300_000, 80_000)],
                  (1920, 1080): [(1_000_000, 200_000)]})
    ladder[1] = (_r("360p", 360, 300_000), 300_000)
    assert pt.ladder_hull(ladder, 1.25) == (ladder, {})
    assert list(pt.ladder_hull(ladder, 1.25, bits)[1]) == ["360p"]
    # Only two rungs left that collide: the bottom is asked less, in proportion to its bits.
    two = [ladder[0], ladder[2]]
    bits = _bits({(416, 234): [(145_000, 170_000)], (1920, 1080): [(1_000_000, 200_000)]})
    (_, lowered), _ = pt.ladder_hull(two, 1.25, bits)[0]
    assert bits.bits((416, 234), lowered) * 1.25 <= 200_000 and lowered == 136_000


def test_in_between_sizes_fill_only_the_wide_gaps_of_the_ladder():
    # Apple's 16:9 ladder: gaps 234->360, 540->720 and 720->1080 are wide; 360->432->540 are not.
    apple = [_r("234p", 234, 145_000), _r("360p", 360, 365_000), _r("432p", 432, 730_000),
             _r("432p_hi", 432, 1_100_000), _r("540p", 540, 2_000_000), _r("720p", 720, 3_000_000),
             _r("720p_hi", 720, 4_500_000), _r("1080p", 1080, 6_000_000), _r("1080p_hi", 1080, 7_800_000)]
    extra = pt.in_between_sizes(apple)
    assert [r.height for r in extra] == [288, 624, 880]
    for r, (lo, hi) in zip(extra, [(apple[0], apple[1]), (apple[4], apple[6]), (apple[6], apple[8])]):
        assert r.width % 2 == 0 and abs(r.width / r.height - 16 / 9) < 0.01
        # ceiling between the two neighbours' highest bitrates
        assert lo.video_bitrate_bps < r.video_bitrate_bps < hi.video_bitrate_bps
        assert r.name == f"{r.height}p" and r.name not in {a.name for a in apple}
    # Portrait video: the short side names the size and is the one interpolated.
    portrait = [pt.make_rung("360p", 360, 640, 800_000), pt.make_rung("720p", 720, 1280, 3_000_000)]
    (mid,) = pt.in_between_sizes(portrait)
    assert (mid.width, mid.height, mid.name) == (512, 910, "512p")
    # A ladder without a wide gap gets nothing.
    assert pt.in_between_sizes([_r("432p", 432, 730_000), _r("540p", 540, 2_000_000)]) == []


def test_sample_windows_spread_across_the_video():
    assert pt.sample_windows(5.0, 3, 2.0) == [(0.0, 5.0)]  # short video: all of it
    w = pt.sample_windows(60.0, 3, 2.0)
    assert len(w) == 3 and all(length == 2.0 for _, length in w)
    assert w[0][0] < 20 <= w[1][0] < 40 <= w[2][0] < 60 - 2


# ---------------------------------------------------------------------------------------
# real analysis on tiny generated clips (ffmpeg lavfi: reproducible, no downloads)


def _make_clip(path, source: str) -> str:
    subprocess.run([ffmpeg_graphs.ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source,
                    "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", str(path)],
                   check=True)
    return str(path)


@pytest.fixture(scope="module")
def analyses(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pertitle")
    clips = {
        # A still test card: nothing moves.
        "static": _make_clip(tmp / "static.mp4", "smptebars=s=320x180:r=15:d=3"),
        # Moving pattern under heavy temporal noise: every frame is new.
        "noisy": _make_clip(tmp / "noisy.mp4", "testsrc2=s=320x180:r=15:d=3,noise=alls=40:allf=t+u"),
    }
    rungs = [pt.make_rung("120p", 214, 120, 250_000, "3.0"), pt.make_rung("180p", 320, 180, 500_000, "3.0")]
    out = {}
    for name, path in clips.items():
        info = probe.probe(path)
        # min_step=1.0: this test is about rates per rung, not about dropping rungs.
        # workdir: a folder that does not exist yet, as the worker passes it.
        out[name] = pt.per_title_ladder(path, info, rungs, samples=1, sample_seconds=3.0,
                                        points=(0.1, 0.3, 1.0), min_step=1.0, vmaf_subsample=1,
                                        workdir=str(tmp / name / "pertitle"))
    return rungs, out


def test_sample_encodes_repeat_and_have_the_ladders_keyframes(tmp_path):
    """The analysis's encodes are the ladder's (a keyframe on every segment boundary, none
    between) and repeatable: x264's VBV with frame threads gives a different file each run,
    and a curve point that does not repeat is a prediction the final encode misses."""
    fps = 15
    clip = _make_clip(tmp_path / "clip.mp4", f"testsrc2=s=320x180:r={fps}:d=9,noise=alls=20:allf=t")
    rung = pt.make_rung("180p", 320, 180, 300_000, "3.0")
    runs = []
    for run in range(2):
        encodes = [(rung, pt.h264_sample_args(rung, rate, fps), str(tmp_path / f"run{run}_{rate}.h264"))
                   for rate in (60_000, 150_000, 300_000)]
        pt.encode_sample(clip, encodes, str(tmp_path), 120, 3, "repeat test")
        runs.append([open(path, "rb").read() for _, _, path in encodes])
    assert runs[0] == runs[1]
    assert len({len(data) for data in runs[0]}) == 3  # three different rates, three different files
    with av.open(str(tmp_path / "run0_300000.h264")) as container:
        keyframes = [i for i, frame in enumerate(container.decode(video=0)) if frame.key_frame]
    assert keyframes == [0, fps * ladder.SEGMENT_SECONDS, 2 * fps * ladder.SEGMENT_SECONDS]


def test_a_sample_with_a_timestamp_gap_is_encoded_frame_for_frame(tmp_path):
    """A sample's joined excerpts can leave a gap in its timestamps; an encode that filled
    it with a repeated frame would be scored against the wrong frames from there on (VMAF
    pairs frames by index): a generous rate must still score high."""
    clip = str(tmp_path / "gap.mp4")
    subprocess.run([ffmpeg_graphs.ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=s=320x180:r=15:d=3", "-vf", "setpts=N/15/TB+gte(N\\,20)*2/15/TB",
                    "-fps_mode", "passthrough", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0",
                    "-pix_fmt", "yuv420p", clip], check=True)
    rung = pt.make_rung("180p", 320, 180, 2_000_000, "3.0")
    out = str(tmp_path / "gap.h264")
    [score] = pt.encode_sample(clip, [(rung, pt.h264_sample_args(rung, 2_000_000, 15), out)], str(tmp_path), 120, 1,
                               "gap test")
    with av.open(out) as container:
        assert sum(1 for _ in container.decode(video=0)) == 45
    assert score > 90, score


def _by_slot(result):
    out = {r.name: r for r in result.rungs}
    return {slot: out[name] for slot, name in result.slots.items()}


def test_static_clip_gets_lower_bitrates_than_noisy(analyses):
    rungs, res = analyses
    static = {k: r.video_bitrate_bps for k, r in _by_slot(res["static"]).items()}
    noisy = {k: r.video_bitrate_bps for k, r in _by_slot(res["noisy"]).items()}
    assert set(static) == set(noisy) == {"120p", "180p"}
    for name in static:
        assert static[name] < 0.75 * noisy[name], (static, noisy)


def test_bitrates_never_exceed_fixed_ceilings(analyses):
    rungs, res = analyses
    ceiling = {r.name: r.video_bitrate_bps for r in rungs}
    in_between = {(r.width, r.height) for r in pt.in_between_sizes(rungs)}
    assert in_between == {(256, 144)}  # the 120p->180p gap is wide enough for one
    sizes = {(r.width, r.height) for r in rungs} | in_between
    for result in res.values():
        assert {"120p", "144p", "180p"} <= set(result.curves)  # the in-between size was measured
        for slot, r in _by_slot(result).items():
            assert 0 < r.video_bitrate_bps <= ceiling[slot]
            assert (r.width, r.height) in sizes  # the ladder's sizes and those between them, never upscaled
            fixed = next(f for f in rungs if f.name == slot)
            # names stay unique; a slot that kept its size keeps its name
            assert (r.name == slot) == ((r.width, r.height) == (fixed.width, fixed.height))
        assert len({r.name for r in result.rungs}) == len(result.rungs)


def test_vmaf_in_range_and_rising_with_bitrate(analyses):
    _, res = analyses
    for result in res.values():
        assert set(result.vmaf_by_rung) == {r.name for r in result.rungs}
        # The worker copies Rung.vmaf into Rendition.vmaf of the metadata.
        assert all(getattr(r, "vmaf", result.vmaf_by_rung[r.name]) == result.vmaf_by_rung[r.name]
                   for r in result.rungs)
        assert all(0.0 <= v <= 100.0 for v in result.vmaf_by_rung.values())
        for curve in result.curves.values():
            assert len(curve.points) == 3
            assert all(0.0 <= v <= 100.0 for _, v in curve.points)
            assert curve.points[-1][0] > curve.points[0][0]
    for curve in res["noisy"].curves.values():
        # Far from saturation, quality rises with every step of bits.
        assert [v for _, v in curve.points] == sorted(v for _, v in curve.points)
        assert curve.points[-1][1] > curve.points[0][1] + 5
    for curve in res["static"].curves.values():
        # A still picture saturates at the lowest rate (VMAF then wobbles by a point or so).
        assert min(v for _, v in curve.points) > 80
    # The noisy clip is far from transparent at these ceilings; the static one is near it.
    # (by slot: encodes vary a little run to run, and a slot may move to another size)
    top = {k: res[k].vmaf_by_rung[res[k].slots["180p"]] for k in ("noisy", "static")}
    assert top["noisy"] < top["static"]
    assert res["static"].analysis_seconds > 0 and res["static"].sample_seconds == pytest.approx(3.0, abs=0.2)


def test_family_rates_survive_the_chunk_plan_and_reach_the_encoder():
    # Long videos carry their ladder to chunk jobs as JSON (worker._split: dataclasses.asdict).
    rung = dataclasses.replace(pt.make_rung("720p", 1280, 720, 2_000_000, "3.1"), vmaf=93.2,
                               family_bitrate_bps={"av1": 900_000}, family_vmaf={"av1": 93.0})
    back = ladder.Rung(**json.loads(json.dumps(dataclasses.asdict(rung))))
    assert back == rung
    args = ffmpeg_graphs.encoder_args("av1", [back], 30.0)
    assert args[args.index("-b:v:0") + 1] == "900000"  # the per-title rate, not the factor's
    vp9 = ffmpeg_graphs.encoder_args("vp9", [back], 30.0)  # a family not chosen per title: the factor's
    assert vp9[vp9.index("-b:v:0") + 1] == str(rung.bitrate_for("vp9", top=True)) != "900000"


def test_family_next_rate_searches_toward_h264s_vmaf():
    nxt = pt._family_next_rate
    # within [H.264 - 0.5, H.264 + 1]: settled
    assert nxt([(100_000, 0, 80.3)], 80.0, 10.0, cap=10**9) is None
    assert nxt([(100_000, 0, 79.6)], 80.0, 10.0, cap=10**9) is None
    # 10 points over with slope 10/ln: e times fewer bits (within the 4x step)
    assert nxt([(100_000, 0, 90.0)], 80.0, 10.0, cap=10**9) == 36_000
    # far under with a flat slope: the step is bounded, and so is the rate (the cap)
    assert nxt([(100_000, 0, 50.0)], 80.0, 2.0, cap=10**9) == 400_000
    assert nxt([(100_000, 0, 50.0)], 80.0, 2.0, cap=250_000) == 250_000
    # straddled (70 at 100k, 90 at 400k): halfway in ln rate for 80
    assert nxt([(100_000, 0, 70.0), (400_000, 0, 90.0)], 80.0, 10.0, cap=10**9) == 200_000
    # two points over: their own slope (5 per ln, 2x apart) aims further down
    assert nxt([(100_000, 0, 85.0), (200_000, 0, 88.466)], 80.0, 50.0, cap=10**9) == 36_000
    # straddled, 36.5k short and 60k over by 2: a rate between them
    assert nxt([(100_000, 0, 90.0), (36_500, 0, 70.0), (60_000, 0, 82.0)], 80.0, 10.0, cap=10**9) == 55_000
    # what it would try is within 5 % of a measured rate: settled at what it has
    assert nxt([(54_000, 0, 90.0), (52_000, 0, 70.0)], 80.0, 10.0, cap=10**9) is None


@pytest.fixture(scope="module")
def moving_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("families") / "moving.mp4"
    return _make_clip(path, "testsrc2=s=320x180:r=15:d=2")


def _families(clip, tmp_path, rungs, families=("h264", "vp9", "av1")):
    return pt.per_title_families(clip, probe.probe(clip), rungs, families, samples=1, sample_seconds=2.0,
                                 vmaf_subsample=1, workdir=str(tmp_path / "work"))


def test_other_families_are_measured_at_their_own_bitrates(moving_clip, tmp_path):
    """VP9 and AV1 renditions get a VMAF of their own (Rendition.vmaf in the metadata), measured
    on the sample at the family's bitrate: a starved rung scores well under a generous one.
    Rungs without an H.264 score keep the factor's rates (there is nothing to match)."""
    rungs = [pt.make_rung("180p_starved", 320, 180, 30_000, "3.0"), pt.make_rung("180p", 320, 180, 600_000, "3.0")]
    out = _families(moving_clip, tmp_path, rungs)
    assert [r.name for r in out] == [r.name for r in rungs]
    assert [r.video_bitrate_bps for r in out] == [r.video_bitrate_bps for r in rungs]  # H.264 untouched
    for r, before in zip(out, rungs):
        assert set(r.family_vmaf) == set(r.family_bitrate_bps) == {"vp9", "av1"}, r  # H.264's is Rung.vmaf
        assert all(0.0 < q <= 100.0 for q in r.family_vmaf.values()), r.family_vmaf
        for family in ("vp9", "av1"):
            top = before is rungs[-1]
            assert r.family_bitrate_bps[family] == before.bitrate_for(family, top=top)
            assert r.bitrate_for(family) == r.family_bitrate_bps[family]  # what the encoder is given
    starved, generous = out
    for family in ("vp9", "av1"):
        assert generous.family_vmaf[family] > starved.family_vmaf[family] + 10, (family, out)
    # H.264 only: nothing to measure, nothing encoded
    assert pt.per_title_families(moving_clip, probe.probe(moving_clip), rungs, ("h264",)) == rungs


def test_a_family_well_over_h264s_quality_gets_fewer_bits(moving_clip, tmp_path):
    # H.264 scored 80 on this rung; AV1 at the factor's rate scores near 100 on this easy clip
    rung = dataclasses.replace(pt.make_rung("180p", 320, 180, 600_000, "3.0"), vmaf=80.0)
    [out] = _families(moving_clip, tmp_path, [rung], ("h264", "av1"))
    first = rung.bitrate_for("av1", top=True)
    assert out.family_bitrate_bps["av1"] < first * 0.5, out  # the retry, a third of the rate, kept
    assert out.family_vmaf["av1"] >= 80.0 - pt.FAMILY_VMAF_TOLERANCE, out


def test_a_family_short_of_h264s_quality_gets_more_bits(moving_clip, tmp_path):
    # H.264 scored 99 on this rung: VP9 at the factor's starved rate is far under it
    rung = dataclasses.replace(pt.make_rung("180p", 320, 180, 30_000, "3.0"), vmaf=99.0)
    [out] = _families(moving_clip, tmp_path, [rung], ("h264", "vp9"))
    first = rung.bitrate_for("vp9", top=True)
    assert out.family_bitrate_bps["vp9"] > first, out
    # the retry stays capped (2.5x the H.264 rate) and is kept as the better of the two
    assert out.family_bitrate_bps["vp9"] <= 2.5 * rung.video_bitrate_bps


def _verify_case(measured_display: dict[str, float], encodes: pt.SampleEncodes | None = None):
    """Slots 234p and 360p moved to 540p, 720p kept its size at a lower rate; the sample
    measured `measured_display` (by rung name); curves make the fixed rungs score 40/65/90.
    `encodes`: the bits produced (by default, the rates asked)."""
    fixed = [_r("234p", 234, 145_000), _r("360p", 360, 365_000), _r("720p", 720, 3_000_000)]
    moved_a, moved_b = _r("540p_137k", 540, 137_000), _r("540p_300k", 540, 300_000)
    kept = [(moved_a, 137_000), (moved_b, 300_000), (fixed[2], 2_000_000)]
    slot_of = {id(moved_a): "234p", id(moved_b): "360p", id(fixed[2]): "720p"}
    curves = {(r.width, r.height): [(r.video_bitrate_bps // 2, q - 5), (r.video_bitrate_bps, q)]
              for r, q in zip(fixed, (40.0, 65.0, 90.0))}
    curves[(moved_a.width, moved_a.height)] = [(100_000, 30.0), (300_000, 66.0)]
    measured = [(measured_display[r.name], measured_display[r.name]) for r, _ in kept]
    vmafs = {r.name: 0.0 for r, _ in kept}
    shown = dict(vmafs)
    out, reverted = pt._verify(kept, measured, fixed, slot_of, pt._Curves(curves, curves, on_display=True,
                                                                         encodes=encodes or pt.SampleEncodes()),
                               0.5, vmafs, shown)
    return out, reverted, vmafs


def test_verify_sends_a_rung_that_misses_its_goal_back_to_the_fixed_rung():
    # The moved bottom rung measures 30 where its slot's fixed rung scores 40: back it goes.
    out, reverted, vmafs = _verify_case(
        {"540p_137k": 30.0, "540p_300k": 64.8, "720p": 89.3})
    assert [(r.name, b) for r, b in out] == [("234p", 145_000), ("540p_300k", 300_000), ("720p", 2_000_000)]
    assert list(reverted) == ["234p"]
    # The VMAF stored for a verified rung is the measured one.
    assert vmafs["540p_300k"] == 64.8 and vmafs["720p"] == 89.3


def test_verify_reverts_a_larger_rung_under_a_reverted_one():
    # 360p's move fails; the 234p slot's 540p picture would then sit under a 360p one.
    out, reverted, _ = _verify_case({"540p_137k": 40.0, "540p_300k": 60.0, "720p": 89.3})
    assert [r.name for r, _ in out] == ["234p", "360p", "720p"]
    assert set(reverted) == {"234p", "360p"}


def test_verify_keeps_a_ladder_within_its_slack():
    # 0.7 under the fixed rungs is within max_vmaf_loss + VERIFY_SLACK (0.75): kept as chosen.
    out, reverted, _ = _verify_case({"540p_137k": 39.3, "540p_300k": 64.3, "720p": 89.3})
    assert [r.name for r, _ in out] == ["540p_137k", "540p_300k", "720p"] and not reverted


def test_verify_sends_back_a_moved_rung_that_is_worse_for_about_the_same_bits():
    # 360p's 540p rung measures 64.8 against its fixed rung's 65. Asked 300 kbps against
    # 365, it is kept; producing 350 kbps where the fixed rung produced 355, it goes back.
    within = {"540p_137k": 39.9, "540p_300k": 64.8, "720p": 89.3}
    assert not _verify_case(within)[1]
    produced = _bits({(640, 360): [(365_000, 355_000)], (960, 540): [(137_000, 100_000), (300_000, 350_000)]})
    out, reverted, _ = _verify_case(within, produced)
    assert [r.name for r, _ in out] == ["234p", "360p", "720p"] and set(reverted) == {"234p", "360p"}
    assert "fewer bits" in reverted["360p"]  # (234p's 540p rung then sat under a 360p one)
    # Scoring at least the fixed rung's 65, the same rung stays whatever its bits.
    assert not _verify_case({**within, "540p_300k": 65.2}, produced)[1]


def test_every_slot_measured_within_the_loss_budget(analyses):
    """After verification each slot's rung, as encoded on the sample, is no more than
    max_vmaf_loss + VERIFY_SLACK below what its fixed rung scores there."""
    rungs, res = analyses
    ceiling = {r.name: r.video_bitrate_bps for r in rungs}
    for result in res.values():
        for slot, name in result.slots.items():
            fixed_q = pt.vmaf_at(pt.smooth(result.curves[slot].display_hull), ceiling[slot])
            assert result.display_vmaf_by_rung[name] >= fixed_q - pt.DEFAULT_MAX_VMAF_LOSS - pt.VERIFY_SLACK, (
                slot, name, result.display_vmaf_by_rung, fixed_q, result.reverted)


def test_the_hull_after_verification_re_predicts_a_bottom_rung_it_lowers():
    # Two slots: the moved bottom fails and goes back to 145k, which collides with the top
    # (kept at 160k): step 5, run after verification, lowers the bottom, and its VMAF must be
    # for the new rate.
    bottom, top = _r("234p", 234, 145_000), _r("360p", 360, 365_000)
    moved = _r("360p_60k", 360, 60_000)
    kept = [(moved, 60_000), (top, 160_000)]
    slot_of = {id(moved): "234p", id(top): "360p"}
    curves = {(bottom.width, bottom.height): [(50_000, 20.0), (145_000, 40.0)],
              (top.width, top.height): [(50_000, 30.0), (365_000, 65.0)]}
    measured = [(10.0, 10.0), (64.5, 64.5)]  # the moved bottom misses by far; the top holds
    vmafs, shown = {}, {}
    decide = pt._Curves(curves, curves, on_display=False)
    out, reverted = pt._verify(kept, measured, [bottom, top], slot_of, decide, 0.5, vmafs, shown)
    assert list(reverted) == ["234p"] and [(r.name, b) for r, b in out] == [("234p", 145_000), ("360p", 160_000)]
    out, dropped = pt._hull_repredicted(out, 1.25, slot_of, decide, vmafs, shown)
    assert not dropped and [r.name for r, _ in out] == ["234p", "360p"]
    rate = out[0][1]
    assert rate * 1.25 <= 160_000
    assert vmafs["234p"] == round(pt.vmaf_at(curves[(bottom.width, bottom.height)], rate), 2) < 40.0



def _scored(points: dict) -> pt.SampleEncodes:
    """Encodes scored on the sample, size -> [(rate asked, VMAF, display VMAF)], each
    producing the rate asked."""
    encodes = pt.SampleEncodes()
    for size, pts in points.items():
        for rate, vmaf, shown in pts:
            encodes.add(size, rate, rate, vmaf, shown)
    return encodes


def _refine(monkeypatch, kept, fixed, slot_of, goals, seen, vmafs, measured_by_name, tried=None):
    """Runs one refinement round with `measured_by_name` (rung name -> display VMAF, or
    a callable of the rung) standing in for the sample encodes; `seen`: the encodes so far
    (a SampleEncodes, or points for `_scored`). Returns (ladder, notes, what was encoded)."""
    asked = []

    def fake_measure(sample, duration_s, ladder, *a, **k):
        asked.extend((r.name, b) for r, b in ladder)
        return [(b, q, q) for r, b in ladder for q in [measured_by_name(r)]]

    monkeypatch.setattr(pt, "measure_ladder", fake_measure)
    shown = dict(vmafs)
    template = {(r.width, r.height): r for r in fixed}
    out, notes, encoded = pt._refine_round("s.mp4", 6.0, kept, goals, {r.name: r for r in fixed}, template, slot_of,
                                           seen if isinstance(seen, pt.SampleEncodes) else _scored(seen),
                                           tried if tried is not None else set(), True, vmafs, shown, "/tmp", 60,
                                           2, (1280, 720), 30.0)
    assert encoded == len(asked)
    return out, notes, asked


def _over_quality_case():
    """Slot 720p kept its size at 2 Mbps and measured 93 (goal 89.5): bits to spare.
    Slot 360p's 540p rung measured 65.1 against a goal of 65: nothing to gain."""
    fixed = [_r("360p", 360, 365_000), _r("540p", 540, 1_000_000), _r("720p", 720, 3_000_000)]
    moved = _r("540p_300k", 540, 300_000)
    kept = [(moved, 300_000), (fixed[2], 2_000_000)]
    slot_of = {id(moved): "360p", id(fixed[2]): "720p"}
    seen = {(1280, 720): [(300_000, 80.0, 80.0), (1_000_000, 88.0, 88.0), (3_000_000, 94.0, 94.0),
                          (2_000_000, 93.0, 93.0)],
            (960, 540): [(100_000, 50.0, 45.0), (300_000, 70.0, 65.1), (1_000_000, 80.0, 75.0)],
            (640, 360): [(100_000, 50.0, 40.0), (365_000, 70.0, 65.2)]}
    seen = _scored(seen)
    return fixed, kept, slot_of, {"360p": 65.0, "720p": 89.5}, seen, {"540p_300k": 65.1, "720p": 93.0}


def test_refine_lowers_a_rung_well_above_its_goal_when_the_retry_holds(monkeypatch):
    fixed, kept, slot_of, goals, seen, vmafs = _over_quality_case()
    out, notes, asked = _refine(monkeypatch, kept, fixed, slot_of, goals, seen, vmafs, lambda r: 89.8)
    # One retry, for 720p only, where the curve (with the 2 Mbps encode) reaches goal + aim:
    # between the 1 and 2 Mbps encodes. The 360p slot's rung is already at its goal.
    assert len(asked) == 1 and asked[0][0] == "720p" and 1_000_000 < asked[0][1] < 2_000_000
    assert out == [kept[0], (fixed[2], asked[0][1])]
    assert list(notes) == ["720p"] and vmafs["720p"] == 89.8
    assert (asked[0][1], 89.8, 89.8) in seen.quality()[(1280, 720)]  # every encode sharpens the curve


def test_refine_keeps_the_verified_rung_when_the_retry_misses(monkeypatch):
    fixed, kept, slot_of, goals, seen, vmafs = _over_quality_case()
    out, notes, asked = _refine(monkeypatch, kept, fixed, slot_of, goals, seen, vmafs, lambda r: 89.3)
    assert len(asked) == 1 and not notes and out == kept and vmafs["720p"] == 93.0
    assert (asked[0][1], 89.3, 89.3) in seen.quality()[(1280, 720)]  # the miss is remembered for the next round


def test_refine_tries_again_higher_after_a_miss(monkeypatch):
    # Round 1's retry for 720p measured 89.3 (goal 89.5): round 2 aims a little higher on the
    # curve that now holds the miss, still under the verified 2 Mbps; a repeat is never asked.
    fixed, kept, slot_of, goals, seen, vmafs = _over_quality_case()
    tried = set()
    _, _, first = _refine(monkeypatch, kept, fixed, slot_of, goals, seen, vmafs, lambda r: 89.3, tried)
    out, notes, second = _refine(monkeypatch, kept, fixed, slot_of, goals, seen, vmafs, lambda r: 89.9, tried)
    assert len(second) == 1 and first[0][1] < second[0][1] < 2_000_000, (first, second)
    assert list(notes) == ["720p"] and out[1] == (fixed[2], second[0][1])


def test_refine_moves_a_reverted_slot_to_the_next_best_size(monkeypatch):
    # The bottom slot (234p, goal 40) went to 540p at 90k, measured 30 there and was sent back
    # to 234p at 145k. The 540p curve now knows 90k gives 30; 360p reaches 40 at ~120k.
    fixed = [_r("234p", 234, 145_000), _r("360p", 360, 365_000), _r("540p", 540, 2_000_000)]
    kept = [(fixed[0], 145_000), (fixed[2], 1_000_000)]
    slot_of = {id(fixed[0]): "234p", id(fixed[2]): "540p"}
    seen = {(416, 234): [(50_000, 30.0, 30.0), (145_000, 40.0, 40.0)],
            (640, 360): [(55_000, 25.0, 25.0), (146_000, 45.0, 45.0), (365_000, 65.0, 65.0)],
            (960, 540): [(90_000, 30.0, 30.0), (300_000, 60.0, 60.0), (1_000_000, 85.5, 85.5)]}
    vmafs = {"234p": 40.0, "540p": 85.5}
    out, notes, asked = _refine(monkeypatch, kept, fixed, slot_of, {"234p": 40.0, "540p": 85.0}, seen, vmafs,
                                lambda r: 40.4)
    (name, rate), = asked
    assert name == f"360p_{rate // 1000}k" and 100_000 < rate < 135_000
    assert [(r.name, b) for r, b in out] == [(name, rate), ("540p", 1_000_000)]
    assert slot_of[id(out[0][0])] == "234p" and vmafs[name] == 40.4 and list(notes) == ["234p"]


def test_refine_never_puts_a_larger_picture_under_a_smaller_one(monkeypatch):
    # 1080p would be cheapest for the 360p slot, but the rung above it is 540p (the 540p slot
    # itself may move up to 1080p: nothing is above it).
    fixed = [_r("360p", 360, 365_000), _r("540p", 540, 2_000_000), _r("1080p", 1080, 6_000_000)]
    kept = [(fixed[0], 365_000), (fixed[1], 2_000_000)]
    slot_of = {id(fixed[0]): "360p", id(fixed[1]): "540p"}
    seen = {(640, 360): [(100_000, 40.0, 40.0), (365_000, 65.0, 65.0)],
            (960, 540): [(100_000, 60.0, 60.0), (2_000_000, 85.0, 85.0)],
            (1920, 1080): [(50_000, 65.0, 65.0), (6_000_000, 99.0, 99.0)]}
    out, notes, asked = _refine(monkeypatch, kept, fixed, slot_of, {"360p": 65.0, "540p": 85.0}, seen,
                                {"360p": 65.0, "540p": 85.0}, lambda r: 99.0)
    assert [n.split("_")[0] for n, b in asked if b <= 365_000] == ["540p"]  # the 360p slot: up to 540p
    areas = [r.width * r.height for r, _ in out]
    assert areas == sorted(areas) and out[0][0].height == 540 and out[1][0].height == 1080



def test_a_retry_goes_past_a_rate_that_already_missed():
    # A still slide at 360p: 38 kbps scored 43.9 and 40 kbps 43.9 (off the frontier, which the
    # cheaper encode dominates), 55 kbps 55.7. The curve still says ~40 kbps for 45.6.
    points = [(20_000, 21.2), (38_000, 43.94), (40_000, 43.90), (54_750, 55.75)]
    assert pt._above_misses(points, 40_000, 45.4) == 47_000  # halfway to 54.75 in log rate
    assert pt._above_misses(points, 50_000, 45.4) == 50_000  # above every miss: as chosen
    assert pt._above_misses(points[:3], 40_000, 45.4) is None  # nothing above reached the goal


def test_refine_tries_past_a_miss_the_frontier_dropped(monkeypatch):
    # The bottom slot (goal 45.4) went back to 234p at 145k (45 kbps produced, as much as the
    # rung above): 360p missed at 38k and at 40k. The next retry must not ask 40k again.
    fixed = [_r("234p", 234, 145_000), _r("360p", 360, 365_000), _r("540p", 540, 2_000_000)]
    kept = [(fixed[0], 145_000), (fixed[2], 115_000)]
    slot_of = {id(fixed[0]): "234p", id(fixed[2]): "540p"}
    seen = _scored({(416, 234): [(20_000, 50.0, 2.7), (145_000, 95.4, 45.4)],
                    (640, 360): [(20_000, 54.0, 21.2), (38_000, 72.4, 43.94), (40_000, 72.3, 43.90),
                                 (54_750, 82.6, 55.75)],
                    (960, 540): [(100_000, 87.0, 72.3), (115_000, 88.6, 74.9)]})
    out, notes, asked = _refine(monkeypatch, kept, fixed, slot_of, {"234p": 45.4, "540p": 74.9}, seen,
                                {"234p": 45.4, "540p": 74.9}, lambda r: 48.0, tried={("234p", (640, 360), 40_000)})
    assert asked == [("360p_47k", 47_000)] and out[0][0].name == "360p_47k" and list(notes) == ["234p"]
