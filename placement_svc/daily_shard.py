"""One shard of the daily placement job: the READY videos whose `ports.view_shard` is k of N.

One job: hold a shard's catalogue and view history and answer the coordinator
(`placement_svc.daily`) in three steps, in order:
  1. `load`: the shard's catalogue, READY status and current placements (metadata, read in
     batches and kept as arrays), and its counts of the history window (columns, kept
     sparse); reports its channels, vocabulary counts and first day with views;
  2. `prepare`: the dense view history over the job's days, this shard's share of the
     channel history of the day (`ChannelSums`, which add up across shards) and its part
     of the training sample (whole channels, picked by a hash of the channel id);
  3. `plan_and_apply`: scores its videos chunk by chunk with the model (or the rule) and
     the catalogue-wide channel table, then pushes, writes and evicts what changed and
     asks for codec upgrades.
The features of a video depend only on its own views and that table, so a shard decides
exactly what one process deciding for the whole catalogue would. `ShardProcess` runs a
shard in a separate process with the same three calls.
"""
from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("placement_svc.daily_shard")
HISTORY_DAYS = 120  # days of counts the job reads (features look back at most 28 days + channel stats)
CHUNK_VIDEOS = 20_000  # videos scored at once: bounds the feature arrays (~250 MB at 120 days x 10 regions)
SAMPLE_KEY_SPACE = 1 << 32


# ------------------------------------------------------------------------------ data
@dataclass
class SparseViews:
    """Counts as parallel arrays: catalogue row, region, day (0 = the window's first day)."""

    video: np.ndarray  # int64
    region: np.ndarray  # int64
    day: np.ndarray  # int64
    views: np.ndarray  # float32


def collect_views(catalog_ids: np.ndarray, regions: list[str], batches, window_first: dt.date):
    """(SparseViews, ids with counts but no catalogue entry, first day of any row) from
    ViewColumns batches.

    Views of regions not configured are dropped; rows of one (video, region, day) add up."""
    region_codes = np.array(regions, dtype=str)
    region_order = np.argsort(region_codes)
    parts, unknown, first_day = [], set(), None
    for c in batches:
        if not len(c):
            continue
        first_day = min(first_day, c.day.min()) if first_day is not None else c.day.min()
        pos = np.minimum(np.searchsorted(catalog_ids, c.video_id), max(len(catalog_ids) - 1, 0))
        known = catalog_ids[pos] == c.video_id if len(catalog_ids) else np.zeros(len(c), dtype=bool)
        unknown.update(np.unique(c.video_id[~known]).tolist())
        rpos = np.minimum(np.searchsorted(region_codes[region_order], c.region), len(regions) - 1)
        reg = region_order[rpos]
        keep = known & (region_codes[reg] == c.region) & (c.views > 0)
        day = (c.day[keep] - np.datetime64(window_first, "D")).astype(np.int64)
        parts.append((pos[keep], reg[keep], day, c.views[keep].astype(np.float32)))
    cols = [np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, dt_) for i, dt_ in
            enumerate((np.int64, np.int64, np.int64, np.float32))]
    first = None if first_day is None else first_day.astype(dt.date)
    return SparseViews(*cols), sorted(unknown), first


def build_dataset(catalog, sparse: SparseViews, regions: list[str], day: dt.date, first: dt.date,
                  default_size: float, channel_ids: list[str] | None = None):
    """A Dataset over `catalog` (CatalogColumns) with days first..day; the last day (the one
    decided) has zero views: it is unknown yet. `channel_ids`: the catalogue-wide channel
    list its `channel` indexes (default: this catalogue's channels)."""
    from placement_svc.model.dataset import Dataset

    n_days = (day - first).days + 1
    offset = (first - (day - dt.timedelta(days=HISTORY_DAYS))).days  # sparse days count from the window start
    views = np.zeros((len(catalog), len(regions), n_days), dtype=np.float32)
    d = sparse.day - offset
    ok = (d >= 0) & (d < n_days - 1)
    np.add.at(views, (sparse.video[ok], sparse.region[ok], d[ok]), sparse.views[ok])
    if channel_ids is None:
        channel_ids = sorted(set(catalog.channel_id.tolist()) - {""})
    ch_sorted = np.array(channel_ids, dtype=str)
    has_ch = catalog.channel_id != ""
    channel = np.full(len(catalog), -1, dtype=np.int64)
    channel[has_ch] = np.searchsorted(ch_sorted, catalog.channel_id[has_ch])
    any_views = views.sum(1) > 0
    first_seen = np.where(any_views.any(1), any_views.argmax(1), n_days).astype(np.int64)
    return Dataset(
        dates=[first + dt.timedelta(days=i) for i in range(n_days)], regions=list(regions),
        video_ids=catalog.video_id.tolist(), views=views,
        upload_day=(catalog.publish_day - np.datetime64(first, "D")).astype(np.int64),
        upload_known=np.ones(len(catalog), dtype=bool), first_seen=first_seen,
        language=np.where(catalog.language == "", "und", catalog.language).astype(str),
        category=np.where(catalog.category == "", "unknown", catalog.category).astype(str),
        channel=channel, channel_ids=list(channel_ids),
        size_bytes=np.where(catalog.size_bytes > 0, catalog.size_bytes, default_size).astype(np.float64),
    )


