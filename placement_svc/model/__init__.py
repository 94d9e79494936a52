"""placement_svc.model: the daily CDN placement model and its evaluation.

Which (video, region) pairs to push to the CDN edge each day, and what that costs.
  costs.py      cost model (prices per region, costs files) and day pricing
  dataset.py    loading/checking the evaluation CSVs into a dense view array
  features.py   leakage-free per-day feature rows (views before the day + metadata)
  learned.py    MLP / GBM view predictors, calibration, expected-cost decisions, fast
                scoring, cold start (`decide_new_video`)
  policies.py   none / all / threshold / lru / oracle / model behind one interface
  harness.py    train-then-replay evaluation, one JSON-ready result
  simulator.py  seeded long-tail workload simulator writing the same CSV formats
  report.py     PNG plots and summary.md for `--report`
See docs/placement.md.
"""
from placement_svc.model.learned import decide_new_video, set_default_model  # noqa: F401
