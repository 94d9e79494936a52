"""View counting and the daily job's decision core, without running services."""
import dataclasses
import datetime as dt
from argparse import Namespace

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from longtail.events.v1 import events_pb2
from longtail.placement.v1 import placement_service_pb2 as ppb
from longtail_common.config import Config
from longtail.metadata.v1 import video_pb2
from longtail_common.adapters.fs_objects import FilesystemObjectStore
from longtail_common.adapters.sqlite_viewcounts import SqliteViewCountStore
from longtail_common.consumer import PermanentError
from longtail_common.ports import (
    MEDIA_BUCKET, CatalogEntry, DailyViews, Message, catalog_columns_of, view_columns_of,
)
from placement_svc import daily, daily_shard, edge
from placement_svc.model.costs import CostModel
from placement_svc.views import ViewCounter
from placement_svc.server import PlacementServicer, ResultHandler

REGIONS = ["US", "GB", "JP"]


def view_msg(offset, kind="start", video="vidA", region="GB", nbytes=0, when=dt.datetime(2024, 5, 1, 23, 59),
             partition=0):
    ev = events_pb2.ViewEvent(video_id=video, region=region, kind=kind, bytes_watched=nbytes)
    ev.event_time.FromDatetime(when)
    return Message(topic="views", partition=partition, offset=offset, key=video.encode(), value=ev.SerializeToString())


@pytest.fixture()
def store(tmp_path):
    s = SqliteViewCountStore(tmp_path / "vc.sqlite3")
    yield s
    s.close()


def test_start_counts_a_view_other_kinds_add_bytes_and_redelivery_is_ignored(store):
    counter = ViewCounter(store)
    counter(view_msg(0, "start", nbytes=100))
    counter(view_msg(1, "progress", nbytes=1000))
    counter(view_msg(2, "complete", nbytes=10))
    counter(view_msg(1, "progress", nbytes=1000))  # redelivered: skipped
    counter(view_msg(0, "start", region="JP", partition=1))  # other partition, own offsets
    counter(view_msg(3, "start", when=dt.datetime(2024, 5, 2, 0, 0, 1)))  # next UTC day
    rows = {(r.region, r.day): (r.views, r.bytes) for r in store.daily_views()}
    assert rows == {("GB", "2024-05-01"): (1, 1110), ("JP", "2024-05-01"): (1, 0), ("GB", "2024-05-02"): (1, 0)}
    assert [r.day for r in store.daily_views("2024-05-02", None)] == ["2024-05-02"]
    assert {r.day for r in store.daily_views(None, "2024-05-01")} == {"2024-05-01"}
    # The watch page's count: every region and day, this video only.
    counter(view_msg(4, "start", video="vidB"))
    assert store.total_views(["vidA", "vidB", "nosuch"]) == {"vidA": 3, "vidB": 1, "nosuch": 0}


def test_total_views_per_video_over_regions_and_days(store, tmp_path):
    counter = ViewCounter(store)
    for offset, (video, region, day) in enumerate([("vidA", "GB", 1), ("vidA", "JP", 1), ("vidA", "GB", 2),
                                                    ("vidB", "US", 1)]):
        counter(view_msg(offset, video=video, region=region, when=dt.datetime(2024, 5, day, 12)))
    counter(view_msg(9, "progress", video="vidB", nbytes=5))  # bytes, not a view
    assert store.total_views(["vidA", "vidB", "vidC"]) == {"vidA": 3, "vidB": 1, "vidC": 0}
    assert store.total_views([]) == {}
    many = [f"v{i}" for i in range(1200)]  # more ids than one SQLite statement takes
    assert store.total_views([*many, "vidA"])["vidA"] == 3

    # PlacementService answers them to the gateway; malformed or too many ids are refused.
    servicer = PlacementServicer(Config(data_dir=str(tmp_path)), metadata=None, view_counts=store)

    class Aborted(Exception):
        pass

    class Context:
        def abort(self, code, details):
            raise Aborted(code, details)

    answer = servicer.BatchGetViewCounts(ppb.BatchGetViewCountsRequest(video_ids=["vidA", "vidC"]), Context())
    assert dict(answer.views) == {"vidA": 3, "vidC": 0}
    for ids in (["vidA\n"], ["../x"], [f"v{i}" for i in range(1001)]):
        with pytest.raises(Aborted) as refused:
            servicer.BatchGetViewCounts(ppb.BatchGetViewCountsRequest(video_ids=ids), Context())
        assert refused.value.args[0] == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("kw,needle", [({"kind": "pause"}, "kind"), ({"region": "gbr"}, "region"),
                                       ({"video": "../x"}, "video_id"), ({"video": "vidA\n"}, "video_id"),
                                       ({"region": "GB\n"}, "region"), ({"nbytes": -5}, "negative")])
