"""The oracle is a true lower bound: exact on tiny cases, never beaten on random ones."""
import itertools

import numpy as np
import pytest

from placement_research.harness import price_plan
from placement_research.policies import (
    AllPolicy, Context, LRUPolicy, NonePolicy, OraclePolicy, Plan, ThresholdPolicy, TwoMomentPolicy,
)
from placement_svc.model.costs import CostModel, Pricer
from placement_svc.model.dataset import Dataset
from placement_svc.model.features import History, Vocab
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


def two_moment_cost(ctx, days, v, r, moves) -> float:
    """One pair's cost under a sequence of two-moment moves: 'push' (on the edge from the
    morning), 'admit' (fill at the day's first request, if there is one), 'origin'."""
    cost, prev = 0.0, False
    for t, d in enumerate(days):
        e, o, f = ctx.pricer.pair_costs(ctx.ds.views[:, :, d].astype(float))
        requested = ctx.ds.views[v, r, d] > 0
        on = moves[t] == "push" or (moves[t] == "admit" and requested)
        cost += (e[v, r] + (f[v, r] if not prev else 0.0)) if on else o[v, r]
        prev = on
    return cost


@pytest.mark.parametrize("seed", range(3))
def test_dp_oracle_is_the_best_two_moment_plan(seed):
    """Under the two-moment rule (morning push, or fill at the first request, or origin) the
    cheapest of all 3^T move sequences per pair, found by brute force, is the DP oracle: the
    rule adds no plan the oracle cannot price and loses none it can."""
    rng = np.random.default_rng(10 + seed)
    ds = random_dataset(rng, n_v=3, n_r=2, n_d=6)
    ctx = ctx_for(ds)
    days = list(range(1, 6))
    oracle = OraclePolicy().replay(ctx, days)
    for v in range(3):
        for r in range(2):
            brute = min(two_moment_cost(ctx, days, v, r, m)
                        for m in itertools.product(("push", "admit", "origin"), repeat=len(days)))
            assert oracle.extra["pair_cost"][v, r] == pytest.approx(brute, rel=1e-9)


class RandomAdmission(TwoMomentPolicy):
    """Random morning plans and random fills at first requests."""

    name = "random-two-moment"

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def morning(self, ctx, d, prev_edge):
        return self.rng.random(prev_edge.shape) < 0.3

    def admit(self, ctx, d, morning_edge, requested):
        return self.rng.random(requested.shape) < 0.5


class KeepAndFill(TwoMomentPolicy):
    name = "keep-and-fill"

    def morning(self, ctx, d, prev_edge):
        return prev_edge

    def admit(self, ctx, d, morning_edge, requested):
        return requested


@pytest.mark.parametrize("seed", range(4))
def test_two_moment_plans_respect_the_rule_and_never_beat_the_oracle(seed):
    rng = np.random.default_rng(seed)
    ds = random_dataset(rng)
    ctx = ctx_for(ds)
    days = list(range(3, ds.n_days))
    oracle = price_plan(ctx, OraclePolicy().replay(ctx, days))["total_cost"]
    thr = ThresholdPolicy(); thr.fit(ctx, 2)
    for pol in (thr, ThresholdPolicy(np.full(2, np.inf), np.zeros(2)), RandomAdmission(seed), KeepAndFill()):
        plan = pol.replay(ctx, days)
        assert price_plan(ctx, plan)["total_cost"] >= oracle - 1e-9, pol.name
        for t, d in enumerate(days):
            requested = ds.views[:, :, d] > 0
            # on-day fills only at a first request of a pair the morning left at origin
            assert not (plan.edge[t] & ~plan.morning[t] & ~requested).any(), pol.name
            prev = plan.edge[t - 1] if t else np.zeros_like(plan.edge[t])
            assert np.array_equal(plan.fill[t], plan.edge[t] & ~prev)
    # Keeping what is on the edge and filling every first request is a pull-through cache
    # that never evicts.
    pull = KeepAndFill().replay(ctx, days)
    lru = LRUPolicy(np.full(2, np.inf)).replay(ctx, days)
    assert np.array_equal(pull.edge, lru.edge) and np.array_equal(pull.fill, lru.fill)


class RandomPolicy(NonePolicy):
    name = "random"

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def morning(self, ctx, d, prev_edge):
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


def test_oracle_constraints_force_states_and_cost_per_pair():
    """`allowed` masks the states a pair may take on a day: forbidding the edge everywhere
    gives `none`'s cost, forbidding origin everywhere gives `all`'s; `pair_cost` adds up."""
    rng = np.random.default_rng(3)
    ds = random_dataset(rng)
    ctx = ctx_for(ds)
    days = list(range(3, ds.n_days))
    cost = lambda pol: price_plan(ctx, pol.replay(ctx, days))["total_cost"]  # noqa: E731
    origin_only = OraclePolicy(allowed=lambda ctx, d: (False, True))
    edge_only = OraclePolicy(allowed=lambda ctx, d: (True, False))
    assert cost(origin_only) == pytest.approx(cost(NonePolicy()), rel=1e-9)
    assert cost(edge_only) == pytest.approx(cost(AllPolicy()), rel=1e-9)
    # one pair forced to the edge on one day: the rest keeps the oracle's per-pair optimum
    free = OraclePolicy().replay(ctx, days)
    one = np.zeros(ds.views.shape[:2], bool)
    one[0, 0] = True
    forced = OraclePolicy(allowed=lambda ctx, d: (True, ~one) if d == days[0] else (True, True)).replay(ctx, days)
    assert forced.edge[0, 0, 0]
    assert np.allclose(forced.extra["pair_cost"][~one], free.extra["pair_cost"][~one])
    assert forced.extra["pair_cost"][0, 0] >= free.extra["pair_cost"][0, 0] - 1e-9
    assert free.extra["pair_cost"].sum() == pytest.approx(free.extra["dp_cost"], rel=1e-12)
    with pytest.raises(ValueError):
        OraclePolicy(known_only=True, allowed=lambda ctx, d: (True, True))


