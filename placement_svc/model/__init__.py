"""placement_svc.model: the daily CDN placement model the service runs.

Which (video, region) pairs sit on the CDN edge each day (pushed in the morning or filled
at a first request), and what that costs.
  costs.py      cost model (prices per region, costs files) and day pricing
  dataset.py    the dense (video x region x day) view array the model reads
  features.py   leakage-free per-day feature rows (views before the day + metadata)
  learned.py    MLP / GBM view predictors (morning, and given a first request), calibration,
                expected-cost decisions at both moments (morning plan, first-request
                admission), fast scoring, cold start (`decide_new_video`)
  tuning.py     the validation-day cost of both moments, which training minimises when it
                tunes the decision knobs
The simulator, the evaluation harness, the baseline policies and the report live in
`placement_research`, which the service image does not ship. See docs/placement.md.
"""
from placement_svc.model.learned import decide_new_video, set_default_model  # noqa: F401
