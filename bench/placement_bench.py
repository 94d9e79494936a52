"""Placement benchmark: learned model vs heuristics vs oracle, plus scoring speed.

Run from the repo root:  .venv/bin/python bench/placement_bench.py
Writes bench/results/placement.json. Targets (default prices, placement_svc.model.costs):
  model total cost <= 1.15 x oracle, and >= 10% below the best tuned heuristic (threshold,
  lru), on the simulator and on the real yt-trending-2017 data; scoring >= 1M
  video-region predictions per second on one core (features + forward pass).
Real data is read from ../shared/data relative to the repo root (never copied).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from placement_research.dataset_csv import load_dataset  # noqa: E402
from placement_research.harness import evaluate, price_plan  # noqa: E402
from placement_research.policies import Context, OraclePolicy  # noqa: E402
from placement_research.report import write_report  # noqa: E402
from placement_research.simulator import SimConfig, describe, simulate, write_csv  # noqa: E402
from placement_svc.model.costs import CostModel, Pricer  # noqa: E402
from placement_svc.model.features import History, Vocab  # noqa: E402
from placement_svc.model.learned import TrainConfig, train  # noqa: E402
from placement_svc.model.tuning import make_tune_replay  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
TRENDING = SHARED / "yt-trending-2017"
UMASS = SHARED / "umass-youtube-2007" / "youtube.parsed.012908.S1.dat"
TARGET_ORACLE, TARGET_HEURISTIC, TARGET_SPEED = 1.15, 0.90, 1_000_000


def brief(res: dict) -> dict:
    pol = {k: {kk: v[kk] for kk in ("total_cost", "cost_vs_oracle", "cdn_byte_share", "edge_storage_gb_days", "parts")}
           for k, v in res["policies"].items()}
    s = res["summary"]
    return {
        "policies": pol, "summary": s, "chosen_family": res["model"]["chosen_family"],
        "families": res["model"]["families"], "alpha": res["model"]["alpha"], "gamma": res["model"]["gamma"],
        "threshold_k": res["threshold"]["k"], "lru_capacity_gb": res["lru"]["capacity_gb"],
        "train_until": res["train_until"], "test_days": res["test_days"], "data": res["data"],
        "timings_s": res["timings_s"],
        "targets": {
            "model_le_1.15x_oracle": bool(s["model_vs_oracle"] <= TARGET_ORACLE),
            "model_ge_10pct_below_best_heuristic": bool(s["model_vs_best_heuristic"] <= TARGET_HEURISTIC),
        },
    }


def print_table(title: str, res: dict) -> None:
    print(f"\n== {title}: trained until {res['train_until']}, test {res['test_days'][0]}..{res['test_days'][1]}")
    print(f"{'policy':10s} {'total $':>12s} {'x oracle':>9s} {'CDN bytes':>9s}")
    for name, r in res["policies"].items():
        print(f"{name:10s} {r['total_cost']:12.2f} {r['cost_vs_oracle']:9.3f} {r['cdn_byte_share']:9.3f}")
    s, m = res["summary"], res["model"]
    fams = ", ".join(f"{k} {v['validation_cost']:.2f}" for k, v in m["families"].items())
    print(f"family chosen: {m['chosen_family']} (validation cost: {fams})")
    print(f"model / oracle = {s['model_vs_oracle']:.3f} (target <= {TARGET_ORACLE}); model / best heuristic "
          f"({s['best_heuristic']}) = {s['model_vs_best_heuristic']:.3f} (target <= {TARGET_HEURISTIC}); "
          f"model / oracle over videos known the night before = {s['model_vs_oracle_known_videos']:.3f}")


def simulator_bounds(ds, latent: dict, train_end: int, n_test: int) -> dict:
    """How close to the oracle any morning planner can get on the simulator.

    perfect_predictor: the exact shortest path over the days for the simulator's expected
    views (every latent known, only the day's noise draws unknown), priced on the real views.
    cold_start_floor: the oracle everywhere except each new video's upload day, decided by the
    best per-region threshold on the cold-start mean (channel quality, language, category; the
    thresholds tuned on the test days themselves). No planner that decides the upload day from
    what is known at upload can cost less."""
    days = list(range(train_end + 1, train_end + 1 + n_test))
    pricer = Pricer(CostModel(), ds.regions, ds.size_bytes)
    ctx = Context(ds, None, pricer)
    oracle_plan = OraclePolicy().replay(ctx, days)
    oracle = price_plan(ctx, oracle_plan)["total_cost"]
    ds_exp = dataclasses.replace(ds, views=latent["expected"])
    plan = OraclePolicy().replay(Context(ds_exp, None, pricer), days)
    perfect = price_plan(ctx, plan)["total_cost"]

    n_v, n_r = ds.views.shape[:2]
    new = (ds.upload_day >= days[0]) & (ds.upload_day <= days[-1])

    def upload_day_forced(at_edge: bool):
        """Oracle constraint: every new video spends its upload day at the edge, or at origin."""
        def allowed(_ctx, d):
            up = (ds.upload_day == d)[:, None]
            return (True, ~up) if at_edge else (~up, True)
        return allowed

    # Per pair, the cheapest plan over the test days: free, and with the upload day forced.
    free = oracle_plan.extra["pair_cost"]
    push = OraclePolicy(allowed=upload_day_forced(True)).replay(ctx, days).extra["pair_cost"]
    skip = OraclePolicy(allowed=upload_day_forced(False)).replay(ctx, days).extra["pair_cost"]
    day0 = np.clip(ds.upload_day, 0, ds.n_days - 1)
    cold0 = latent["cold_start_expected"][np.arange(n_v), :, day0].astype(np.float64)
    floor = free[~new].sum()
    for r in range(n_r):  # push the k new videos with the highest cold-start mean; best k
        order = np.argsort(-cold0[new, r])
        ce, co = push[new, r][order], skip[new, r][order]
        floor += (np.concatenate([[0.0], np.cumsum(ce)]) + co.sum() - np.concatenate([[0.0], np.cumsum(co)])).min()
    return {"oracle": round(oracle, 2), "perfect_predictor": round(perfect, 2),
            "perfect_predictor_vs_oracle": round(perfect / oracle, 4),
            "cold_start_floor": round(float(floor), 2), "cold_start_floor_vs_oracle": round(float(floor / oracle), 4),
            "new_videos_in_test_days": int(new.sum())}


def umass_once_share() -> dict | None:
    """Share of requested videos requested exactly once in the campus day trace."""
    if not UMASS.exists():
        return None
    counts: dict[str, int] = {}
    with open(UMASS, errors="replace") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 5 and parts[3] == "GETVIDEO":
                vid = parts[4].split("&")[0]
                counts[vid] = counts.get(vid, 0) + 1
    c = np.array(list(counts.values()))
    return {"requests": int(c.sum()), "videos": int(len(c)), "share_requested_once": round(float((c == 1).mean()), 4)}


def sim_once_share(ds) -> float:
    v = ds.views
    watched = v > 0
    return round(float((v == 1).sum() / max(watched.sum(), 1)), 4)


def scoring_speed(ds, train_end: int) -> dict:
    from threadpoolctl import threadpool_limits

    vocab = Vocab.fit(ds, train_end)
    hist = History(ds, vocab)
    ctx = Context(ds, hist, Pricer(CostModel(), ds.regions, ds.size_bytes))
    model = train(hist, CostModel(), train_end, TrainConfig(families=("mlp",)), make_tune_replay(ctx))
    days = list(range(train_end + 1, ds.n_days))
    with threadpool_limits(1):
        hist.batch(days[0])
        model.fast.predict(hist.batch(days[0]))  # warm up
        rows = 0
        t_feat = t_fwd = 0.0
        for _ in range(2):
            for d in days:
                t0 = time.perf_counter()
                b = hist.batch(d)
                t1 = time.perf_counter()
                model.fast.predict(b)
                t2 = time.perf_counter()
                rows += len(b)
                t_feat += t1 - t0
                t_fwd += t2 - t1
    return {"rows": rows, "rows_per_day": rows // (2 * len(days)), "threads": 1,
            "forward_only_per_s": round(rows / t_fwd), "features_plus_forward_per_s": round(rows / (t_feat + t_fwd)),
            "mlp_hidden": list(TrainConfig().hidden)}


def main() -> int:
    t_start = time.perf_counter()
    out: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                    "machine": platform.machine(), "processor": platform.processor()},
        "costs": CostModel().to_dict(),
        "targets": {"model_vs_oracle_max": TARGET_ORACLE, "model_vs_best_heuristic_max": TARGET_HEURISTIC,
                    "scoring_per_s_per_core_min": TARGET_SPEED},
    }
    # 1. Simulator, through the same CSV path the CLI uses.
    cfg = SimConfig()
    ds, latent = simulate(cfg, seed=0, with_expected=True)
    stats = describe(ds)
    umass = umass_once_share()
    stats["share_watched_pairs_viewed_once_per_day"] = sim_once_share(ds)
    with tempfile.TemporaryDirectory() as tmp:
        vpath, mpath = write_csv(ds, tmp)
        ds_csv = load_dataset(vpath, mpath)
    train_end = 41
    res = evaluate(ds_csv, CostModel(), train_end, cfg.n_days - 1 - train_end)
    print_table("simulator (seed 0)", res)
    plots = {"simulator": write_report(res, ROOT / "bench" / "results" / "placement-simulator")}
    out["simulator"] = {"config": {k: (v if not isinstance(v, (dict, dt.date)) else str(v))
                                   for k, v in vars(cfg).items() if k not in ("languages", "categories")},
                        "calibration_stats": stats, "umass_campus_day": umass, **brief(res)}
    print("simulator stats:", json.dumps(stats))
    bounds = simulator_bounds(ds, latent, train_end, cfg.n_days - 1 - train_end)
    out["simulator"]["bounds"] = bounds
    print("simulator bounds:", json.dumps(bounds))
    del latent
    if umass:
        print("UMass campus trace (one day):", json.dumps(umass))

    # 2. Real data: trending YouTube videos, US and GB.
    if (TRENDING / "views.csv").exists():
        dst = load_dataset(TRENDING / "views.csv", TRENDING / "videos.csv")
        te = dst.day_index(dt.date(2017, 9, 30))
        rt = evaluate(dst, CostModel(), te, 7)
        print_table("yt-trending-2017 (real)", rt)
        plots["yt_trending_2017"] = write_report(rt, ROOT / "bench" / "results" / "placement-yt-trending-2017")
        out["yt_trending_2017"] = brief(rt)
    else:
        out["yt_trending_2017"] = {"skipped": f"{TRENDING} not found"}

    # 3. Scoring speed on the simulated catalogue.
    sp = scoring_speed(ds, train_end)
    sp["target_met"] = bool(sp["features_plus_forward_per_s"] >= TARGET_SPEED)
    out["scoring"] = sp
    print(f"\n== scoring, 1 thread: forward {sp['forward_only_per_s']:,}/s; features + forward "
          f"{sp['features_plus_forward_per_s']:,}/s (target >= {TARGET_SPEED:,}/s)")
    out["plots"] = {k: {n: str(pathlib.Path(f).resolve().relative_to(ROOT)) for n, f in v.items()}
                    for k, v in plots.items()}
    out["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    dest = ROOT / "bench" / "results" / "placement.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nwrote {dest.relative_to(ROOT)} in {out['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
