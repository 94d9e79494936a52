"""`longtail placement run --shards N` decides exactly what one process decides.

A small simulated catalogue (~1,900 videos x 6 regions, 20 days of counts) with READY
videos in a real MetadataService (SQLite, in-process), media objects to push, some pairs
already on the edge, and a saved model. The same starting state is copied twice and the
daily job runs on each copy, once as one process and once as three shard processes: the
placements written, the pushes and the evictions are the same.
"""
from __future__ import annotations

import datetime as dt
import shutil
from argparse import Namespace
from concurrent import futures

import grpc
import numpy as np
import pytest

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail_common.adapters.fs_objects import FilesystemObjectStore
from longtail_common.adapters.sqlite_metadata import SqliteMetadataStore
from longtail_common.adapters.sqlite_viewcounts import SqliteViewCountStore
from longtail_common.config import Config
from longtail_common.ports import MEDIA_BUCKET, CatalogEntry, DailyViews, VideoRecord, view_shard
from metadata_svc.server import MetadataServicer
from placement_svc import daily, daily_shard
from placement_svc.model.costs import CostModel
from tests.test_placement_helpers import FAST_TRAIN, small_sim

DAY = 20  # the day decided: counts of days 0..19


def _config(root) -> Config:
    cfg = Config(data_dir=str(root))
    cfg.platform.regions = list(small_sim(1).regions)
    cfg.transcoder.popular_codecs = []
    cfg.mesh.tls = False  # metadata started by hand, called in plain text
    return cfg


@pytest.fixture(scope="module")
def start_state(tmp_path_factory):
    """A data directory: catalogue, counts, READY videos (some pairs on the edge), media, model."""
    sim = small_sim(1)
    root = tmp_path_factory.mktemp("shards-start")
    cfg = _config(root)
    day = sim.dates[DAY]
    store = SqliteViewCountStore(cfg.data_path / "viewcounts.sqlite3")
    meta = SqliteMetadataStore(cfg.data_path / "metadata.sqlite3")
    objects = FilesystemObjectStore(cfg.data_path / "objects")
    objects.ensure_bucket(MEDIA_BUCKET)
    rng = np.random.default_rng(0)
    for i, vid in enumerate(sim.video_ids):
        if sim.upload_day[i] > DAY:
            continue
        publish = sim.dates[0] + dt.timedelta(days=int(sim.upload_day[i]))
        channel = sim.channel_ids[sim.channel[i]] if sim.channel[i] >= 0 else ""
        store.put_video(CatalogEntry(vid, channel, str(sim.language[i]), str(sim.category[i]), publish.isoformat(),
                                     int(sim.size_bytes[i])))
        on_edge = [r for r in sim.regions if rng.random() < 0.05]
        video = video_pb2.Video(id=vid, channel=video_pb2.Channel(id=channel or "none"), etag="e0",
                                status=video_pb2.VIDEO_STATUS_READY, placements=[video_pb2.PlacementDecision(
                                    region=r, served_from=video_pb2.SERVED_FROM_CDN if r in on_edge
                                    else video_pb2.SERVED_FROM_ORIGIN) for r in sim.regions])
        meta.create_video(VideoRecord(vid, channel or "none", video.status, 1, "e0", video.SerializeToString()))
        objects.put_bytes(MEDIA_BUCKET, f"videos/{vid}/h264/seg0.ts", b"x" * 10)
    vi, ri, di = np.nonzero(sim.views[:, :, :DAY])
    rows = [DailyViews(sim.video_ids[a], sim.regions[b], sim.dates[d].isoformat(), int(sim.views[a, b, d]), 0)
            for a, b, d in zip(vi, ri, di)]
    for k in range(0, len(rows), 5000):
        store.apply_views("views/0", k, rows[k:k + 5000])
    # A model trained on the first days, saved as a previous run would have.
    ds = daily_shard.build_dataset(store.catalogue_columns(), daily_shard.collect_views(
        store.catalogue_columns().video_id, list(sim.regions),
        store.view_columns(sim.dates[0].isoformat(), sim.dates[DAY - 1].isoformat()),
        day - dt.timedelta(days=daily_shard.HISTORY_DAYS))[0], list(sim.regions), day, sim.dates[0], 1e9)
    args = Namespace(no_train=False, min_train_days=14, max_rows=20_000, train_config=FAST_TRAIN)
    out = {}
    model, _ = daily.choose_model(ds, CostModel(), objects, ds.n_days - 1, args, out)
    assert out["model"]["source"] == "trained"
    store.close()
    meta.close()
    return root, day


