"""The cost that training minimises when it tunes the decision rule.

One job: `make_tune_replay(ctx)` replays a candidate model's decisions over the validation
days, pair by pair, each morning from the day before's edge, and returns what they cost
with the shared prices. `learned.train` calls it for every (alpha, gamma) it tries; the
daily job and the research harness both hand it to `train`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement_svc.model.costs import Pricer
from placement_svc.model.dataset import Dataset
from placement_svc.model.features import History
from placement_svc.model.learned import PlacementModel


@dataclass
class ReplayContext:
    """A data set with its features and its prices: what replaying decisions over days reads."""

    ds: Dataset
    hist: History
    pricer: Pricer


def make_tune_replay(ctx: ReplayContext):
    """Cost of a candidate decision rule over validation days (rows only; used by training)."""

    def run(model: PlacementModel, batches, expected) -> float:
        pr = ctx.pricer
        n_v, n_r = ctx.ds.views.shape[:2]
        prev = np.zeros((n_v, n_r), dtype=bool)
        p = pr.p
        total = 0.0
        for b, e in zip(batches, expected):
            at = prev[b.vid, b.reg]
            push = model.decide_rows(b, e, at)
            views = ctx.ds.views[b.vid, b.reg, b.day].astype(np.float64)
            gb = views * pr.view_gb[b.vid]
            edge_c = pr.size_gb[b.vid] * p["cdn_storage_per_gb_day"][b.reg] + gb * p["cdn_delivery_per_gb"][b.reg]
            edge_c = edge_c + np.where(at, 0.0, pr.size_gb[b.vid] * p["cdn_fill_per_gb"][b.reg])
            orig_c = gb * (p["origin_delivery_per_gb"][b.reg] + p["qoe_penalty_per_gb"][b.reg])
            total += float(np.where(push, edge_c, orig_c).sum())
            prev = np.zeros((n_v, n_r), dtype=bool)
            prev[b.vid[push], b.reg[push]] = True
        return total

    return run
