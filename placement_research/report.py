"""Report writer for `longtail placement evaluate --report DIR`.

One job: turn an evaluation result dict into PNG plots (cost per day per policy, cost
relative to the oracle, calibration of predicted vs real views) and a short summary.md.
Uses matplotlib's non-interactive Agg backend.
"""
from __future__ import annotations

import pathlib

ORDER = ("none", "all", "threshold", "lru", "oracle", "model")


def write_report(res: dict, out_dir: str) -> dict:
    """Writes the three plots and summary.md into `out_dir`; returns {name: path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, plot in (("cost_per_day", _plot_cost_per_day), ("cost_vs_oracle", _plot_cost_vs_oracle),
                       ("calibration", _plot_calibration)):
        fig = plot(plt, res)
        fig.tight_layout()
        files[name] = str(out / f"{name}.png")
        fig.savefig(files[name], dpi=110)
        plt.close(fig)
    files["summary"] = str(out / "summary.md")
    (out / "summary.md").write_text("\n".join(_summary_lines(res)) + "\n", encoding="utf-8")
    return files


def _test_days(res: dict) -> list[int]:
    return list(range(1, len(res["policies"]["oracle"]["cost_per_day"]) + 1))


def _plot_cost_per_day(plt, res: dict):
    pol, days = res["policies"], _test_days(res)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in ORDER:
        ax.plot(days, pol[name]["cost_per_day"], marker="o", ms=3, label=name, lw=2.2 if name == "model" else 1.2)
    ax.set_yscale("log")
    ax.set_xlabel(f"test day (1 = {res['test_days'][0]})")
    ax.set_ylabel("cost per day (USD, log scale)")
    ax.set_title("Cost per day per policy")
    ax.legend(ncol=3, fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _plot_cost_vs_oracle(plt, res: dict):
    pol, days = res["policies"], _test_days(res)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    orc = pol["oracle"]["cost_per_day"]
    for name in ORDER:
        if name == "oracle":
            continue
        ratio = [c / o if o > 0 else float("nan") for c, o in zip(pol[name]["cost_per_day"], orc)]
        ax1.plot(days, ratio, marker="o", ms=3, label=name, lw=2.2 if name == "model" else 1.2)
    ax1.axhline(1.0, color="k", lw=0.8)
    ax1.set_yscale("log")
    ax1.set_xlabel("test day")
    ax1.set_ylabel("cost / oracle cost (log)")
    ax1.set_title("Daily cost relative to the oracle")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    names = list(ORDER)
    ax2.barh(names, [pol[x]["cost_vs_oracle"] or 0 for x in names], color=["#999" if x != "model" else "#c33" for x in names])
    ax2.axvline(1.0, color="k", lw=0.8)
    ax2.set_xscale("log")
    ax2.set_title("Total / oracle")
    return fig


def _plot_calibration(plt, res: dict):
    cal = res.get("calibration") or []
    fig, ax = plt.subplots(figsize=(5, 5))
    if cal:
        x = [max(c["predicted_mean"], 1e-4) for c in cal]
        y = [max(c["real_mean"], 1e-4) for c in cal]
        sizes = [10 + 40 * (c["rows"] / max(cc["rows"] for cc in cal)) ** 0.5 for c in cal]
        ax.scatter(x, y, s=sizes)
        lo, hi = min(x + y), max(x + y)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="perfect")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend()
    ax.set_xlabel("predicted expected views (bin mean)")
    ax.set_ylabel("real views (bin mean)")
    ax.set_title(f"Calibration on test days ({res['model']['chosen_family']})")
    ax.grid(alpha=0.3)
    return fig


def _summary_lines(res: dict) -> list[str]:
    pol, s, m = res["policies"], res["summary"], res["model"]
    lines = [
        "# Placement evaluation",
        "",
        f"Trained up to {res['train_until']}; replayed {res['test_days'][0]} .. {res['test_days'][1]}.",
        f"Data: {res['data']['videos']} videos, regions {', '.join(res['data']['regions'])}.",
        "",
        "| policy | total cost (USD) | vs oracle | CDN byte share | edge storage GB-days |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ORDER:
        r = pol[name]
        lines.append(f"| {name} | {r['total_cost']:.2f} | {r['cost_vs_oracle']} | {r['cdn_byte_share']:.3f} | "
                     f"{r['edge_storage_gb_days']:.1f} |")
    fams = ", ".join(f"{k}: validation cost {v['validation_cost']}" for k, v in m["families"].items())
    lines += [
        "",
        f"- Model family chosen on the validation days: **{m['chosen_family']}** ({fams}); "
        f"morning fill factor alpha={m['alpha']}, gamma={m['gamma']}; first-request admission "
        f"alpha'={m['admit_alpha']} (None: never fills), gamma'={m['admit_gamma']}.",
        f"- Best tuned heuristic: **{s['best_heuristic']}**; model / heuristic = {s['model_vs_best_heuristic']}; "
        f"model / oracle = {s['model_vs_oracle']}.",
        f"- Oracle limited to videos known the night before (the bound for a morning-only plan): "
        f"{s['oracle_known_videos_cost']}; model / that bound = {s['model_vs_oracle_known_videos']}.",
        f"- Share of the none-to-oracle gap the model closes: {s['gap_closed_none_to_oracle']}.",
        f"- Threshold k per region: {res['threshold']['k']}; its first-request fill needs "
        f"{res['threshold']['admit_min_views_7d']} views in 7 days; LRU capacity per region (GB): {res['lru']['capacity_gb']}.",
        "",
        "| price scenario | model / oracle | model / lru | model / best heuristic |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {sc['summary']['model_vs_oracle']} | {sc['summary']['model_vs_lru']} | "
          f"{sc['summary']['model_vs_best_heuristic']} ({sc['summary']['best_heuristic']}) |"
          for name, sc in res.get("scenarios", {}).items()),
        "",
        "Plots: cost_per_day.png, cost_vs_oracle.png, calibration.png.",
    ]
    return lines
