"""`longtail placement qoe`, and the measured QoE penalty in the daily job's cost model.

One job: read the player-measured QoE counters (ViewCountStore.qoe_counts, written by the
views consumer from beacons), print them per region x served_from, and derive the QoE
penalty per region (`longtail_common.qoe.penalties`: start-up gap origin vs edge x
abandonment per second x value of a view / GB per view). `measured_costs` puts that
penalty into a CostModel for the regions with enough playbacks on both sides; the others
keep the configured one.

    longtail placement qoe [--date YYYY-MM-DD] [--days N] [--costs FILE] [--json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import asdict, replace

from longtail_common import qoe
from longtail_common.config import load_config


def read_sides(store, day: dt.date, days: int) -> dict:
    """Per (region, served_from) over the `days` days before `day`."""
    first = (day - dt.timedelta(days=days)).isoformat()
    return qoe.summarise(store.qoe_counts(first, (day - dt.timedelta(days=1)).isoformat()))


def gb_per_view(costs) -> float:
    """What one playback fetches, as the cost model prices it (share of an average video)."""
    return costs.view_bytes_fraction * costs.default_video_size_bytes / 1e9


def measured_penalties(cfg, costs, sides: dict, regions: list[str]) -> dict[str, qoe.Penalty]:
    p = cfg.placement
    return qoe.penalties(sides, regions, p.qoe_value_per_view_usd, gb_per_view(costs), p.qoe_min_playbacks)


def measured_costs(cfg, costs, store, day: dt.date, regions: list[str]):
    """(CostModel with the measured penalty where there are enough playbacks, {region:
    "measured"|"configured"} and the penalties) for the daily job."""
    penalties = measured_penalties(cfg, costs, read_sides(store, day, cfg.placement.qoe_days), regions)
    prices = dict(costs.regions)
    source = {}
    for region in regions:
        pen = penalties[region]
        if pen.per_gb is None:
            source[region] = "configured"
            continue
        prices[region] = replace(costs.prices(region), qoe_penalty_per_gb=pen.per_gb)
        source[region] = "measured"
    return replace(costs, regions=prices), source, penalties


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def table(sides: dict, penalties: dict, costs) -> str:
    lines = [f"{'region':<7}{'from':<8}{'playbacks':>10}{'startup mean s':>15}{'p50 <= s':>9}{'p90 <= s':>9}"
             f"{'rebuffers/pb':>13}{'rebuffer s/pb':>14}{'ladder':>7}"]
    for (region, where), s in sorted(sides.items()):
        per = max(s.playbacks, 1)
        lines.append(f"{region:<7}{where:<8}{s.playbacks:>10}{_fmt(s.mean_startup_s, '.3f'):>15}"
                     f"{_fmt(s.startup_quantile_s(0.5), '.2f'):>9}{_fmt(s.startup_quantile_s(0.9), '.2f'):>9}"
                     f"{s.rebuffers / per:>13.3f}{s.rebuffer_ms / 1000 / per:>14.3f}"
                     f"{_fmt(s.ladder_sum / s.ladder_n if s.ladder_n else None, '.2f'):>7}")
    lines.append("")
    lines.append(f"QoE penalty per region (start-up gap x {qoe.ABANDONMENT_PER_S:.3f} abandonment/s x value per view"
                 " / GB per view; Krishnan & Sitaraman, IMC 2012):")
    lines.append(f"{'region':<7}{'gap s':>8}{'abandon':>9}{'measured $/GB':>14}{'configured $/GB':>16}  used")
    for region, p in penalties.items():
        configured = costs.prices(region).qoe_penalty_per_gb
        lines.append(f"{region:<7}{_fmt(p.startup_gap_s, '.3f'):>8}{_fmt(p.abandonment, '.4f'):>9}"
                     f"{_fmt(p.per_gb, '.5f'):>14}{configured:>16.5f}  "
                     f"{'measured' if p.per_gb is not None else f'configured ({p.origin_playbacks} origin / {p.edge_playbacks} edge playbacks)'}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longtail placement qoe", description=__doc__.split("\n\n")[0])
    p.add_argument("--date", help="the day after the period (default: tomorrow, UTC: today included)")
    p.add_argument("--days", type=int, help="days of beacons to read (default: placement.qoe_days)")
    p.add_argument("--costs", help="prices per region, JSON or TOML (the configured penalty)")
    p.add_argument("--config", help="config file (default: LONGTAIL_CONFIG)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def main(argv: list[str] | None = None, cfg=None) -> int:
    from longtail_common.adapters import make_view_count_store
    from placement_svc.model.costs import CostModel, CostsError, load_costs

    args = build_parser().parse_args(argv)
    try:
        day = dt.date.fromisoformat(args.date) if args.date else dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)
        cfg = cfg or load_config(args.config)
        costs = load_costs(args.costs) if args.costs else CostModel()
    except (ValueError, OSError, CostsError) as exc:
        print(f"longtail placement qoe: {exc}", file=sys.stderr)
        return 2
    days = args.days or cfg.placement.qoe_days
    if not 1 <= days <= 366:
        print("longtail placement qoe: --days must be 1..366", file=sys.stderr)
        return 2
    store = make_view_count_store(cfg)
    try:
        sides = read_sides(store, day, days)
    finally:
        store.close()
    penalties = measured_penalties(cfg, costs, sides, list(cfg.platform.regions))
    if args.json:
        print(json.dumps({
            "first_day": (day - dt.timedelta(days=days)).isoformat(), "last_day": (day - dt.timedelta(days=1)).isoformat(),
            "sides": [{"region": r, "served_from": w, "playbacks": s.playbacks, "mean_startup_s": s.mean_startup_s,
                       "rebuffers": s.rebuffers, "rebuffer_s": s.rebuffer_ms / 1000,
                       "mean_ladder_position": s.ladder_sum / s.ladder_n if s.ladder_n else None}
                      for (r, w), s in sorted(sides.items())],
            "penalties": {r: {**asdict(p), "configured_per_gb": costs.prices(r).qoe_penalty_per_gb}
                          for r, p in penalties.items()},
            "abandonment_per_s": qoe.ABANDONMENT_PER_S, "value_per_view_usd": cfg.placement.qoe_value_per_view_usd,
            "gb_per_view": gb_per_view(costs), "min_playbacks": cfg.placement.qoe_min_playbacks}))
    else:
        print(table(sides, penalties, costs))
    return 0
