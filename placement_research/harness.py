"""Replay evaluation: train/tune on the training days, replay the test days, price everything.

One job: `evaluate(ds, costs, train_end, n_test, scenarios=...)` fits every policy on days
<= train_end, replays days train_end+1 .. train_end+n_test (each morning from what was known
the night before, each first request from that plus the request), prices each day with the
shared cost model, per price scenario, and returns one JSON-ready dict. All policies start
the test window with an empty edge.
"""
from __future__ import annotations

import time

import numpy as np

from placement_research.policies import (
    AllPolicy, Context, LRUPolicy, ModelPolicy, NonePolicy, OraclePolicy, Plan, Policy, ThresholdPolicy,
)
from placement_svc.model.costs import PART_KEYS, CostModel, Pricer
from placement_svc.model.dataset import Dataset
from placement_svc.model.features import History, Vocab
from placement_svc.model.learned import FittedPredictors, TrainConfig, fit_predictors, tune
from placement_svc.model.tuning import make_tune_replay

POLICY_NAMES = ("none", "all", "threshold", "lru", "oracle", "model")


def price_plan(ctx: Context, plan: Plan) -> dict:
    per_day, parts = [], {k: 0.0 for k in PART_KEYS}
    edge_gb = total_gb = stored = 0.0
    for t, d in enumerate(plan.days):
        p = ctx.pricer.day_parts(ctx.ds.views[:, :, d].astype(np.float64), plan.edge[t], plan.fill[t])
        per_day.append(sum(p[k] for k in PART_KEYS))
        for k in PART_KEYS:
            parts[k] += p[k]
        edge_gb += p["_edge_gb"]
        total_gb += p["_total_gb"]
        stored += p["_stored_gb"]
    return {"total_cost": float(sum(per_day)), "parts": parts, "per_day": per_day,
            "cdn_byte_share": edge_gb / total_gb if total_gb else 0.0, "edge_storage_gb_days": stored,
            "delivered_gb": total_gb, "fills": int(plan.fill.sum()), "edge_pair_days": int(plan.edge.sum())}


AGE_GROUPS = ("unknown_that_morning", "upload_day", "age_1", "age_2_7", "age_8_plus")


def excess_breakdown(ctx: Context, plan: Plan, ref: Plan) -> dict:
    """Where `plan` costs more than `ref` (the oracle), per pair-day, in USD.

    by_age: by the video's age on the day (from its upload date; imputed = first day with
    views), with videos not yet known that morning apart (no morning policy can place
    them). by_decision: pushed where the reference was not (over), not pushed where it
    was (under), both at the edge (fill timing, e.g. evict and refill)."""
    ds = ctx.ds
    by_age = {k: 0.0 for k in AGE_GROUPS}
    by_dec = {"over_push": 0.0, "under_push": 0.0, "fill_timing": 0.0}
    over_zero = 0.0
    for t, d in enumerate(plan.days):
        views = ds.views[:, :, d].astype(np.float64)
        e, o, f = ctx.pricer.pair_costs(views)
        cost = lambda p: np.where(p.edge[t], e + np.where(p.fill[t], f, 0.0), o)  # noqa: E731
        ex = cost(plan) - cost(ref)
        age = d - ds.upload_day
        group = np.select([ds.known_from > d, age <= 0, age == 1, age <= 7], [0, 1, 2, 3], 4)
        per_video = ex.sum(1)
        for i, k in enumerate(AGE_GROUPS):
            by_age[k] += float(per_video[group == i].sum())
        me, oe = plan.edge[t], ref.edge[t]
        by_dec["over_push"] += float(ex[me & ~oe].sum())
        by_dec["under_push"] += float(ex[~me & oe].sum())
        by_dec["fill_timing"] += float(ex[me & oe].sum())
        over_zero += float(ex[me & ~oe & (views == 0)].sum())
    return {"total": round(sum(by_age.values()), 4), "by_age": {k: round(v, 4) for k, v in by_age.items()},
            "by_decision": {k: round(v, 4) for k, v in by_dec.items()},
            "over_push_on_pair_days_without_views": round(over_zero, 4)}


def calibration_bins(pred: np.ndarray, real: np.ndarray) -> list[dict]:
    """Mean predicted vs mean real views per log-spaced bin of the prediction (test days)."""
    if len(pred) == 0:
        return []
    top = max(float(pred.max()), 1.0)
    edges = np.concatenate([[-np.inf, 0.01], np.logspace(-1.5, np.log10(top) + 0.01, 14)])
    idx = np.searchsorted(edges, pred, side="right") - 1
    out = []
    for k in np.unique(idx):
        m = idx == k
        out.append({"predicted_mean": float(pred[m].mean()), "real_mean": float(real[m].mean()), "rows": int(m.sum())})
    return out