def test_malformed_view_events_are_permanent_errors(store, kw, needle):
    with pytest.raises(PermanentError, match=needle):
        ViewCounter(store)(view_msg(0, **kw))
    with pytest.raises(PermanentError, match="undecodable"):
        ViewCounter(store)(Message(topic="views", partition=0, offset=9, key=None, value=b"\xff\xff\xff"))
    assert store.daily_views() == []


def test_catalog_put_is_an_upsert(store):
    store.put_video(CatalogEntry("v1", "ch", "en", "music", "2024-05-01", 10))
    store.put_video(CatalogEntry("v1", "ch", "en", "music", "2024-05-01", 20))
    assert [e.size_bytes for e in store.list_videos()] == [20]


def entries(n=3):
    return [CatalogEntry(f"v{i}", "ch", "en", "music", "2024-04-20", 10_000_000) for i in range(n)]


def dataset(catalog, counts, regions, day, default_size):
    """The daily job's Dataset from catalogue entries and count rows (as a shard builds it)."""
    cat = catalog_columns_of([dataclasses.astuple(e) for e in catalog])
    start = day - dt.timedelta(days=daily_shard.HISTORY_DAYS)
    sparse, _, first = daily_shard.collect_views(cat.video_id, regions, [view_columns_of(
        [dataclasses.astuple(c) for c in counts])], start)
    return daily_shard.build_dataset(cat, sparse, regions, day, min(day - dt.timedelta(days=1), first or day),
                                     default_size)


def test_dataset_from_counts_ignores_the_decision_day_and_unknown_videos():
    counts = [DailyViews("v0", "GB", "2024-04-30", 50, 0), DailyViews("v0", "GB", "2024-05-01", 99, 0),
              DailyViews("zz", "GB", "2024-04-30", 7, 0), DailyViews("v1", "XX", "2024-04-30", 7, 0)]
    ds = dataset(entries(), counts, REGIONS, dt.date(2024, 5, 1), 1e9)
    assert ds.dates[-1] == dt.date(2024, 5, 1)
    assert ds.views[:, :, -1].sum() == 0  # the day being decided is unknown
    assert ds.views.sum() == 50 and ds.views[0, 1, -2] == 50
    assert list(ds.upload_day) == [(dt.date(2024, 4, 20) - ds.dates[0]).days] * 3


class EmptyObjects:
    def stat(self, bucket, key):
        return None


def test_rule_pushes_where_yesterday_repays_the_fill_and_evicts_when_views_stop():
    day = dt.date(2024, 5, 1)
    costs = CostModel()
    counts = [DailyViews("v0", "GB", "2024-04-30", 40, 0), DailyViews("v1", "US", "2024-04-30", 1, 0),
              DailyViews("v2", "GB", "2024-04-27", 60, 0)]
    ds = dataset(entries(), counts, REGIONS, day, 1e9)
    d = ds.n_days - 1
    out = {}
    model, hist = daily.choose_model(ds, costs, EmptyObjects(), d, Namespace(no_train=True, min_train_days=14), out)
    assert model is None and out["model"] == {"source": "rule"}
    at_edge = np.zeros((3, 3), bool)
    push, admit, pred, policy = daily.decide(ds, hist, None, costs, d, at_edge)
    assert policy == "rule-yesterday"
    assert push.tolist() == [[False, True, False], [False, False, False], [False, False, False]]
    assert pred[0, 1] == 40
    # On the day: v2's week in GB (60 views, none yesterday) repays a fill at its first
    # request; v1's single view in US does not (a one-hit video pays no fill).
    assert admit.tolist() == [[False, False, False], [False, False, False], [False, True, False]]
    # A day later with no views: what sits on the edge goes.
    ds2 = dataset(entries(), counts, REGIONS, day + dt.timedelta(days=1), 1e9)
    hist2 = daily.choose_model(ds2, costs, EmptyObjects(), ds2.n_days - 1, Namespace(no_train=True), {})[1]
    push2, _, _, _ = daily.decide(ds2, hist2, None, costs, ds2.n_days - 1, push)
    assert not push2.any()


