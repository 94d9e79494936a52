"""Placement policies (the baselines and the learned model) behind one interface, replayed by the harness.

One job: given what is known, say which (video, region) pairs sit on the CDN edge each day.
Every policy implements `fit(ctx, train_end)` (tune on training days only) and
`replay(ctx, days) -> Plan` (edge and fill masks per day). Morning policies decide each day
from data before that day (`MorningPolicy.decide`); the pull-through LRU reacts to the day's
requests as a real cache would; the oracle sees the test days' real views.

  none       origin only
  all        every known video in every region
  threshold  yesterday's views in the region > k[r]; k tuned per region on the training days
  lru        pull-through edge cache of C[r] bytes per region (LRU); C tuned on training days
  oracle     exact minimum for the real views: per pair, a two-state shortest path over the
             days (fill is paid once per stay, so a day-by-day rule would not be a bound)
  model      the learned predictor + expected-cost rule (placement_svc.model.learned)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from placement_svc.model.tuning import ReplayContext


class Context(ReplayContext):
    """The replay's data set, features and prices, plus what the baseline policies ask of them."""

    def known(self, d: int) -> np.ndarray:
        return self.hist.known_from <= d

    def region_costs(self, d: int, edge: np.ndarray, fill: np.ndarray) -> np.ndarray:
        """Cost per region of day d for the given masks."""
        pr = self.pricer
        views = self.ds.views[:, :, d]
        gb = views * pr.view_gb[:, None]
        p = pr.p
        on = np.where(edge, gb, 0.0)
        cost = on.sum(0) * p["cdn_delivery_per_gb"]
        cost += (gb - on).sum(0) * (p["origin_delivery_per_gb"] + p["qoe_penalty_per_gb"])
        cost += np.where(edge, pr.size_gb[:, None], 0.0).sum(0) * p["cdn_storage_per_gb_day"]
        cost += np.where(fill, pr.size_gb[:, None], 0.0).sum(0) * p["cdn_fill_per_gb"]
        return cost


@dataclass
class Plan:
    days: list[int]
    edge: np.ndarray  # (T, n_videos, n_regions) bool
    fill: np.ndarray  # (T, n_videos, n_regions) bool
    extra: dict = field(default_factory=dict)


class Policy:
    name = "policy"

    def fit(self, ctx: Context, train_end: int) -> dict:
        return {}

    def replay(self, ctx: Context, days: list[int]) -> Plan:
        raise NotImplementedError


