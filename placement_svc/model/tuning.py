"""The cost that training minimises when it tunes the decision rule.

One job: `make_tune_replay(ctx)` replays a candidate model's two-moment decisions over the
validation days, each morning from the day before's edge: the morning plan over the known
pairs, then the admission rule at the first request of every requested pair left at
origin; it returns what that costs with the shared prices. `learned.tune` calls it for
every knob setting it tries; the daily job and the research harness both hand it to `train`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement_svc.model.costs import PART_KEYS, Pricer
from placement_svc.model.dataset import Dataset
from placement_svc.model.features import History
from placement_svc.model.learned import PlacementModel, ValidationDay


@dataclass
class ReplayContext:
    """A data set with its features and its prices: what replaying decisions over days reads."""

    ds: Dataset
    hist: History
    pricer: Pricer


def two_moment_day(model: PlacementModel, day: ValidationDay, expected: np.ndarray, first_expected: np.ndarray,
                   prev: np.ndarray) -> np.ndarray:
    """The edge after one day of the model's decisions (videos x regions, bool): the morning
    plan from `prev`, then the fills at first requests of requested pairs it left at origin."""
    b = day.morning
    push = model.decide_rows(b, expected, prev[b.vid, b.reg])
    edge = np.zeros_like(prev)
    edge[b.vid[push], b.reg[push]] = True
    if model.admits():
        f = day.first
        miss = ~edge[f.vid, f.reg]
        adm = model.admit_rows(f.take(miss), first_expected[miss])
        edge[f.vid[miss][adm], f.reg[miss][adm]] = True
    return edge


def make_tune_replay(ctx: ReplayContext):
    """Cost of a candidate decision rule over validation days (used by training)."""

    def run(model: PlacementModel, days: list[ValidationDay], expected, first_expected) -> float:
        n_v, n_r = ctx.ds.views.shape[:2]
        prev = np.zeros((n_v, n_r), dtype=bool)
        total = 0.0
        for day, e, fe in zip(days, expected, first_expected):
            edge = two_moment_day(model, day, e, fe, prev)
            parts = ctx.pricer.day_parts(ctx.ds.views[:, :, day.morning.day].astype(np.float64), edge, edge & ~prev)
            total += sum(parts[k] for k in PART_KEYS)
            prev = edge
        return total

    return run
