"""The oracle is a true lower bound: exact on tiny cases, never beaten on random ones."""
import itertools

import numpy as np
import pytest

from placement_svc.model.costs import CostModel, Pricer
from placement_svc.model.dataset import Dataset
from placement_svc.model.features import History, Vocab
from placement_svc.model.harness import price_plan
from placement_svc.model.policies import (
    AllPolicy, Context, LRUPolicy, NonePolicy, OraclePolicy, Plan, ThresholdPolicy,
)
import datetime as dt


def random_dataset(rng, n_v=12, n_r=2, n_d=10) -> Dataset:
    # Heavy-tailed views with many zeros, random sizes, everything known from day 0.
    views = np.where(rng.random((n_v, n_r, n_d)) < 0.5, 0, np.floor(np.exp(rng.normal(2, 2, (n_v, n_r, n_d)))))
    return Dataset(dates=[dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(n_d)], regions=["GB", "JP"][:n_r],
                   video_ids=[f"v{i}" for i in range(n_v)], views=views.astype(np.float32),
                   upload_day=np.full(n_v, -5), upload_known=np.ones(n_v, bool), first_seen=np.zeros(n_v, int),
                   language=np.array(["en"] * n_v), category=np.array(["1"] * n_v), channel=np.zeros(n_v, int),
                   channel_ids=["c"], size_bytes=rng.uniform(1e8, 2e9, n_v))


def ctx_for(ds):
    return Context(ds=ds, hist=History(ds, Vocab.fit(ds, ds.n_days - 1)), pricer=Pricer(CostModel(), ds.regions, ds.size_bytes))


def test_dp_oracle_matches_brute_force():
    rng = np.random.default_rng(0)
    ds = random_dataset(rng, n_v=4, n_r=2, n_d=6)
    ctx = ctx_for(ds)
    days = list(range(1, 6))
    oracle = price_plan(ctx, OraclePolicy().replay(ctx, days))["total_cost"]
    brute = 0.0
    for v in range(4):
        for r in range(2):
            best = np.inf
            for seq in itertools.product([False, True], repeat=len(days)):
                cost, prev = 0.0, False
                for t, d in enumerate(days):
                    e, o, f = ctx.pricer.pair_costs(ds.views[:, :, d].astype(float))
                    cost += (e[v, r] + (f[v, r] if not prev else 0.0)) if seq[t] else o[v, r]
                    prev = seq[t]
                best = min(best, cost)
            brute += best
    assert oracle == pytest.approx(brute, rel=1e-9)


class RandomPolicy(NonePolicy):
    name = "random"

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def decide(self, ctx, d, prev_edge):
        return self.rng.random(prev_edge.shape) < 0.5


@pytest.mark.parametrize("seed", range(8))
def test_no_policy_beats_the_oracle(seed):
    rng = np.random.default_rng(seed)
    ds = random_dataset(rng)
    ctx = ctx_for(ds)
    days = list(range(3, ds.n_days))
    oracle = price_plan(ctx, OraclePolicy().replay(ctx, days))["total_cost"]
    known = price_plan(ctx, OraclePolicy(known_only=True).replay(ctx, days))["total_cost"]
    assert known >= oracle - 1e-9
    thr = ThresholdPolicy(); thr.fit(ctx, 2)
    lru = LRUPolicy(); lru.fit(ctx, 2)
    for pol in (NonePolicy(), AllPolicy(), thr, lru, ThresholdPolicy(np.zeros(2)),
                LRUPolicy(np.full(2, 0.5)), RandomPolicy(seed)):
        cost = price_plan(ctx, pol.replay(ctx, days))["total_cost"]
        assert cost >= oracle - 1e-9, pol.name
    # and the oracle's own plan is priced at its DP value
    plan: Plan = OraclePolicy().replay(ctx, days)
    assert price_plan(ctx, plan)["total_cost"] == pytest.approx(plan.extra["dp_cost"], rel=1e-9)
