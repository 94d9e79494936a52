"""Cost model: hand-computed cases, costs files, decision thresholds."""
import json

import numpy as np
import pytest

from placement_svc.model.costs import CostModel, CostsError, Pricer, RegionPrices, load_costs
from placement_svc.model.learned import decision_thresholds

P = RegionPrices(cdn_delivery_per_gb=0.01, cdn_fill_per_gb=0.09, cdn_storage_per_gb_day=0.001,
                 origin_delivery_per_gb=0.09, qoe_penalty_per_gb=0.02)
COSTS = CostModel(regions={"X": P}, default=P, view_bytes_fraction=0.5, default_video_size_bytes=1e9)


def pricer(sizes=(1e9,)):
    return Pricer(COSTS, ["X"], np.array(sizes, dtype=float))


def test_edge_day_with_fill_by_hand():
    # 10 views of a 1 GB video, half of it per view -> 5 GB delivered.
    parts = pricer().day_parts(np.array([[10.0]]), edge=np.array([[True]]), fill=np.array([[True]]))
    assert parts["cdn_delivery"] == pytest.approx(5 * 0.01)
    assert parts["cdn_fill"] == pytest.approx(1 * 0.09)
    assert parts["cdn_storage"] == pytest.approx(1 * 0.001)
    assert parts["origin_delivery"] == 0 and parts["qoe_penalty"] == 0
    assert sum(parts[k] for k in ("cdn_delivery", "cdn_fill", "cdn_storage")) == pytest.approx(0.141)


def test_edge_day_without_fill_and_origin_day_by_hand():
    p = pricer((1e9, 2e9))
    views = np.array([[10.0], [3.0]])
    parts = p.day_parts(views, edge=np.array([[True], [False]]), fill=np.array([[False], [False]]))
    # video 0 kept at the edge: 5 GB * 0.01 + 1 GB-day storage; video 1 from origin: 3 GB.
    assert parts["cdn_delivery"] == pytest.approx(0.05)
    assert parts["cdn_storage"] == pytest.approx(0.001)
    assert parts["cdn_fill"] == 0
    assert parts["origin_delivery"] == pytest.approx(3 * 0.09)
    assert parts["qoe_penalty"] == pytest.approx(3 * 0.02)


def test_unwatched_pushed_video_pays_storage_and_fill_only():
    parts = pricer().day_parts(np.array([[0.0]]), edge=np.array([[True]]), fill=np.array([[True]]))
    assert parts["cdn_delivery"] == 0 and parts["origin_delivery"] == 0
    assert parts["cdn_fill"] + parts["cdn_storage"] == pytest.approx(0.091)


def test_decision_thresholds_by_hand():
    # saving per view per stored GB = 0.5 * (0.09 + 0.02 - 0.01) = 0.05
    keep, fill = decision_thresholds(COSTS, ["X"], alpha=1.0, gamma=1.0, horizon=3)
    assert keep[0] == pytest.approx(0.001 / 0.05)
    assert fill[0] == pytest.approx((0.09 + 3 * 0.001) / 0.05)


def test_edge_never_pays_when_cdn_dearer():
    dear = RegionPrices(0.2, 0.09, 0.001, 0.09, 0.0)
    keep, fill = decision_thresholds(CostModel(regions={"Y": dear}), ["Y"], 1.0, 1.0)
    assert np.isinf(keep[0]) and np.isinf(fill[0])


def test_costs_file_json_and_toml(tmp_path):
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"view_bytes_fraction": 0.1, "regions": {"US": {"cdn_delivery_per_gb": 0.02}},
                             "default": {"qoe_penalty_per_gb": 0.05}}))
    c = load_costs(j)
    assert c.view_bytes_fraction == 0.1
    assert c.prices("US").cdn_delivery_per_gb == 0.02
    assert c.prices("US").origin_delivery_per_gb == CostModel().prices("US").origin_delivery_per_gb
    assert c.prices("ZZ").qoe_penalty_per_gb == 0.05
    t = tmp_path / "c.toml"
    t.write_text('default_video_size_bytes = 5e8\n[regions.JP]\ncdn_fill_per_gb = 0.0\n')
    c2 = load_costs(t)
    assert c2.default_video_size_bytes == 5e8 and c2.prices("JP").cdn_fill_per_gb == 0.0


@pytest.mark.parametrize("doc", [
    {"regions": {"US": {"cdn_delivery_per_gb": -1}}},
    {"regions": {"US": {"cdn_price": 1}}},
    {"prices": {}},
    {"view_bytes_fraction": 0},
])
def test_bad_costs_files_are_rejected(tmp_path, doc):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(CostsError):
        load_costs(f)


COSTS_DIR = __import__("pathlib").Path(__file__).resolve().parents[1] / "deploy" / "costs"


def test_shipped_price_scenarios():
    """deploy/costs/default.toml is the built-in prices; own-origin.toml prices the origin at
    flat-rate transit ($1.20 per Mbps-month at 164 GB per billed Mbps), the CDN per GB."""
    default, own = load_costs(COSTS_DIR / "default.toml"), load_costs(COSTS_DIR / "own-origin.toml")
    assert _close(default.to_dict(), CostModel().to_dict())
    us = own.prices("US")
    assert us.origin_delivery_per_gb == pytest.approx(1.20 / (328.7 * 0.5), rel=0.01)
    assert us.cdn_fill_per_gb == us.origin_delivery_per_gb
    for r in ("US", "GB", "DE", "BR", "JP", "IN", "ZZ"):
        p = own.prices(r)
        assert p.cdn_delivery_per_gb == 0.005
        assert p.qoe_penalty_per_gb == CostModel().prices(r).qoe_penalty_per_gb
    # The edge pays off everywhere in both scenarios, so neither is trivially origin-only.
    for costs in (default, own):
        keep, fill = decision_thresholds(costs, ["US", "GB", "DE", "BR", "JP", "IN"], 1.0, 1.0)
        assert np.isfinite(keep).all() and np.isfinite(fill).all()


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == pytest.approx(b, rel=1e-9)
