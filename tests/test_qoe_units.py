"""The QoE counters from beacons, the penalty they imply, and the cost model taking it."""
from __future__ import annotations

import datetime as dt

import pytest

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import video_pb2
from longtail_common import qoe
from longtail_common.adapters.sqlite_viewcounts import SqliteViewCountStore
from longtail_common.config import Config
from longtail_common.ports import DailyQoE, Message
from placement_svc.model.costs import CostModel
from placement_svc.qoe_report import measured_costs
from placement_svc.views import ViewCounter


def _event(kind, served_from, startup_ms=0, rebuffers=0, rebuffer_ms=0, region="GB", ladder=2):
    e = events_pb2.ViewEvent(video_id="v1", region=region, kind=kind, startup_ms=startup_ms,
                             rebuffer_count=rebuffers, rebuffer_ms=rebuffer_ms, ladder_position=ladder,
                             served_from=served_from)
    e.event_time.FromDatetime(dt.datetime(2031, 8, 1, 12, tzinfo=dt.timezone.utc))
    return e


def test_beacons_become_qoe_counters_once(tmp_path):
    store = SqliteViewCountStore(tmp_path / "vc.sqlite3")
    counter = ViewCounter(store)
    events = [_event("start", video_pb2.SERVED_FROM_ORIGIN, startup_ms=1200),
              _event("progress", video_pb2.SERVED_FROM_ORIGIN, startup_ms=999, rebuffers=2, rebuffer_ms=800),
              _event("start", video_pb2.SERVED_FROM_CDN, startup_ms=300),
              _event("start", video_pb2.SERVED_FROM_UNSPECIFIED, startup_ms=300),  # an old player: no QoE
              _event("start", video_pb2.SERVED_FROM_CDN, startup_ms=qoe.MAX_STARTUP_MS + 1)]  # not a start-up
    for offset, e in enumerate(events):
        counter(Message(topic="views", partition=0, offset=offset, key=None, value=e.SerializeToString()))
    counter(Message(topic="views", partition=0, offset=0, key=None, value=events[0].SerializeToString()))
    rows = store.qoe_counts("2031-08-01", "2031-08-01")
    assert rows == [
        DailyQoE("2031-08-01", "GB", "cdn", "ladder", 2, 1, 0),
        DailyQoE("2031-08-01", "GB", "cdn", "startup", qoe.startup_bin(300), 1, 300),
        DailyQoE("2031-08-01", "GB", "origin", "ladder", 2, 1, 0),
        DailyQoE("2031-08-01", "GB", "origin", "rebuffer", 0, 2, 800),
        DailyQoE("2031-08-01", "GB", "origin", "startup", qoe.startup_bin(1200), 1, 1200)]
    assert sum(r.views for r in store.daily_views()) == 4
    store.close()


def _sides(origin_ms: list[int], edge_ms: list[int], region="GB"):
    rows = [DailyQoE("2031-08-01", region, "origin", "startup", qoe.startup_bin(ms), 1, ms) for ms in origin_ms]
    rows += [DailyQoE("2031-08-01", region, "cdn", "startup", qoe.startup_bin(ms), 1, ms) for ms in edge_ms]
    return qoe.summarise(rows)


def test_penalty_is_the_startup_gap_times_abandonment_priced_per_gb():
    sides = _sides([1500, 2500], [400, 600])
    assert sides[("GB", "origin")].mean_startup_s == pytest.approx(2.0)
    assert sides[("GB", "origin")].startup_quantile_s(0.5) == 1.5  # the bin bound holding the median
    pen = qoe.penalties(sides, ["GB", "US"], value_per_view_usd=0.002, gb_per_view=0.05, min_playbacks=2)
    assert pen["GB"].startup_gap_s == pytest.approx(1.5)
    assert pen["GB"].per_gb == pytest.approx(1.5 * 0.058 * 0.002 / 0.05)
    assert pen["US"].per_gb is None
    # An edge slower than origin costs nothing extra from origin; too few playbacks: no estimate.
    assert qoe.penalties(_sides([300, 300], [900, 900]), ["GB"], 0.002, 0.05, 2)["GB"].per_gb == 0.0
    assert qoe.penalties(_sides([3000], [300, 300]), ["GB"], 0.002, 0.05, 2)["GB"].per_gb is None


def test_cost_model_takes_the_measured_penalty_only_where_there_are_enough_playbacks(tmp_path):
    store = SqliteViewCountStore(tmp_path / "vc.sqlite3")
    rows = [DailyQoE("2031-08-01", "GB", "origin", "startup", 9, 300, 300 * 2500),
            DailyQoE("2031-08-01", "GB", "cdn", "startup", 3, 300, 300 * 500),
            DailyQoE("2031-08-01", "US", "origin", "startup", 9, 300, 300 * 2500),
            DailyQoE("2031-08-01", "US", "cdn", "startup", 3, 10, 10 * 500)]
    store.apply_views("views/0", 0, [], rows)
    cfg = Config()
    costs = CostModel()
    new, source, pen = measured_costs(cfg, costs, store, dt.date(2031, 8, 2), ["GB", "US"])
    store.close()
    assert source == {"GB": "measured", "US": "configured"}
    gb_per_view = costs.view_bytes_fraction * costs.default_video_size_bytes / 1e9
    assert new.prices("GB").qoe_penalty_per_gb == pytest.approx(2.0 * 0.058 * cfg.placement.qoe_value_per_view_usd
                                                                / gb_per_view)
    assert new.prices("US").qoe_penalty_per_gb == costs.prices("US").qoe_penalty_per_gb
    assert new.prices("GB").cdn_delivery_per_gb == costs.prices("GB").cdn_delivery_per_gb