def slice_dataset(ds, rows):
    """The videos `rows` (a slice or an index array) of a Dataset; views are a view when a slice."""
    from placement_svc.model.dataset import Dataset

    ids = ds.video_ids[rows] if isinstance(rows, slice) else [ds.video_ids[i] for i in rows]
    return Dataset(dates=ds.dates, regions=ds.regions, video_ids=ids, views=ds.views[rows],
                   upload_day=ds.upload_day[rows], upload_known=ds.upload_known[rows], first_seen=ds.first_seen[rows],
                   language=ds.language[rows], category=ds.category[rows], channel=ds.channel[rows],
                   channel_ids=ds.channel_ids, size_bytes=ds.size_bytes[rows])


def concat_datasets(parts: list):
    """One Dataset of the videos of `parts` (same days, regions and channel list), sorted by
    id: the training sample is the same whichever shards it came from."""
    from placement_svc.model.dataset import Dataset

    first = parts[0]
    ids = [v for p in parts for v in p.video_ids]
    order = np.argsort(np.array(ids, dtype=str), kind="stable")
    cat = {k: np.concatenate([getattr(p, k) for p in parts])[order] for k in
           ("views", "upload_day", "upload_known", "first_seen", "language", "category", "channel", "size_bytes")}
    return Dataset(dates=first.dates, regions=first.regions, video_ids=[ids[i] for i in order],
                   channel_ids=first.channel_ids, **cat)


def in_training_sample(ds, rate: float) -> np.ndarray:
    """Mask of the videos in the training sample: whole channels (their history is then
    complete in the sample), chosen by a hash of the channel id; videos without a channel
    by a hash of their own id."""
    if rate >= 1.0:
        return np.ones(len(ds.video_ids), dtype=bool)
    keys = [ds.channel_ids[c] if c >= 0 else v for v, c in zip(ds.video_ids, ds.channel)]
    h = np.fromiter((zlib.crc32(k.encode()) for k in keys), dtype=np.int64, count=len(keys))
    return h < rate * SAMPLE_KEY_SPACE


def vocab_counts(catalog, until: dt.date) -> tuple[Counter, Counter]:
    """(languages, categories) counts of the videos known by `until` (Vocab.fit's input)."""
    known = catalog.publish_day <= np.datetime64(until, "D")
    langs = np.where(catalog.language == "", "und", catalog.language)[known]
    cats = np.where(catalog.category == "", "unknown", catalog.category)[known]
    return Counter(langs.tolist()), Counter(cats.tolist())


# ------------------------------------------------------------------------------ metadata
def get_videos(metadata, ids) -> dict:
    """The metadata of `ids` (those that exist), by id, in batches the RPC accepts."""
    from longtail.metadata.v1 import metadata_service_pb2 as mpb

    found = {}
    ids = list(ids)
    for s in range(0, len(ids), 1000):
        resp = metadata.BatchGetVideos(mpb.BatchGetVideosRequest(ids=ids[s:s + 1000]), timeout=60)
        found.update({v.id: v for v in resp.videos})
    return found