class MorningPolicy(Policy):
    """Decides each morning from data before the day; the harness enforces 'known videos only'."""

    def decide(self, ctx: Context, d: int, prev_edge: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def replay(self, ctx: Context, days: list[int]) -> Plan:
        n_v, n_r = ctx.ds.views.shape[:2]
        edge = np.zeros((len(days), n_v, n_r), dtype=bool)
        fill = np.zeros_like(edge)
        prev = np.zeros((n_v, n_r), dtype=bool)
        for t, d in enumerate(days):
            e = self.decide(ctx, d, prev) & ctx.known(d)[:, None]
            edge[t], fill[t] = e, e & ~prev
            prev = e
        return Plan(days=list(days), edge=edge, fill=fill)


class NonePolicy(MorningPolicy):
    name = "none"

    def decide(self, ctx, d, prev_edge):
        return np.zeros_like(prev_edge)


class AllPolicy(MorningPolicy):
    name = "all"

    def decide(self, ctx, d, prev_edge):
        return np.ones_like(prev_edge)


THRESHOLD_GRID = (0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000,
                  10_000, 100_000, 1_000_000, np.inf)


class ThresholdPolicy(MorningPolicy):
    name = "threshold"

    def __init__(self, k: np.ndarray | None = None):
        self.k = k

    def decide(self, ctx, d, prev_edge):
        return ctx.hist.window(d, 1) > self.k[None, :]

    def fit(self, ctx, train_end):
        days = list(range(1, train_end + 1))
        n_r = len(ctx.ds.regions)
        costs = np.zeros((len(THRESHOLD_GRID), n_r))
        for i, k in enumerate(THRESHOLD_GRID):
            self.k = np.full(n_r, k, dtype=float)
            plan = self.replay(ctx, days)
            for t, d in enumerate(days):
                costs[i] += ctx.region_costs(d, plan.edge[t], plan.fill[t])
        best = costs.argmin(0)
        self.k = np.array([THRESHOLD_GRID[i] for i in best], dtype=float)
        return {"k": {r: (None if not np.isfinite(k) else float(k)) for r, k in zip(ctx.ds.regions, self.k)},
                "grid": [None if not np.isfinite(k) else float(k) for k in THRESHOLD_GRID]}


LRU_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # share of all stored bytes, per region


class LRUPolicy(Policy):
    """Pull-through cache at daily granularity: a requested pair not cached is filled that
    day and served from the edge; least recently requested pairs are evicted to fit C[r].
    Storage is paid for everything that sat on the edge at any time of the day."""

    name = "lru"

    def __init__(self, capacity: np.ndarray | None = None):
        self.capacity = capacity

    def replay(self, ctx, days):
        ds, size = ctx.ds, ctx.pricer.size_gb
        n_v, n_r = ds.views.shape[:2]
        edge = np.zeros((len(days), n_v, n_r), dtype=bool)
        fill = np.zeros_like(edge)
        cached = np.zeros((n_v, n_r), dtype=bool)
        recency = np.full((n_v, n_r), -np.inf)
        for t, d in enumerate(days):
            views = ds.views[:, :, d]
            req = views > 0
            fill[t] = req & ~cached
            edge[t] = req | cached
            # More views today = used more recently within the day (daily granularity).
            recency = np.where(req, d + 0.5 * (1.0 - 1.0 / (1.0 + views)), recency)
            cached |= req
            for r in range(n_r):
                idx = np.nonzero(cached[:, r])[0]
                total = size[idx].sum()
                if total <= self.capacity[r]:
                    continue
                order = idx[np.argsort(recency[idx, r], kind="stable")]
                freed = np.cumsum(size[order])
                n_out = int(np.searchsorted(freed, total - self.capacity[r] - 1e-12, side="left")) + 1
                cached[order[:n_out], r] = False
        return Plan(days=list(days), edge=edge, fill=fill)

    def fit(self, ctx, train_end):
        days = list(range(1, train_end + 1))
        n_r = len(ctx.ds.regions)
        total = float(ctx.pricer.size_gb.sum())
        costs = np.zeros((len(LRU_GRID), n_r))
        for i, q in enumerate(LRU_GRID):
            self.capacity = np.full(n_r, q * total)
            plan = self.replay(ctx, days)
            for t, d in enumerate(days):
                costs[i] += ctx.region_costs(d, plan.edge[t], plan.fill[t])
        best = costs.argmin(0)
        self.capacity = np.array([LRU_GRID[i] * total for i in best])
        return {"capacity_gb": {r: round(float(c), 3) for r, c in zip(ctx.ds.regions, self.capacity)},
                "capacity_share_of_catalogue": {r: LRU_GRID[i] for r, i in zip(ctx.ds.regions, best)}}


class OraclePolicy(Policy):
    """The cheapest edge/origin sequence per (video, region) for the real views.

    Two states per day (at the edge or not); entering the edge pays the fill. Exact by
    dynamic programming, so no policy can cost less. With `known_only`, pairs may sit on the
    edge only from the day the video is known: the bound for morning policies. `allowed(ctx,
    d) -> (edge_ok, origin_ok)`, boolean masks broadcastable to (videos, regions), constrains
    the states a pair may be in on day d more generally (bench/placement_bench.py forces
    upload days this way). The plan's extra holds the total and each pair's cost."""

    name = "oracle"

    def __init__(self, known_only: bool = False, allowed=None):
        if known_only and allowed is not None:
            raise ValueError("known_only and allowed are two ways to say the same thing: pass one")
        self.known_only = known_only
        self.allowed = allowed or ((lambda ctx, d: (ctx.known(d)[:, None], True)) if known_only else None)

    def replay(self, ctx, days):
        ds = ctx.ds
        n_v, n_r = ds.views.shape[:2]
        T = len(days)
        A = np.full((n_v, n_r), np.inf)  # best cost so far ending at the edge
        O = np.zeros((n_v, n_r))  # ... ending at origin
        from_fill = np.zeros((T, n_v, n_r), dtype=bool)  # A[t] came from O[t-1] (fill)
        from_edge = np.zeros((T, n_v, n_r), dtype=bool)  # O[t] came from A[t-1]
        for t, d in enumerate(days):
            e_cost, o_cost, f_cost = ctx.pricer.pair_costs(ds.views[:, :, d].astype(np.float64))
            via_fill = O + f_cost
            from_fill[t] = via_fill < A
            A_new = e_cost + np.minimum(A, via_fill)
            from_edge[t] = A < O
            O_new = o_cost + np.minimum(A, O)
            if self.allowed is not None:
                edge_ok, origin_ok = self.allowed(ctx, d)
                A_new, O_new = np.where(edge_ok, A_new, np.inf), np.where(origin_ok, O_new, np.inf)
            A, O = A_new, O_new
        edge = np.zeros((T, n_v, n_r), dtype=bool)
        state = A < O
        for t in range(T - 1, -1, -1):
            edge[t] = state
            state = np.where(state, ~from_fill[t], from_edge[t])
        fill = edge & ~np.concatenate([np.zeros((1, n_v, n_r), dtype=bool), edge[:-1]])
        pair_cost = np.minimum(A, O)
        return Plan(days=list(days), edge=edge, fill=fill, extra={"dp_cost": float(pair_cost.sum()), "pair_cost": pair_cost})


class ModelPolicy(MorningPolicy):
    """The learned model (trained by the harness) deciding by expected cost each morning.

    Videos uploaded on day d (known upload date) are decided through the same cold-start
    features `decide_new_video` uses: zero history, age 0, channel, language, category."""

    name = "model"

    def __init__(self, model=None):
        self.model = model
        self.log: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (day, vid, reg, expected)

    def decide(self, ctx, d, prev_edge):
        b = ctx.hist.batch(d)
        exp = self.model.expected_views(b)
        push = self.model.decide_rows(b, exp, prev_edge[b.vid, b.reg])
        out = np.zeros_like(prev_edge)
        out[b.vid[push], b.reg[push]] = True
        self.log.append((d, b.vid, b.reg, exp))
        return out
