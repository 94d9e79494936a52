"""Learned model pieces: fast scorer == sklearn, cold start, simulator determinism, loader defaults."""
import numpy as np

from placement_research.dataset_csv import load_dataset
from placement_research.policies import Context
from placement_research.simulator import describe, simulate, write_csv
from placement_svc.model.costs import CostModel, Pricer
from placement_svc.model.features import History, Vocab, onehot_dense
from placement_svc.model.learned import decide_new_video, train
from placement_svc.model.tuning import make_tune_replay
from tests.test_placement_helpers import FAST_TRAIN, SMALL, TRAIN_END, small_sim


def trained(seed=1, families=("mlp",)):
    ds = small_sim(seed)
    hist = History(ds, Vocab.fit(ds, TRAIN_END))
    ctx = Context(ds, hist, Pricer(CostModel(), ds.regions, ds.size_bytes))
    cfg = FAST_TRAIN.__class__(**{**FAST_TRAIN.__dict__, "families": families})
    return ds, hist, train(hist, CostModel(), TRAIN_END, cfg, make_tune_replay(ctx))


def test_fast_mlp_matches_sklearn():
    ds, hist, m = trained()
    b = hist.batch(TRAIN_END + 1)
    mp = m.morning
    ref = mp.mlp.predict(onehot_dense(b, m.vocab, mp.mean, mp.std))
    got = mp.fast.predict(b)
    assert got.shape == ref.shape
    # float32 with standardisation folded into the weights: agreement to ~1e-3 in log1p space
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-2)


def test_cold_start_matches_replay_path_and_defaults_to_origin():
    ds, hist, m = trained()
    d = TRAIN_END + 1
    new = np.nonzero(ds.upload_day == d)[0]
    assert len(new) > 0
    b = hist.batch(d, vids=new, ch=m.channel_table)
    push = m.decide_rows(b, m.expected_views(b), np.zeros(len(b), bool)).reshape(len(new), -1)
    for i, v in enumerate(new[:20]):
        got = decide_new_video({"language": ds.language[v], "category": ds.category[v],
                                "channel_id": ds.channel_ids[ds.channel[v]],
                                "upload_date": ds.dates[d].isoformat()}, model=m)
        assert set(got) == set(ds.regions)
        assert [got[r] == "cdn" for r in ds.regions] == list(push[i])
    assert decide_new_video({"language": "en"}, model=None, regions=["US", "JP"]) == {"US": "origin", "JP": "origin"}


def test_admission_rule_by_hand():
    """A first request fills iff the views expected given the request repay the fill: a
    one-hit video does not, a hit does; inf knobs (a morning-only plan) never fill."""
    ds, hist, m = trained()
    b = hist.batch(TRAIN_END + 1).take(np.arange(len(ds.regions)))  # one video, every region
    m.admit_alpha, m.admit_gamma = 1.0, 1.0
    one_hit = np.column_stack([np.ones(len(b)), np.ones(len(b))])
    assert not m.admit_rows(b, one_hit).any()  # 1 view: ~$0.005 saved per stored GB, fill $0.09
    assert m.admit_rows(b, 100 * one_hit).all()
    m.admit_alpha = np.inf
    assert not m.admits() and not m.admit_rows(b, 100 * one_hit).any()


def test_first_request_rows_and_new_video_admission():
    """The on-day rows are the morning rows of requested pairs not on the edge, plus rows of
    videos first seen today built from days before; cold-start admission matches them."""
    from placement_svc.model.features import first_request_batch

    ds, hist, m = trained()
    d = TRAIN_END + 1
    b = hist.batch(d)
    requested = ds.views[:, :, d] > 0
    on_edge = np.zeros_like(requested)
    on_edge[b.vid[0], b.reg[0]] = True
    f = first_request_batch(hist, b, requested, on_edge)
    assert requested[f.vid, f.reg].all() and not on_edge[f.vid, f.reg].any()
    assert len(f) == int((requested & ~on_edge & (hist.known_from <= d)[:, None]).sum())
    m.admit_alpha, m.admit_gamma = 1.0, 1.0
    new = np.nonzero(ds.upload_day == d)[0][:10]
    nb = hist.batch(d, vids=new, ch=m.channel_table)
    adm = m.admit_rows(nb, m.expected_views_if_requested(nb)).reshape(len(new), -1)
    for i, v in enumerate(new):
        got = m.admit_new_video({"language": ds.language[v], "category": ds.category[v],
                                 "channel_id": ds.channel_ids[ds.channel[v]], "upload_date": ds.dates[d].isoformat()})
        assert [got[r] for r in ds.regions] == list(adm[i])


def test_simulator_is_deterministic_and_long_tailed():
    a, b, c = simulate(SMALL, seed=3), simulate(SMALL, seed=3), simulate(SMALL, seed=4)
    assert np.array_equal(a.views, b.views) and not np.array_equal(a.views, c.views)
    s = describe(a)
    assert s["share_videos_unwatched_per_day_mean"] > 0.8
    assert s["top10pct_videos_share_of_views"] > 0.7


def test_simulator_expected_views_are_the_means_of_its_draws():
    """The bench's perfect-predictor and cold-start bounds rest on these two means."""
    ds, lat = simulate(SMALL, seed=3, with_expected=True)
    assert np.array_equal(ds.views, simulate(SMALL, seed=3).views)  # same world with or without
    exp, cold = lat["expected"].astype(np.float64), lat["cold_start_expected"].astype(np.float64)
    assert exp.shape == cold.shape == ds.views.shape
    assert abs(exp.sum() / ds.views.sum() - 1) < 0.05
    # Upload days: the cold-start mean knows only channel, language and category, so it is
    # right on average (a heavy-tailed sum: loose bounds) and far less sharp per video.
    day = ds.upload_day
    new = (day >= 0) & (day < ds.n_days)
    idx = np.nonzero(new)[0]
    real0 = ds.views[idx, :, day[idx]].astype(np.float64)
    cold0, exp0 = cold[idx, :, day[idx]], exp[idx, :, day[idx]]
    assert 0.5 < cold0.sum() / real0.sum() < 2.0
    err = lambda pred: np.abs(np.log1p(pred) - np.log1p(real0)).mean()  # noqa: E731
    assert err(exp0) < err(cold0)


def test_csv_round_trip_and_defaults(tmp_path):
    ds = small_sim(1)
    vpath, mpath = write_csv(ds, tmp_path)
    back = load_dataset(vpath, mpath)
    assert back.regions == ds.regions
    idx = [back.video_ids.index(v) for v in ds.video_ids]
    # Rows are only written for non-zero views; the loader's day range starts at the first row.
    off = (back.dates[0] - ds.dates[0]).days
    np.testing.assert_array_equal(back.views[idx], ds.views[:, :, off:off + back.n_days])
    # Empty metadata -> defaults; upload date imputed as the first day with views.
    (tmp_path / "v.csv").write_text("date,video_id,region,views\n2024-01-02,x,US,3\n2024-01-03,x,US,1\n")
    (tmp_path / "m.csv").write_text("video_id,upload_date,language,category,channel_id,size_bytes\nx,,,,,\n")
    one = load_dataset(tmp_path / "v.csv", tmp_path / "m.csv")
    assert one.size_bytes[0] == CostModel().default_video_size_bytes
    assert one.language[0] == "und" and one.category[0] == "unknown" and one.channel[0] == -1
    assert one.upload_day[0] == 0 and not one.upload_known[0] and one.known_from[0] == 1