def test_daily_cli_rejects_bad_arguments(capsys):
    assert daily.main(["--date", "2024-13-01"]) == 2
    assert "bad --date" in capsys.readouterr().err
    assert daily.main(["--bogus"]) == 2
    assert "unrecognized" in capsys.readouterr().err


# ---------------------------------------------------------------- cold start
class FakeModel:
    family = "gbm"

    def decide_new_video(self, features):
        assert features["language"] == "ja" and features["channel_id"] == "chan"
        return {"JP": "cdn", "US": "origin", "GB": "origin"}


class FakeModels:
    def __init__(self, model):
        self.model = model

    def get(self):
        return self.model


class FakeMetadata:
    def __init__(self, video, objects):
        self.video, self.objects, self.updates = video, objects, []

    def GetVideo(self, request, timeout=None):
        return self.video

    def UpdateVideo(self, request, timeout=None):
        # The decision may only be written once the bytes are at the edge.
        for p in request.video.placements:
            if p.served_from == video_pb2.SERVED_FROM_CDN:
                assert edge.is_pushed(self.objects, self.video.id, p.region)
        self.updates.append(request)
        out = video_pb2.Video()
        out.CopyFrom(self.video)
        out.MergeFrom(request.video)
        out.status = request.video.status
        return out


class FakeProducer:
    def __init__(self):
        self.sent = []

    def publish(self, topic, value, key=None, headers=None):
        self.sent.append(topic)


def _processing_video():
    return video_pb2.Video(id="vidA", channel=video_pb2.Channel(id="chan"), language="ja", category="anime",
                           status=video_pb2.VIDEO_STATUS_PROCESSING, etag="e1")


def _result():
    return Message(topic="transcode.results", partition=0, offset=0, key=b"vidA", value=events_pb2.TranscodeResult(
        video_id="vidA", success=True, duration_seconds=3.0,
        manifests=[video_pb2.StreamManifest(codec="h264", protocol="hls", object_key="videos/vidA/h264/master.m3u8")],
    ).SerializeToString())


@pytest.mark.parametrize("with_model", [True, False])
def test_cold_start_pushes_bytes_before_ready_and_records_the_catalog(tmp_path, store, with_model):
    from longtail_common.config import Config

    objects = FilesystemObjectStore(tmp_path / "objects")
    objects.ensure_bucket(MEDIA_BUCKET)
    objects.put_bytes(MEDIA_BUCKET, "videos/vidA/h264/master.m3u8", b"#EXTM3U\n")
    objects.put_bytes(MEDIA_BUCKET, "videos/vidA/h264/360p/seg0.ts", b"x" * 1000)
    objects.put_bytes(MEDIA_BUCKET, "videos/vidA/h264/_result.json", b"{}")
    cfg = Config(data_dir=str(tmp_path))
    cfg.platform.regions = ["US", "GB", "JP"]
    meta = FakeMetadata(_processing_video(), objects)
    handler = ResultHandler(cfg, meta, FakeProducer(), objects=objects, view_counts=store,
                            models=FakeModels(FakeModel() if with_model else None))
    handler(_result())
    (update,) = meta.updates
    served = {p.region: p.served_from for p in update.video.placements}
    cdn = video_pb2.SERVED_FROM_CDN
    assert served == {"US": video_pb2.SERVED_FROM_ORIGIN, "GB": video_pb2.SERVED_FROM_ORIGIN,
                      "JP": cdn if with_model else video_pb2.SERVED_FROM_ORIGIN}
    assert {p.policy for p in update.video.placements} == {"cold-start-gbm" if with_model else "new-video-origin"}
    assert edge.is_pushed(objects, "vidA", "JP") == with_model
    assert objects.stat("edge-jp", "videos/vidA/h264/_result.json") is None
    (entry,) = store.list_videos()
    assert (entry.video_id, entry.language, entry.size_bytes) == ("vidA", "ja", 1008)


