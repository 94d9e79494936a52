"""`longtail placement evaluate`: replay placement policies on a view history and price them.

  longtail placement evaluate --views VIEWS --videos VIDEOS --train-until DATE --test-days N
                              [--costs FILE] [--scenario NAME=FILE ...] [--report DIR] [--json]

Trains/tunes every policy on the days up to and including --train-until, replays the next
N days (each morning deciding from what was known the night before, each first request of
the day from that and the request) and prints one JSON object ({"policies": {"none"|"all"|
"threshold"|"lru"|"oracle"|"model": {...}}, ..., "scenarios": {NAME: {...}}}) with --json,
else a short table. `policies` is priced with --costs (default: the built-in prices);
`scenarios` repeats the evaluation per price scenario: by default "default" and
"own_origin" (deploy/costs/*.toml), or the --scenario flags. Bad input -> exit code 2 and
one line on stderr.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

COSTS_DIR = pathlib.Path(__file__).resolve().parents[1] / "deploy" / "costs"
DEFAULT_SCENARIOS = {"default": None, "own_origin": COSTS_DIR / "own-origin.toml"}  # None: built-in prices


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2 (argparse's default code), no usage dump
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="longtail placement evaluate",
                description="Replay CDN placement policies on a view history and compare their cost.")
    p.add_argument("--views", required=True, help="CSV date,video_id,region,views")
    p.add_argument("--videos", required=True, help="CSV video_id,upload_date,language,category,channel_id,size_bytes")
    p.add_argument("--train-until", required=True, metavar="DATE", help="last training day (YYYY-MM-DD)")
    p.add_argument("--test-days", required=True, type=int, metavar="N", help="days replayed after --train-until")
    p.add_argument("--costs", help="prices per region, JSON or TOML (see docs/placement.md)")
    p.add_argument("--scenario", action="append", default=[], metavar="NAME=FILE",
                   help="also evaluate under these prices, reported under scenarios.NAME (repeatable; default: "
                        "default and own_origin from deploy/costs/)")
    p.add_argument("--report", metavar="DIR", help="write PNG plots and summary.md here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--seed", type=int, default=0, help="seed for training (default 0)")
    p.add_argument("--max-rows", type=int, help="training rows cap (default: TrainConfig.max_rows)")
    return p


def _table(res: dict) -> str:
    lines = [f"{'policy':10s} {'total_cost':>12s} {'vs_oracle':>9s} {'cdn_bytes':>9s}"]
    for name, r in res["policies"].items():
        lines.append(f"{name:10s} {r['total_cost']:12.2f} {r['cost_vs_oracle'] or 0:9.3f} {r['cdn_byte_share']:9.3f}")
    s = res["summary"]
    lines.append(f"model family: {res['model']['chosen_family']}; best heuristic: {s['best_heuristic']}; "
                 f"model/heuristic {s['model_vs_best_heuristic']}; model/oracle {s['model_vs_oracle']}")
    for name, sc in res.get("scenarios", {}).items():
        ss = sc["summary"]
        lines.append(f"scenario {name}: model/oracle {ss['model_vs_oracle']}; model/lru {ss['model_vs_lru']}; "
                     f"model/best heuristic ({ss['best_heuristic']}) {ss['model_vs_best_heuristic']}")
    return "\n".join(lines)


def _scenarios(args, load_costs, CostModel) -> tuple[str, dict]:
    """(name of the --costs prices, {name: prices}) for the evaluation's `scenarios`."""
    files = dict(DEFAULT_SCENARIOS)
    if args.scenario:
        files = {}
        for item in args.scenario:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise _UsageError(f"--scenario wants NAME=FILE, got {item!r}")
            files[name] = pathlib.Path(path)
    primary = "default"
    if args.costs:
        given = pathlib.Path(args.costs).resolve()
        primary = next((n for n, f in files.items() if f is not None and f.resolve() == given), given.stem)
    return primary, {n: (load_costs(f) if f is not None else CostModel()) for n, f in files.items()}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        print(f"longtail placement evaluate: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)

    from placement_research.dataset_csv import DataError, load_dataset, parse_date
    from placement_research.harness import evaluate
    from placement_svc.model.costs import CostModel, CostsError, load_costs
    from placement_svc.model.learned import TrainConfig

    def fail(msg: str) -> int:
        print(f"longtail placement evaluate: {msg}", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    try:
        costs = load_costs(args.costs) if args.costs else CostModel()
        primary, scenarios = _scenarios(args, load_costs, CostModel)
        train_until = parse_date(args.train_until, "--train-until")
        ds = load_dataset(args.views, args.videos, default_size_bytes=costs.default_video_size_bytes)
    except (DataError, CostsError, _UsageError) as exc:
        return fail(str(exc))
    if args.test_days < 1:
        return fail("--test-days must be at least 1")
    train_end = ds.day_index(train_until)
    if train_end < 3:
        return fail(f"--train-until {train_until} leaves fewer than 4 days of data (views start {ds.dates[0]})")
    if train_end + args.test_days > ds.n_days - 1:
        return fail(f"views end on {ds.dates[-1]}: {args.test_days} test day(s) after {train_until} do not fit")
    load_s = time.perf_counter() - t0
    try:
        max_rows = TrainConfig.max_rows if args.max_rows is None else args.max_rows
        res = evaluate(ds, costs, train_end, args.test_days, TrainConfig(seed=args.seed, max_rows=max_rows),
                       scenarios=scenarios, primary=primary)
    except ValueError as exc:
        return fail(str(exc))
    res["timings_s"]["load_s"] = round(load_s, 3)
    if args.report:
        from placement_research.report import write_report

        t1 = time.perf_counter()
        try:
            res["report"] = write_report(res, args.report)
        except OSError as exc:
            return fail(f"cannot write report to {args.report}: {exc.strerror or exc}")
        res["timings_s"]["report_s"] = round(time.perf_counter() - t1, 3)
    res["timings_s"]["total_s"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(res, sort_keys=False) if args.json else _table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
