"""Quality of experience measured by the player: the bins its counters use and the QoE
penalty per region they imply (what placement's cost model charges per GB from origin).

One job: turn per (region, served_from) start-up, rebuffering and ladder counters into a
table and a penalty. The definitions are Mux's (docs.mux.com, "Understand metric
definitions"): start-up time = from the viewer's play request to the first frame shown;
rebuffering = a stall after the first frame not caused by a seek (count and seconds).

The penalty. Each extra second of start-up delay loses viewers: Krishnan & Sitaraman,
"Video Stream Quality Impacts Viewer Behavior" (ACM IMC 2012, 23 M views on Akamai) found
that beyond 2 s every additional second of start-up delay raises the abandonment rate by
5.8 %. So a region whose origin playbacks start `d` seconds later than its edge ones
loses ABANDONMENT_PER_S * d of its origin playbacks; at `value_per_view_usd` each, over
the GB a playback fetches, that is the penalty per GB served from origin:

    penalty_per_gb = max(0, startup_origin - startup_edge) * 0.058 * value_per_view / gb_per_view

(mean start-up times over the period). A region with fewer than `min_playbacks` playbacks
on either side keeps the configured penalty.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

from longtail_common.ports import DailyQoE

# Krishnan & Sitaraman, IMC 2012: +5.8 % abandonment per second of start-up delay past 2 s.
ABANDONMENT_PER_S = 0.058
# Start-up time bins (upper bounds, ms) of the store's counters and the gateway's histogram.
STARTUP_BUCKETS_MS = (100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 8000, 12000, 20000)
REBUFFER_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
MAX_STARTUP_MS = 600_000  # a beacon's start-up time above ten minutes is not a start-up
MAX_REBUFFER_MS = 86_400_000
SERVED_FROM = ("origin", "cdn")


def startup_bin(ms: int) -> int:
    """Index of the first bucket whose bound is >= ms (len(STARTUP_BUCKETS_MS) past the last)."""
    return bisect.bisect_left(STARTUP_BUCKETS_MS, ms)


def qoe_rows(day: str, region: str, served_from: str, startup_ms: int, rebuffer_count: int,
             rebuffer_ms: int, ladder_position: int) -> list[DailyQoE]:
    """The counters one beacon adds (a start-up time only on a playback's start)."""
    rows = []
    if startup_ms > 0:
        rows.append(DailyQoE(day, region, served_from, "startup", startup_bin(startup_ms), 1, startup_ms))
        if ladder_position > 0:
            rows.append(DailyQoE(day, region, served_from, "ladder", ladder_position, 1, 0))
    if rebuffer_count > 0 or rebuffer_ms > 0:
        rows.append(DailyQoE(day, region, served_from, "rebuffer", 0, rebuffer_count, rebuffer_ms))
    return rows


@dataclass
class Side:
    """One region x served_from over the period."""

    playbacks: int = 0
    startup_ms_sum: int = 0
    startup_bins: dict | None = None
    rebuffers: int = 0
    rebuffer_ms: int = 0
    ladder_sum: int = 0
    ladder_n: int = 0

    @property
    def mean_startup_s(self) -> float | None:
        return self.startup_ms_sum / self.playbacks / 1000 if self.playbacks else None

    def startup_quantile_s(self, q: float) -> float | None:
        """Upper bound of the bin holding the q-quantile (what a histogram can say)."""
        if not self.playbacks:
            return None
        seen, want = 0, q * self.playbacks
        for b in sorted(self.startup_bins or {}):
            seen += self.startup_bins[b]
            if seen >= want:
                return (STARTUP_BUCKETS_MS[b] if b < len(STARTUP_BUCKETS_MS) else float("inf")) / 1000
        return None


def summarise(rows: list[DailyQoE]) -> dict[tuple[str, str], Side]:
    """(region, served_from) -> Side, over every day of `rows`."""
    out: dict[tuple[str, str], Side] = {}
    for r in rows:
        side = out.setdefault((r.region, r.served_from), Side(startup_bins={}))
        if r.metric == "startup":
            side.playbacks += r.n
            side.startup_ms_sum += r.total
            side.startup_bins[r.bin] = side.startup_bins.get(r.bin, 0) + r.n
        elif r.metric == "rebuffer":
            side.rebuffers += r.n
            side.rebuffer_ms += r.total
        elif r.metric == "ladder":
            side.ladder_sum += r.bin * r.n
            side.ladder_n += r.n
    return out


@dataclass(frozen=True)
class Penalty:
    region: str
    startup_gap_s: float | None  # mean origin start-up minus mean edge start-up
    abandonment: float | None  # share of origin playbacks lost to it
    per_gb: float | None  # USD per GB from origin; None: not enough playbacks
    origin_playbacks: int
    edge_playbacks: int


def penalties(sides: dict[tuple[str, str], Side], regions: list[str], value_per_view_usd: float,
              gb_per_view: float, min_playbacks: int) -> dict[str, Penalty]:
    """The measured QoE penalty per region (see the module doc)."""
    out = {}
    for region in regions:
        o, e = sides.get((region, "origin"), Side()), sides.get((region, "cdn"), Side())
        if min(o.playbacks, e.playbacks) < max(min_playbacks, 1):
            out[region] = Penalty(region, None, None, None, o.playbacks, e.playbacks)
            continue
        gap = o.mean_startup_s - e.mean_startup_s
        lost = max(0.0, gap) * ABANDONMENT_PER_S
        out[region] = Penalty(region, gap, lost, lost * value_per_view_usd / max(gb_per_view, 1e-9),
                              o.playbacks, e.playbacks)
    return out