def _run_copy(start_state, tmp_path, shards: int) -> tuple[dict, dict]:
    root, day = start_state
    copy = tmp_path / f"shards-{shards}"
    shutil.copytree(root, copy)
    cfg = _config(copy)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    meta = SqliteMetadataStore(cfg.data_path / "metadata.sqlite3")
    mpb_grpc.add_MetadataServiceServicer_to_server(MetadataServicer(meta), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        summary = daily.run(cfg, day, daily.build_parser().parse_args(
            ["--no-train", "--shards", str(shards), "--metadata", f"127.0.0.1:{port}"]))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = mpb_grpc.MetadataServiceStub(channel)
            ids = [e.video_id for e in SqliteViewCountStore(cfg.data_path / "viewcounts.sqlite3").list_videos()]
            placements = {}
            for s in range(0, len(ids), 1000):
                for v in stub.BatchGetVideos(mpb.BatchGetVideosRequest(ids=ids[s:s + 1000])).videos:
                    placements[v.id] = [(p.region, p.served_from, round(p.predicted_views, 4), p.policy)
                                        for p in v.placements]
    finally:
        server.stop(0)
        meta.close()
    return summary, placements


def test_three_shard_processes_decide_and_apply_what_one_process_does(start_state, tmp_path):
    one, placed_one = _run_copy(start_state, tmp_path, 1)
    three, placed_three = _run_copy(start_state, tmp_path, 3)
    assert one["policy"].startswith("model-") and one["model"]["source"] == "saved"
    assert not one["errors"] and not three["errors"]
    assert one["pushed"] and one["evicted"], one  # the day changes something both ways
    for key in ("policy", "videos", "on_cdn", "pushed", "evicted", "unchanged_videos"):
        assert one[key] == three[key], key
    assert placed_one == placed_three
    assert three["shards"] == 3


def test_the_training_sample_is_whole_channels_and_the_same_whichever_shards_hold_it():
    sim = small_sim(1)
    keep = daily_shard.in_training_sample(sim, 0.3)
    assert 0.15 < keep.mean() < 0.45
    for c in np.unique(sim.channel[sim.channel >= 0]):  # a channel is all in or all out
        assert len(set(keep[sim.channel == c])) == 1
    whole = daily_shard.slice_dataset(sim, np.nonzero(keep)[0])
    shard_of = np.array([view_shard(v, 3) for v in sim.video_ids])
    parts = [daily_shard.slice_dataset(sim, np.nonzero(keep & (shard_of == k))[0]) for k in range(3)]
    merged = daily_shard.concat_datasets(parts)
    assert merged.video_ids == sorted(whole.video_ids)
    order = np.argsort(whole.video_ids)
    assert np.array_equal(merged.views, whole.views[order]) and np.array_equal(merged.channel, whole.channel[order])


def test_channel_sums_of_shards_add_up_to_the_whole_catalogue_exactly():
    from placement_svc.model.features import History, Vocab

    sim = small_sim(1)
    vocab = Vocab.fit(sim, DAY)
    shard_of = np.array([view_shard(v, 3) for v in sim.video_ids])
    whole = History(sim, vocab).channel_table(DAY)
    parts = [History(daily_shard.slice_dataset(sim, np.nonzero(shard_of == k)[0]), vocab).channel_sums(DAY)
             for k in range(3)]
    split = (parts[0] + parts[1] + parts[2]).table()
    for field in ("mean0", "lmean0", "avg7", "n", "age_adj"):
        assert np.array_equal(getattr(whole, field), getattr(split, field)), field
    assert whole.n.sum() > 0 and np.abs(whole.age_adj).sum() > 0
