"""bench/pertitle_headroom.py: the ladders it builds from a bench result's measured curves."""
from __future__ import annotations

import math

import pytest

from tests.bench_modules import load_bench
from transcoder_svc import pertitle as pt


@pytest.fixture(scope="module")
def headroom():
    return load_bench("pertitle_headroom")


def _curve(points):  # (actual bits, display VMAF) -> the bench's per-size curve record
    return {"actual_bps": [a for a, _ in points], "display_vmaf": [[a, v] for a, v in points]}


# Two sizes. The large one beats the small one from 100 kbps up.
SMALL = [(50_000, 30.0), (100_000, 50.0), (200_000, 60.0)]
LARGE = [(100_000, 55.0), (200_000, 75.0), (400_000, 90.0)]
CLIP = {
    "bd_rate_pct": -1.0,
    "fixed": {"small": {"bitrate_bps": 200_000, "display_vmaf": 60.0},
              "large": {"bitrate_bps": 400_000, "display_vmaf": 90.0}},
    # Slots of one size share one measured curve: "large_2" repeats "large".
    "curves": {"small": _curve(SMALL), "large": _curve(LARGE), "large_2": _curve(LARGE)},
    "per_title": {"small": {"bitrate_bps": 60_000, "display_vmaf": 35.0},
                  "large": {"bitrate_bps": 400_000, "display_vmaf": 90.0}},
}


def test_one_curve_per_measured_size(headroom):
    assert len(headroom.size_curves(CLIP)) == 2


def test_slot_matching_moves_a_slot_to_the_size_that_needs_fewer_bits(headroom):
    curves = headroom.size_curves(CLIP)
    small_slot, large_slot = headroom.slot_matching([(200_000, 60.0), (400_000, 90.0)], curves)
    # VMAF 60 costs the small size its full 200 kbps; the large size gets there cheaper.
    expected = pt.rate_for(pt.smooth(pt.pareto_frontier(LARGE)), 60.0)
    assert small_slot == (pytest.approx(expected), 60.0) and 100_000 < expected < 200_000
    assert large_slot == (400_000, 90.0)  # only the large size reaches 90


def test_apple_spacing_fills_gaps_wider_than_2x(headroom):
    curves = headroom.size_curves(CLIP)
    ladder, added = headroom.apple_spaced(CLIP, curves)
    rates = sorted(r for r, _ in ladder)
    assert added == 2  # 60 -> 400 kbps is 6.7x: three steps of under 2x
    assert all(hi / lo <= 2.0 + 1e-9 for lo, hi in zip(rates, rates[1:]))
    # Each added rung takes the best measured size at its rate (large above 100 kbps).
    for rate, vmaf in ladder[2:]:
        assert vmaf == pytest.approx(max(pt.vmaf_at(c, rate) for c in curves if c[0][0] <= rate))


def test_analyse_reports_every_figure(headroom):
    out = headroom.analyse(CLIP)
    assert set(headroom.COLUMNS) <= set(out) and out["measured"] == -1.0
    assert all(out[k] is None or math.isfinite(out[k]) for k in headroom.COLUMNS)
