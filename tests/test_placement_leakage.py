"""No leakage: decisions for day d depend only on data before d (and training on <= train end)."""
import numpy as np

from placement_research.harness import evaluate
from placement_svc.model.costs import CostModel
from tests.test_placement_helpers import FAST_TRAIN, TEST_DAYS, TRAIN_END, small_sim

MORNING = ("none", "all", "threshold", "model")  # their morning plans (threshold and model also fill on the day)


def fitted(res):
    """The trained model's choices, without timings."""
    return {f: {k: v for k, v in d.items() if not k.endswith("seconds")} for f, d in res["model"]["families"].items()}


def test_test_day_views_do_not_change_earlier_decisions():
    ds = small_sim(1)
    base = evaluate(ds, CostModel(), TRAIN_END, TEST_DAYS, FAST_TRAIN, keep_plans=True)
    cut = TRAIN_END + 4  # mutate this day and every later day
    rng = np.random.default_rng(7)
    views = ds.views.copy()
    later = views[:, :, cut:]
    # New values on existing rows, and views for pairs that had none (same video set).
    views[:, :, cut:] = np.where(later > 0, rng.integers(1, 5000, later.shape), 0)
    views[:, :, cut:] += (rng.random(later.shape) < 0.02) * rng.integers(1, 3000, later.shape)
    views[:, :, cut:] *= (ds.first_seen < cut)[:, None, None]  # keep which videos exist before `cut`
    mutated = evaluate(ds.with_views(views), CostModel(), TRAIN_END, TEST_DAYS, FAST_TRAIN, keep_plans=True)
    assert base["threshold"] == mutated["threshold"] and base["lru"] == mutated["lru"]
    assert fitted(base) == fitted(mutated)
    t_cut = cut - (TRAIN_END + 1)
    for name in ("none", "all", "threshold", "lru", "model"):
        a, b = base["_plans"][name], mutated["_plans"][name]
        assert np.array_equal(a.edge[:t_cut], b.edge[:t_cut]), name
    for name in MORNING:  # morning decisions for day `cut` itself use only days < cut
        assert np.array_equal(base["_plans"][name].morning[t_cut], mutated["_plans"][name].morning[t_cut]), name
    # On day `cut` the on-day fills use the morning's features and the fact of a request only:
    # a pair requested in both worlds (and left at origin by the same morning plan) is filled
    # in both or in neither, whatever its count.
    both = (ds.views[:, :, cut] > 0) & (views[:, :, cut] > 0)
    for name in ("threshold", "model"):
        a, b = base["_plans"][name], mutated["_plans"][name]
        miss = both & ~a.morning[t_cut]
        assert np.array_equal(a.edge[t_cut] & miss, b.edge[t_cut] & miss), name
    # the mutation did change what happened later (the test would be vacuous otherwise)
    assert not np.array_equal(base["_plans"]["model"].edge[-1], mutated["_plans"]["model"].edge[-1]) or \
        base["policies"]["model"]["total_cost"] != mutated["policies"]["model"]["total_cost"]


def test_training_ignores_days_after_train_end():
    ds = small_sim(1)
    views = ds.views.copy()
    views[:, :, TRAIN_END + 1:] = 0
    a = evaluate(ds, CostModel(), TRAIN_END, TEST_DAYS, FAST_TRAIN, keep_plans=True)
    b = evaluate(ds.with_views(views), CostModel(), TRAIN_END, TEST_DAYS, FAST_TRAIN, keep_plans=True)
    assert fitted(a) == fitted(b)
    # the first test morning's plan (its on-day fills follow that day's requests, zeroed here)
    assert np.array_equal(a["_plans"]["model"].morning[0], b["_plans"]["model"].morning[0])
