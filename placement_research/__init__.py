"""placement_research: offline evaluation of CDN placement; not shipped in the service image.

Its one job: measure how well placement_svc's learned model places videos, against
baselines and the exact optimum, on real or simulated view histories. It imports the
model from placement_svc; placement_svc never imports it.
  dataset_csv.py   loading/checking the evaluation CSVs into a `Dataset`
  simulator.py     seeded long-tail workload simulator writing the same CSV formats
  policies.py      none / all / threshold / lru / oracle / model behind one interface
  harness.py       train-then-replay evaluation, one JSON-ready result
  report.py        PNG plots and summary.md for `--report`
  evaluate_cli.py  `longtail placement evaluate` (main(argv) -> exit code)
See docs/placement.md.
"""