def dataset_summary(ds: Dataset, days: list[int]) -> dict:
    v = ds.views[:, :, days]
    per_video_day = v.sum(1)
    return {
        "videos": len(ds.video_ids), "regions": list(ds.regions), "days": ds.n_days,
        "first_day": str(ds.dates[0]), "last_day": str(ds.dates[-1]),
        "views_total": float(ds.views.sum()),
        "share_known_videos_unwatched_per_day": float(np.mean([
            1.0 - (per_video_day[(ds.known_from <= d), t] > 0).mean() if (ds.known_from <= d).any() else 0.0
            for t, d in enumerate(days)])),
        "upload_dates_given": float(ds.upload_known.mean()),
    }


def evaluate(ds: Dataset, costs: CostModel, train_end: int, n_test: int, cfg: TrainConfig | None = None,
             keep_plans: bool = False, scenarios: dict[str, CostModel] | None = None,
             primary: str = "default") -> dict:
    """Evaluate every policy under `costs` (reported at the top level, as `primary`) and under
    each other price scenario (`scenarios`, name -> prices). The predictors are fitted once;
    each scenario tunes its own decision knobs and heuristics, since both depend on prices."""
    cfg = cfg or TrainConfig()
    if train_end < 3:
        raise ValueError("need at least 4 days of data up to --train-until")
    if n_test < 1 or train_end + n_test > ds.n_days - 1:
        raise ValueError(f"data ends on {ds.dates[-1]}; {n_test} test days after {ds.dates[train_end]} do not fit")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    hist = History(ds, Vocab.fit(ds, train_end))
    timings["features_setup_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fitted = fit_predictors(hist, train_end, cfg)
    timings["fit_predictors_s"] = time.perf_counter() - t0
    test_days = list(range(train_end + 1, train_end + 1 + n_test))
    out = _evaluate_prices(hist, costs, fitted, train_end, test_days, timings, keep_plans)
    out["scenarios"] = {primary: _scenario_view(out)}
    for name, sc_costs in (scenarios or {}).items():
        if name != primary:
            sc_timings: dict[str, float] = {}
            out["scenarios"][name] = _scenario_view(
                _evaluate_prices(hist, sc_costs, fitted, train_end, test_days, sc_timings, False))
            timings.update({f"{name}.{k}": v for k, v in sc_timings.items()})
    out["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    return out


SCENARIO_KEYS = ("policies", "summary", "model", "threshold", "lru", "costs")


def _scenario_view(res: dict) -> dict:
    """What `scenarios.<name>` reports: the policies and what each tuned, under those prices."""
    return {k: res[k] for k in SCENARIO_KEYS}


def _evaluate_prices(hist: History, costs: CostModel, fitted: FittedPredictors, train_end: int,
                     test_days: list[int], timings: dict[str, float], keep_plans: bool) -> dict:
    """Every policy fitted and replayed under one set of prices, priced and summarised."""
    ds = hist.ds
    ctx = Context(ds=ds, hist=hist, pricer=Pricer(costs, ds.regions, ds.size_bytes))
    policies = {"none": NonePolicy(), "all": AllPolicy(), "threshold": ThresholdPolicy(), "lru": LRUPolicy(),
                "oracle": OraclePolicy(), "model": ModelPolicy()}
    tuning = _fit_policies(ctx, policies, fitted, train_end, timings)
    results, plans = _replay_policies(ctx, policies, test_days, timings)
    known_oracle = price_plan(ctx, OraclePolicy(known_only=True).replay(ctx, test_days))
    # The threshold as it was before the on-day step (its k tuned with no first-request fills).
    results["threshold_morning_only"] = price_plan(
        ctx, ThresholdPolicy(policies["threshold"].k_morning_only).replay(ctx, test_days))
    model = policies["model"].model
    out = {
        "policies": {name: _policy_result(results[name], results["oracle"]["total_cost"]) for name in POLICY_NAMES},
        "summary": _summary(ctx, results, plans, known_oracle),
        "model": {**tuning["model"], "alpha": model.alpha if np.isfinite(model.alpha) else None, "gamma": model.gamma,
                  "admit_alpha": model.admit_alpha if np.isfinite(model.admit_alpha) else None,
                  "admit_gamma": model.admit_gamma},
        "threshold": tuning["threshold"],
        "lru": tuning["lru"],
        "calibration": _model_calibration(ds, policies["model"].log),
        "test_days": [str(ds.dates[test_days[0]]), str(ds.dates[test_days[-1]])],
        "train_until": str(ds.dates[train_end]),
        "data": dataset_summary(ds, test_days),
        "costs": costs.to_dict(),
    }
    if keep_plans:
        out["_plans"] = plans
        out["_model"] = model
        out["_model_log"] = policies["model"].log
    return out


def _fit_policies(ctx: Context, policies: dict[str, Policy], fitted: FittedPredictors, train_end: int,
                  timings: dict[str, float]) -> dict[str, dict]:
    """Fits every policy on the training days (the model: tunes its knobs for these prices);
    returns what each tuned."""
    tuning: dict[str, dict] = {}
    for name, pol in policies.items():
        t0 = time.perf_counter()
        if name == "model":
            pol.model = tune(fitted, ctx.pricer.costs, make_tune_replay(ctx))
            tuning[name] = pol.model.info
        else:
            tuning[name] = pol.fit(ctx, train_end)
        timings[f"fit_{name}_s"] = time.perf_counter() - t0
    return tuning


def _replay_policies(ctx: Context, policies: dict[str, Policy], test_days: list[int],
                     timings: dict[str, float]) -> tuple[dict[str, dict], dict[str, Plan]]:
    """Every policy's plan over the test days, and its price."""
    results, plans = {}, {}
    for name, pol in policies.items():
        t0 = time.perf_counter()
        plans[name] = pol.replay(ctx, test_days)
        timings[f"replay_{name}_s"] = time.perf_counter() - t0
        results[name] = price_plan(ctx, plans[name])
    return results, plans


def _policy_result(r: dict, oracle: float) -> dict:
    """One policy's priced plan as reported (rounded; cost relative to the oracle's)."""
    return {
        "total_cost": round(r["total_cost"], 4),
        "cost_vs_oracle": round(r["total_cost"] / oracle, 4) if oracle > 0 else None,
        "cdn_byte_share": round(r["cdn_byte_share"], 4),
        "edge_storage_gb_days": round(r["edge_storage_gb_days"], 3),
        "parts": {k: round(v, 4) for k, v in r["parts"].items()},
        "cost_per_day": [round(c, 4) for c in r["per_day"]],
        "fills": r["fills"],
    }


def _summary(ctx: Context, results: dict[str, dict], plans: dict[str, Plan], known_oracle: dict) -> dict:
    """The model against the best tuned heuristic, the oracle and the known-videos bound."""
    oracle = results["oracle"]["total_cost"]
    heur = min(("threshold", "lru"), key=lambda n: results[n]["total_cost"])
    m, h, none = results["model"]["total_cost"], results[heur]["total_cost"], results["none"]["total_cost"]
    return {
        "best_heuristic": heur,
        "model_vs_best_heuristic": round(m / h, 4) if h > 0 else None,
        "model_vs_oracle": round(m / oracle, 4) if oracle > 0 else None,
        "model_vs_lru": round(m / results["lru"]["total_cost"], 4) if results["lru"]["total_cost"] > 0 else None,
        "threshold_morning_only_cost": round(results["threshold_morning_only"]["total_cost"], 4),
        "model_vs_threshold_morning_only": round(m / results["threshold_morning_only"]["total_cost"], 4)
        if results["threshold_morning_only"]["total_cost"] > 0 else None,
        # A morning-only plan cannot place a video before it is known; this bounds such plans
        # (an on-day fill at the first request can go below it).
        "oracle_known_videos_cost": round(known_oracle["total_cost"], 4),
        "model_vs_oracle_known_videos": round(m / known_oracle["total_cost"], 4) if known_oracle["total_cost"] else None,
        "gap_closed_none_to_oracle": round((none - m) / (none - oracle), 4) if none > oracle else None,
        # Where the model's cost above the oracle's comes from (pair-days, USD).
        "model_excess_over_oracle": excess_breakdown(ctx, plans["model"], plans["oracle"]),
    }


def _model_calibration(ds: Dataset, model_log: list) -> list[dict]:
    """Calibration bins of the model's expected views against the real views it decided for."""
    pred = np.concatenate([e[:, 0] for _, _, _, e in model_log]) if model_log else np.zeros(0)
    real = np.concatenate([ds.views[v, r, d] for d, v, r, _ in model_log]).astype(np.float64) if model_log \
        else np.zeros(0)
    return calibration_bins(pred, real)