def test_daily_trains_with_enough_history_saves_and_reuses_the_model(tmp_path):
    from placement_svc import modelstore
    from placement_svc.server import decide_for_new_video
    from tests.test_placement_helpers import FAST_TRAIN, small_sim

    sim = small_sim(1)
    D = 20
    catalog = [CatalogEntry(v, sim.channel_ids[c] if c >= 0 else "", str(sim.language[i]), str(sim.category[i]),
                            (sim.dates[0] + dt.timedelta(days=int(sim.upload_day[i]))).isoformat(), 50_000_000)
               for i, (v, c) in enumerate(zip(sim.video_ids, sim.channel))]
    vi, ri, di = np.nonzero(sim.views[:, :, :D])
    counts = [DailyViews(sim.video_ids[a], sim.regions[b], sim.dates[d].isoformat(), int(sim.views[a, b, d]), 0)
              for a, b, d in zip(vi, ri, di)]
    ds = dataset(catalog, counts, list(sim.regions), sim.dates[D], 1e9)
    assert ds.views[:, :, :-1].sum() == pytest.approx(float(sim.views[:, :, :D].round().sum()), rel=1e-6)
    objects = FilesystemObjectStore(tmp_path / "objects")
    out = {}
    fast = FAST_TRAIN.__class__(**{**FAST_TRAIN.__dict__, "families": ("mlp",)})
    args = Namespace(no_train=False, min_train_days=14, max_rows=20_000, train_config=fast)
    model, hist = daily.choose_model(ds, CostModel(), objects, ds.n_days - 1, args, out)
    assert out["model"]["source"] == "trained" and model.family in ("mlp", "gbm")
    at_edge = np.zeros((len(catalog), len(sim.regions)), bool)
    push, admit, pred, policy = daily.decide(ds, hist, model, CostModel(), ds.n_days - 1, at_edge)
    assert policy == f"model-{model.family}" and 0 < push.sum() < push.size
    assert not (admit & push).any()
    if model.admits():  # the learned admission rule: what the model says for the rows left on origin
        b = hist.batch(ds.n_days - 1)
        rest = b.take(~push[b.vid, b.reg])
        want = model.admit_rows(rest, model.expected_views_if_requested(rest))
        assert admit[rest.vid, rest.reg].tolist() == want.tolist()
    yesterday = ds.views[:, :, -2]
    assert yesterday[push].mean() > 10 * max(yesterday[~push].mean(), 0.01)
    # The next run without training reuses the saved model; cold start uses it too.
    out2 = {}
    saved, _ = daily.choose_model(ds, CostModel(), objects, ds.n_days - 1, Namespace(no_train=True), out2)
    assert out2["model"] == {"source": "saved", "family": model.family}
    assert modelstore.LatestModel(objects).get().family == model.family
    video = video_pb2.Video(id="new1", channel=video_pb2.Channel(id=sim.channel_ids[0]), language=str(sim.language[0]),
                            category=str(sim.category[0]))
    decisions = decide_for_new_video(video, list(sim.regions), saved)
    assert [d.region for d in decisions] == list(sim.regions)
    assert {d.policy for d in decisions} == {f"cold-start-{model.family}"}
    fills = saved.admit_new_video({"channel_id": sim.channel_ids[0], "language": str(sim.language[0]),
                                   "category": str(sim.category[0])})
    assert [d.fill_on_first_request for d in decisions] == [
        fills[r] and d.served_from == video_pb2.SERVED_FROM_ORIGIN for r, d in zip(sim.regions, decisions)]
