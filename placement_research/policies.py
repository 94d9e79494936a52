"""Placement policies (the baselines and the learned model) behind one interface, replayed by the harness.

One job: given what is known, say which (video, region) pairs sit on the CDN edge each day.
Every policy implements `fit(ctx, train_end)` (tune on training days only) and
`replay(ctx, days) -> Plan` (edge and fill masks per day). A policy acts at two moments
(`TwoMomentPolicy`): the morning plan (`morning`, from data before the day: keep, push or
evict) and, on the day, at the first request of a pair that is not on the edge
(`admit`: fill it through the edge, or keep serving it from origin), from the morning's
features plus the fact of that request. Daily granularity: a pair filled at its first
request serves all of that day's views from the edge and pays the fill and a day's storage.
The oracle sees the test days' real views.

  none       origin only
  all        every known video in every region
  threshold  morning: yesterday's views in the region > k[r]; on the day: fill a first
             request iff the pair's views over the last 7 days >= j[r] (j = inf: never);
             k, j tuned per region on the training days
  lru        pure pull-through edge cache of C[r] bytes per region (LRU): every first
             request fills; C tuned on training days
  oracle     exact minimum for the real views: per pair, a two-state shortest path over the
             days (fill is paid once per stay, so a day-by-day rule would not be a bound)
  model      the learned predictors + expected-cost rules at both moments
             (placement_svc.model.learned)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from placement_svc.model.features import first_request_batch
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
    morning: np.ndarray | None = None  # (T, n_videos, n_regions) bool: the morning plan (two-moment policies)
    extra: dict = field(default_factory=dict)


class Policy:
    name = "policy"

    def fit(self, ctx: Context, train_end: int) -> dict:
        return {}

    def replay(self, ctx: Context, days: list[int]) -> Plan:
        raise NotImplementedError


class TwoMomentPolicy(Policy):
    """Morning plan from data before the day (known videos only: the harness masks the rest),
    then the on-day admission at each first request of a pair the morning left at origin."""

    def morning(self, ctx: Context, d: int, prev_edge: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def admit(self, ctx: Context, d: int, morning_edge: np.ndarray, requested: np.ndarray) -> np.ndarray:
        """Which first requests (requested & ~morning_edge) fill; default: none."""
        return np.zeros_like(requested)

    def replay(self, ctx: Context, days: list[int]) -> Plan:
        n_v, n_r = ctx.ds.views.shape[:2]
        edge = np.zeros((len(days), n_v, n_r), dtype=bool)
        fill = np.zeros_like(edge)
        morning = np.zeros_like(edge)
        prev = np.zeros((n_v, n_r), dtype=bool)
        for t, d in enumerate(days):
            m = self.morning(ctx, d, prev) & ctx.known(d)[:, None]
            miss = (ctx.ds.views[:, :, d] > 0) & ~m  # only the request's existence is used
            e = m | (self.admit(ctx, d, m, miss) & miss)
            edge[t], fill[t], morning[t] = e, e & ~prev, m
            prev = e
        return Plan(days=list(days), edge=edge, fill=fill, morning=morning)


class NonePolicy(TwoMomentPolicy):
    name = "none"

    def morning(self, ctx, d, prev_edge):
        return np.zeros_like(prev_edge)


class AllPolicy(TwoMomentPolicy):
    name = "all"

    def morning(self, ctx, d, prev_edge):
        return np.ones_like(prev_edge)


THRESHOLD_GRID = (0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000,
                  10_000, 100_000, 1_000_000, np.inf)


ADMIT_GRID = (0, 1, 3, 10, 30, 100, 300, 1000, 10_000, np.inf)  # views in the last 7 days to fill a first request


def _grid_value(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


class ThresholdPolicy(TwoMomentPolicy):
    """Morning: push or keep iff yesterday's views in the region > k[r]. On the day: fill a
    first request iff the pair's views over the last 7 days >= j[r] (0: every first request,
    as a pull-through cache; inf: never, the morning-only rule)."""

    name = "threshold"

    def __init__(self, k: np.ndarray | None = None, j: np.ndarray | None = None):
        self.k = k
        self.j = j if j is not None or k is None else np.full(len(k), np.inf)

    def morning(self, ctx, d, prev_edge):
        return ctx.hist.window(d, 1) > self.k[None, :]

    def admit(self, ctx, d, morning_edge, requested):
        return ctx.hist.window(d, 7) >= self.j[None, :]

    def _region_costs(self, ctx, days) -> np.ndarray:
        plan = self.replay(ctx, days)
        return sum(ctx.region_costs(d, plan.edge[t], plan.fill[t]) for t, d in enumerate(days))

    def _tune(self, ctx, days, knob: str, grid) -> None:
        """Set knob ('k' or 'j') per region to its cheapest grid value, the other fixed
        (costs add up per pair, so each region is tuned independently)."""
        n_r = len(ctx.ds.regions)
        costs = np.zeros((len(grid), n_r))
        for i, x in enumerate(grid):
            setattr(self, knob, np.full(n_r, x, dtype=float))
            costs[i] = self._region_costs(ctx, days)
        setattr(self, knob, np.array([grid[i] for i in costs.argmin(0)], dtype=float))

    def fit(self, ctx, train_end):
        days = list(range(1, train_end + 1))
        n_r = len(ctx.ds.regions)
        self.j = np.full(n_r, np.inf)
        self._tune(ctx, days, "k", THRESHOLD_GRID)  # the morning-only rule, then each knob given the other
        self.k_morning_only = self.k.copy()
        self._tune(ctx, days, "j", ADMIT_GRID)
        self._tune(ctx, days, "k", THRESHOLD_GRID)
        self._tune(ctx, days, "j", ADMIT_GRID)
        regions = ctx.ds.regions
        return {"k": {r: _grid_value(k) for r, k in zip(regions, self.k)},
                "admit_min_views_7d": {r: _grid_value(j) for r, j in zip(regions, self.j)},
                "k_morning_only": {r: _grid_value(k) for r, k in zip(regions, self.k_morning_only)},
                "grid": [_grid_value(k) for k in THRESHOLD_GRID], "admit_grid": [_grid_value(j) for j in ADMIT_GRID]}


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


class ModelPolicy(TwoMomentPolicy):
    """The learned model (trained by the harness) at both moments: the morning plan by
    expected cost, and the learned admission rule at first requests.

    Videos uploaded on day d (known upload date) are decided through the same cold-start
    features `decide_new_video` uses: zero history, age 0, channel, language, category."""

    name = "model"

    def __init__(self, model=None):
        self.model = model
        self.log: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (day, vid, reg, expected)
        self._morning_batch = None

    def morning(self, ctx, d, prev_edge):
        b = ctx.hist.batch(d)
        exp = self.model.expected_views(b)
        push = self.model.decide_rows(b, exp, prev_edge[b.vid, b.reg])
        out = np.zeros_like(prev_edge)
        out[b.vid[push], b.reg[push]] = True
        self.log.append((d, b.vid, b.reg, exp))
        self._morning_batch = b
        return out

    def admit(self, ctx, d, morning_edge, requested):
        out = np.zeros_like(requested)
        if not self.model.admits():
            return out
        f = first_request_batch(ctx.hist, self._morning_batch, requested, morning_edge)
        adm = self.model.admit_rows(f, self.model.expected_views_if_requested(f))
        out[f.vid[adm], f.reg[adm]] = True
        return out