def trending_like_dataset(rng, n_v=30, n_r=2, n_d=12) -> Dataset:
    """Like yt-trending-2017: no upload dates, every video arrives with a big first day
    (unknown to a morning planner until the day after) and decays; no long tail."""
    first = rng.integers(0, n_d - 2, n_v)
    age = np.arange(n_d)[None, :] - first[:, None]
    base = np.exp(rng.normal(10, 1.5, n_v))[:, None] * 0.45 ** np.clip(age, 0, None) * (age >= 0)
    share = rng.dirichlet(np.ones(n_r), n_v)
    views = np.floor(base[:, None, :] * share[:, :, None] * (rng.random((n_v, n_r, 1)) < 0.7))
    views[np.arange(n_v), 0, first] += 1000  # seen on its first day
    return Dataset(dates=[dt.date(2017, 9, 14) + dt.timedelta(days=i) for i in range(n_d)], regions=["GB", "US"][:n_r],
                   video_ids=[f"t{i}" for i in range(n_v)], views=views.astype(np.float32),
                   upload_day=first.astype(np.int64), upload_known=np.zeros(n_v, bool), first_seen=first.astype(np.int64),
                   language=np.array(["und"] * n_v), category=np.array(["24"] * n_v), channel=np.full(n_v, -1),
                   channel_ids=[], size_bytes=np.full(n_v, 7.68e8))


@pytest.mark.parametrize("seed", range(4))
def test_trending_like_bounds_lru_vs_oracle(seed):
    """On trending-like data the pull-through LRU lands at (never below) the oracle, while
    every morning policy is bounded by the known-videos oracle (a video unknown this morning
    cannot be pushed): lru ~ oracle there is the data, not a pricing bug."""
    ds = trending_like_dataset(np.random.default_rng(seed))
    ctx = ctx_for(ds)
    days = list(range(4, ds.n_days))
    oracle = price_plan(ctx, OraclePolicy().replay(ctx, days))["total_cost"]
    known = price_plan(ctx, OraclePolicy(known_only=True).replay(ctx, days))["total_cost"]
    lru_plan = LRUPolicy(np.full(2, np.inf)).replay(ctx, days)
    lru = price_plan(ctx, lru_plan)["total_cost"]
    assert oracle - 1e-9 <= lru <= 1.01 * oracle  # big first days: pull-through is near optimal
    assert known > 1.5 * oracle  # most bytes are on first days, unknown the morning before
    # The LRU's priced cost is the pair-by-pair cost of its masks (fills when entering the edge).
    direct = 0.0
    for t, d in enumerate(days):
        e, o, f = ctx.pricer.pair_costs(ds.views[:, :, d].astype(float))
        direct += float(np.where(lru_plan.edge[t], e + np.where(lru_plan.fill[t], f, 0.0), o).sum())
    assert lru == pytest.approx(direct, rel=1e-9)
    thr = ThresholdPolicy(); thr.fit(ctx, 3)
    # Morning-only plans (the tuned threshold without its on-day step included) are bounded by
    # the known-videos oracle; with the on-day step the threshold may go below it, not below the oracle.
    for pol in (NonePolicy(), AllPolicy(), ThresholdPolicy(thr.k), ThresholdPolicy(np.zeros(2)), RandomPolicy(seed)):
        assert price_plan(ctx, pol.replay(ctx, days))["total_cost"] >= known - 1e-9, pol.name
    assert price_plan(ctx, thr.replay(ctx, days))["total_cost"] >= oracle - 1e-9


def test_excess_breakdown_adds_up():
    from placement_research.harness import excess_breakdown

    ds = trending_like_dataset(np.random.default_rng(5))
    ctx = ctx_for(ds)
    days = list(range(4, ds.n_days))
    ref, plan = OraclePolicy().replay(ctx, days), AllPolicy().replay(ctx, days)
    ex = excess_breakdown(ctx, plan, ref)
    diff = price_plan(ctx, plan)["total_cost"] - price_plan(ctx, ref)["total_cost"]
    assert ex["total"] == pytest.approx(diff, rel=1e-6)
    assert sum(ex["by_age"].values()) == pytest.approx(diff, rel=1e-6)
    assert sum(ex["by_decision"].values()) == pytest.approx(diff, rel=1e-6)
    # unknown videos' first days are served from origin by every morning policy
    assert ex["by_age"]["unknown_that_morning"] > 0.5 * diff and ex["by_age"]["upload_day"] == 0.0