def placement_state(metadata, ids: list[str], regions: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(READY mask, (video, region) masks of the pairs whose decision says cdn and of those
    whose decision says fill at the first request), read in batches without keeping the
    messages."""
    from longtail.metadata.v1 import video_pb2

    ready = np.zeros(len(ids), dtype=bool)
    at_edge = np.zeros((len(ids), len(regions)), dtype=bool)
    admitted = np.zeros((len(ids), len(regions)), dtype=bool)
    rindex = {r: i for i, r in enumerate(regions)}
    for s in range(0, len(ids), 1000):
        found = get_videos(metadata, ids[s:s + 1000])
        for i in range(s, min(s + 1000, len(ids))):
            v = found.get(ids[i])
            if v is None or v.status != video_pb2.VIDEO_STATUS_READY:
                continue
            ready[i] = True
            for p in v.placements:
                if p.region in rindex and p.served_from == video_pb2.SERVED_FROM_CDN:
                    at_edge[i, rindex[p.region]] = True
                elif p.region in rindex and p.fill_on_first_request:
                    admitted[i, rindex[p.region]] = True
    return ready, at_edge, admitted


def add_missing_entries(store, objects, metadata, ids: list[str], day: dt.date) -> int:
    """Catalogue entries for READY videos with views but none (READY before placement kept
    one); returns how many were added."""
    from longtail.metadata.v1 import video_pb2
    from longtail_common.ports import CatalogEntry
    from placement_svc import edge

    added = 0
    for v in get_videos(metadata, ids).values():
        if v.status == video_pb2.VIDEO_STATUS_READY:
            publish = v.publish_time.ToDatetime(tzinfo=dt.timezone.utc).date() if v.HasField("publish_time") else day
            store.put_video(CatalogEntry(v.id, v.channel.id, v.language, v.category, publish.isoformat(),
                                         edge.video_size_bytes(objects, v.id)))
            added += 1
    return added


# ------------------------------------------------------------------------------ the shard
@dataclass
class ShardInfo:
    """What `load` reports to the coordinator."""

    videos: int
    first_view_day: dt.date | None
    channel_ids: list[str]
    languages: Counter
    categories: Counter


class Shard:
    """The state of one shard between the coordinator's calls (see the module doc)."""

    def __init__(self, cfg, day: dt.date, shard: int, shards: int, metadata_address: str | None,
                 default_size: float):
        self.cfg, self.day, self.shard, self.shards = cfg, day, shard, shards
        self.metadata_address = metadata_address
        self.default_size = default_size
        self.regions = list(cfg.platform.regions)

    def _connect(self):
        from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
        from longtail_common.adapters import make_object_store, make_view_count_store
        from longtail_common.grpc_server import client_channel

        store, objects = make_view_count_store(self.cfg), make_object_store(self.cfg)
        channel = client_channel(self.cfg, "metadata", self.metadata_address)
        return store, objects, channel, mpb_grpc.MetadataServiceStub(channel)

    def load(self) -> ShardInfo:
        store, objects, channel, metadata = self._connect()
        try:
            start = self.day - dt.timedelta(days=HISTORY_DAYS)
            for _ in range(2):  # a second pass only after adding missing catalogue entries
                catalog = store.catalogue_columns(self.shard, self.shards)
                sparse, unknown, first = collect_views(catalog.video_id, self.regions, store.view_columns(
                    start.isoformat(), (self.day - dt.timedelta(days=1)).isoformat(), self.shard, self.shards),
                    start)
                if not unknown or not add_missing_entries(store, objects, metadata, unknown, self.day):
                    break
            ready, at_edge, admitted = placement_state(metadata, catalog.video_id.tolist(), self.regions)
        finally:
            store.close()
            channel.close()
        keep = np.nonzero(ready)[0]
        remap = np.full(len(catalog), -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        live = remap[sparse.video] >= 0
        self.sparse = SparseViews(remap[sparse.video[live]], sparse.region[live], sparse.day[live], sparse.views[live])
        self.catalog = type(catalog)(**{k: getattr(catalog, k)[keep] for k in catalog.__dataclass_fields__})
        self.at_edge = at_edge[keep]
        self.admitted = admitted[keep]
        langs, cats = vocab_counts(self.catalog, self.day - dt.timedelta(days=1))
        return ShardInfo(videos=len(keep), first_view_day=first,
                         channel_ids=sorted(set(self.catalog.channel_id.tolist()) - {""}),
                         languages=langs, categories=cats)

    def prepare(self, first: dt.date, channel_ids: list[str], sample_rate: float):
        """(this shard's ChannelSums of the day, its videos in the training sample)."""
        from placement_svc.model.features import ChannelSums, History, Vocab

        self.ds = build_dataset(self.catalog, self.sparse, self.regions, self.day, first, self.default_size,
                                channel_ids)
        del self.sparse
        d = self.ds.n_days - 1
        vocab = Vocab(languages=[], categories=[], regions=self.regions)  # sums do not read the vocabulary
        sums = ChannelSums.zeros(max(len(channel_ids), 1), len(self.regions))
        for s in range(0, len(self.ds.video_ids), CHUNK_VIDEOS):
            sums = sums + History(slice_dataset(self.ds, slice(s, s + CHUNK_VIDEOS)), vocab).channel_sums(d)
        sample = slice_dataset(self.ds, np.nonzero(in_training_sample(self.ds, sample_rate))[0])
        return sums, sample

    def plan_and_apply(self, model, vocab, channel_table, costs, dry_run: bool) -> dict:
        """Scores the shard and applies what changed; returns the shard's part of the summary."""
        from placement_svc.daily import apply_decisions, codec_upgrades, decide, request_codec_upgrades
        from placement_svc.model.features import History

        ds, d = self.ds, self.ds.n_days - 1
        push = np.zeros(self.at_edge.shape, dtype=bool)
        admit = np.zeros(self.at_edge.shape, dtype=bool)
        predicted = np.zeros(self.at_edge.shape)
        policy = "none"
        for s in range(0, len(ds.video_ids), CHUNK_VIDEOS):
            rows = slice(s, s + CHUNK_VIDEOS)
            part = slice_dataset(ds, rows)
            push[rows], admit[rows], predicted[rows], policy = decide(part, History(part, vocab), model, costs, d,
                                                                      self.at_edge[rows], channel_table)
        out = {"videos": len(ds.video_ids), "policy": policy, "on_cdn": push.sum(0).tolist(),
               "fill_on_request": admit.sum(0).tolist()}
        tc = self.cfg.transcoder
        popular = np.nonzero(predicted.sum(1) >= tc.popular_min_daily_views)[0] if tc.popular_codecs else []
        if dry_run:
            new, gone = push & ~self.at_edge, self.at_edge & ~push
            flips = admit != self.admitted
            out.update(would_push=int(new.sum()), would_evict=int(gone.sum()), would_change_admission=int(flips.sum()),
                       changed_videos=int((new | gone | flips).any(1).sum()), popular_videos=len(popular))
            return out
        store, objects, channel, metadata = self._connect()
        try:
            applied = apply_decisions(objects, metadata, ds.video_ids, self.regions, self.at_edge, push, predicted,
                                      policy, admit, self.admitted)
            videos = get_videos(metadata, [ds.video_ids[i] for i in popular])
            upgrades = codec_upgrades([videos[ds.video_ids[i]] for i in popular if ds.video_ids[i] in videos],
                                      predicted.sum(1)[[i for i in popular if ds.video_ids[i] in videos]],
                                      list(tc.popular_codecs), tc.popular_min_daily_views)
            request_codec_upgrades(self.cfg, upgrades, videos)
        finally:
            store.close()
            channel.close()
        out.update(pushed=applied.pushed, evicted=applied.evicted, errors=applied.errors, unchanged=applied.unchanged,
                   changes=[[r, s, n] for (r, s), n in applied.changes.items()],
                   codec_upgrades=[[v, "+".join(f)] for v, f in upgrades])
        return out


# ------------------------------------------------------------------------------ processes
def configure_identity(cfg) -> None:
    """The job writes placements into metadata as a service of the mesh: its calls are
    signed, in the coordinator and in every shard process alike."""
    from longtail_common.mesh_identity import MeshPrincipal, configure_client_identity, make_mesh_signer

    configure_client_identity(make_mesh_signer(cfg), MeshPrincipal(service="longtail.placement.daily"))


def _serve(conn, args: tuple) -> None:
    """A shard process: builds the Shard, then answers (method, args) calls until None."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    configure_identity(args[0])
    shard = Shard(*args)
    while (request := conn.recv()) is not None:
        method, call_args = request
        try:
            conn.send(("ok", getattr(shard, method)(*call_args)))
        except BaseException as exc:  # noqa: BLE001 - reported to the coordinator, which fails the run
            log.exception("shard %d: %s failed", shard.shard, method)
            conn.send(("error", f"shard {shard.shard}: {method}: {type(exc).__name__}: {exc}"))


class ShardProcess:
    """A Shard in its own process (spawned: nothing of the coordinator is inherited)."""

    def __init__(self, *shard_args):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, shard_args), daemon=True)
        self.process.start()
        child.close()

    def send(self, method: str, *args) -> None:
        self.conn.send((method, args))

    def receive(self):
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"shard process {self.process.pid} died (exit code {self.process.exitcode})") from None
        if status != "ok":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()


class LocalShard:
    """The same calls on a Shard in this process (--shards 1)."""

    def __init__(self, *shard_args):
        self.shard = Shard(*shard_args)
        self._result = None

    def send(self, method: str, *args) -> None:
        self._result = getattr(self.shard, method)(*args)

    def receive(self):
        return self._result

    def close(self) -> None:
        pass
