"""bench/codec_bench.py: the figures it derives from measured encodes (parity factor, bits
at a factor, break-even views), on made-up measurements."""
from __future__ import annotations

import math

import pytest

from tests.bench_modules import load_bench

@pytest.fixture(scope="module")
def bench():
    return load_bench("codec_bench")


def test_parity_factor_interpolates_in_log_factor_within_the_tolerance(bench):
    tol = bench.PARITY_TOLERANCE
    points = [(0.5, 88.0), (1.0, 92.0), (2.0, 94.0)]
    # H.264 scored 90 + tol: parity is 90, half-way from 88 to 92 in log factor
    assert bench.parity_factor(90.0 + tol, points) == pytest.approx(math.sqrt(0.5), abs=1e-3)
    assert bench.parity_factor(80.0, points) == 0.5  # the smallest factor already does
    assert bench.parity_factor(96.0, points) is None  # never reached
    assert bench.parity_factor(94.0 + tol, list(reversed(points))) == 2.0  # order does not matter


def test_bits_at_a_factor_interpolates_log_log_and_clamps(bench):
    runs = [(0.5, 100_000), (2.0, 400_000)]
    assert bench._bits_at(1.0, runs) == pytest.approx(200_000)
    assert bench._bits_at(0.25, runs) == 100_000 and bench._bits_at(4.0, runs) == 400_000


def test_break_even_views_grow_with_encode_price_and_fall_with_savings(bench):
    h264 = {"ladder_bytes": 100e6}
    av1 = {"cpu_s": 36.0, "ladder_bytes": 50e6}
    base = bench.economics(h264, av1, -40.0, 60.0, cpu_hour_usd=0.1)
    dearer = bench.economics(h264, av1, -40.0, 60.0, cpu_hour_usd=0.2)
    better = bench.economics(h264, av1, -80.0, 60.0, cpu_hour_usd=0.1)
    assert base["encode_usd_per_source_minute"] == pytest.approx(36 / 3600 * 0.1)
    assert dearer["break_even_views_cdn_cheapest"] > base["break_even_views_cdn_cheapest"]
    assert better["break_even_views_cdn_cheapest"] == pytest.approx(base["break_even_views_cdn_cheapest"] / 2, rel=1e-2)
    # origin egress costs more per GB than the cheapest CDN: fewer views repay the encode
    assert base["break_even_views_origin"] < base["break_even_views_cdn_cheapest"]
    assert bench.economics(h264, av1, 5.0, 60.0, 0.1)["break_even_views_origin"] is None  # no saving
