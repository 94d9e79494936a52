"""`longtail placement run [--date D]`: the daily placement job.

  longtail placement run [--date YYYY-MM-DD] [--config FILE] [--data-dir DIR] [--metadata HOST:PORT]
                         [--costs FILE] [--min-train-days N] [--no-train] [--max-rows N]

On the morning of day D (default: today, UTC) it
  1. reads the catalogue of READY videos and the daily view counts of the days before D
     (the ViewCountStore that placement's `views` consumer fills);
  2. trains the model on that history (MLP vs GBM, the cheaper on validation days wins) and
     saves it for cold start, when there are at least --min-train-days days of history;
     otherwise it loads the latest saved model; without one it falls back to a break-even
     rule on yesterday's views (push if yesterday's views, kept up for the model's horizon,
     repay the fill; keep while a day's views repay the storage);
  3. scores every READY video x configured region and, per video whose decision changed,
     pushes the renditions to the new regions' edges FIRST, then writes the decision into
     the metadata (UpdateVideo, field mask "placements", etag-checked), then evicts the
     regions it left. A cdn URL therefore never points at missing bytes;
  4. asks the transcoder for the `transcoder.popular_codecs` (AV1) of every video whose
     predicted views for the day, over all regions, reach `transcoder.popular_min_daily_views`
     and that lacks them (a codec upgrade on the transcode topic).
Prints one JSON summary. Exit code 2 with one line on stderr for bad input.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("placement_svc.daily")
DEFAULT_MIN_TRAIN_DAYS = 14
HISTORY_DAYS = 120  # days of counts the job reads (features look back at most 28 days + channel stats)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ValueError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="longtail placement run", description="Decide and apply today's CDN placement.")
    p.add_argument("--date", help="the day decided for (YYYY-MM-DD, default today UTC); uses views before it")
    p.add_argument("--config", help="TOML config file (default: LONGTAIL_CONFIG / embedded)")
    p.add_argument("--data-dir", help="data directory of the embedded setup")
    p.add_argument("--metadata", help="metadata service address host:port (default from config)")
    p.add_argument("--costs", help="prices per region, JSON or TOML (see docs/placement.md)")
    p.add_argument("--min-train-days", type=int, default=DEFAULT_MIN_TRAIN_DAYS,
                   help=f"train only with at least this many days of history (default {DEFAULT_MIN_TRAIN_DAYS})")
    p.add_argument("--no-train", action="store_true", help="never train; use the saved model or the rule")
    p.add_argument("--max-rows", type=int, help="training rows cap (default: TrainConfig.max_rows)")
    p.add_argument("--json", action="store_true", help="(the summary is always JSON)")
    return p


# ------------------------------------------------------------------------------ data
def _get_videos(metadata, ids) -> dict:
    """The metadata of `ids` (those that exist), by id, in batches the RPC accepts."""
    from longtail.metadata.v1 import metadata_service_pb2 as mpb

    found = {}
    ids = list(ids)
    for s in range(0, len(ids), 1000):
        resp = metadata.BatchGetVideos(mpb.BatchGetVideosRequest(ids=ids[s:s + 1000]), timeout=60)
        found.update({v.id: v for v in resp.videos})
    return found


def ready_catalogue(store, objects, metadata, counts, day: dt.date) -> tuple[list, dict]:
    """(catalogue entries sorted by video id, their Video messages) of every READY video.

    Videos with views but no catalogue entry (READY before placement kept one) are added
    to the catalogue first."""
    from longtail.metadata.v1 import video_pb2
    from longtail_common.ports import CatalogEntry
    from placement_svc import edge

    catalog = {e.video_id: e for e in store.list_videos()}
    missing = sorted({c.video_id for c in counts} - set(catalog))
    for v in _get_videos(metadata, missing).values():
        if v.status == video_pb2.VIDEO_STATUS_READY:
            publish = v.publish_time.ToDatetime(tzinfo=dt.timezone.utc).date() if v.HasField("publish_time") \
                else day
            entry = CatalogEntry(v.id, v.channel.id, v.language, v.category, publish.isoformat(),
                                 edge.video_size_bytes(objects, v.id))
            store.put_video(entry)
            catalog[v.id] = entry
    videos = {k: v for k, v in _get_videos(metadata, catalog).items() if v.status == video_pb2.VIDEO_STATUS_READY}
    return [catalog[k] for k in sorted(videos)], videos


def served_from_cdn(entries, videos: dict, regions: list[str]) -> np.ndarray:
    """(video, region) mask of the pairs whose current decision says cdn."""
    from longtail.metadata.v1 import video_pb2

    at_edge = np.zeros((len(entries), len(regions)), dtype=bool)
    rindex = {r: i for i, r in enumerate(regions)}
    for i, e in enumerate(entries):
        for p in videos[e.video_id].placements:
            if p.region in rindex and p.served_from == video_pb2.SERVED_FROM_CDN:
                at_edge[i, rindex[p.region]] = True
    return at_edge


def build_dataset(catalog, counts, regions: list[str], day: dt.date, default_size: float):
    """A Dataset whose last day is `day` (zero views: unknown yet) over the catalogue.

    Views of videos not in the catalogue and of regions not configured are ignored."""
    from placement_svc.model.dataset import Dataset

    first = day - dt.timedelta(days=1)
    if counts:
        first = min(first, min(dt.date.fromisoformat(c.day) for c in counts))
    first = max(first, day - dt.timedelta(days=HISTORY_DAYS))
    n_days = (day - first).days + 1
    dates = [first + dt.timedelta(days=i) for i in range(n_days)]
    video_ids = [e.video_id for e in catalog]
    vindex = {v: i for i, v in enumerate(video_ids)}
    rindex = {r: i for i, r in enumerate(regions)}
    views = np.zeros((len(video_ids), len(regions), n_days), dtype=np.float32)
    for c in counts:
        i, r = vindex.get(c.video_id), rindex.get(c.region)
        d = (dt.date.fromisoformat(c.day) - first).days
        if i is None or r is None or not 0 <= d < n_days - 1:
            continue
        views[i, r, d] += c.views
    channel_ids: list[str] = []
    cindex: dict[str, int] = {}
    channel = np.full(len(video_ids), -1, dtype=np.int64)
    for i, e in enumerate(catalog):
        if e.channel_id:
            channel[i] = cindex.setdefault(e.channel_id, len(cindex))
            if channel[i] == len(channel_ids):
                channel_ids.append(e.channel_id)
    upload_day = np.array([(dt.date.fromisoformat(e.publish_day) - first).days for e in catalog], dtype=np.int64)
    any_views = views.sum(1) > 0
    first_seen = np.where(any_views.any(1), any_views.argmax(1), n_days).astype(np.int64) if len(catalog) else \
        np.zeros(0, dtype=np.int64)
    return Dataset(
        dates=dates, regions=list(regions), video_ids=video_ids, views=views, upload_day=upload_day,
        upload_known=np.ones(len(video_ids), dtype=bool), first_seen=first_seen,
        language=np.array([e.language or "und" for e in catalog], dtype=str),
        category=np.array([e.category or "unknown" for e in catalog], dtype=str),
        channel=channel, channel_ids=channel_ids,
        size_bytes=np.array([float(e.size_bytes) if e.size_bytes > 0 else default_size for e in catalog]),
    )


def choose_model(ds, costs, objects, day_index: int, args, out: dict):
    """Train (enough history), else the latest saved model, else None (rule)."""
    from placement_svc import modelstore
    from placement_svc.model.costs import Pricer
    from placement_svc.model.features import History, Vocab
    from placement_svc.model.learned import TrainConfig, train
    from placement_svc.model.tuning import ReplayContext, make_tune_replay

    train_end = day_index - 1
    history_days = day_index
    has_views = bool(ds.views[:, :, :day_index].sum() > 0)
    if not args.no_train and history_days >= max(args.min_train_days, 8) and has_views and len(ds.video_ids) > 0:
        vocab = Vocab.fit(ds, train_end)
        hist = History(ds, vocab)
        ctx = ReplayContext(ds=ds, hist=hist, pricer=Pricer(costs, ds.regions, ds.size_bytes))
        t0 = time.perf_counter()
        try:
            max_rows = TrainConfig.max_rows if args.max_rows is None else args.max_rows
            tcfg = getattr(args, "train_config", None) or TrainConfig(max_rows=max_rows)
            model = train(hist, costs, train_end, tcfg, make_tune_replay(ctx))
        except ValueError as exc:
            out["training_skipped"] = str(exc)
        else:
            modelstore.save_model(objects, model, str(ds.dates[day_index]))
            out["model"] = {"source": "trained", "family": model.family, "train_seconds":
                            round(time.perf_counter() - t0, 2), "validation": model.info.get("families")}
            return model, hist
    else:
        out["training_skipped"] = ("--no-train" if args.no_train else "no views yet" if not has_views else
                                   f"{history_days} day(s) of history, need {max(args.min_train_days, 8)}")
    model = modelstore.load_latest(objects)
    if model is not None and list(model.vocab.regions) == list(ds.regions):
        out["model"] = {"source": "saved", "family": model.family}
        return model, History(ds, model.vocab)
    out["model"] = {"source": "rule"}
    return None, History(ds, Vocab.fit(ds, train_end))


def decide(ds, hist, model, costs, day_index: int, at_edge: np.ndarray):
    """(push mask over (video, region), predicted views, policy name) for day `day_index`."""
    from placement_svc.model.learned import HORIZON, decision_thresholds

    n_v, n_r = len(ds.video_ids), len(ds.regions)
    push = np.zeros((n_v, n_r), dtype=bool)
    predicted = np.zeros((n_v, n_r))
    if n_v == 0:
        return push, predicted, "none"
    b = hist.batch(day_index)
    if model is not None:
        exp = model.expected_views(b)
        rows = model.decide_rows(b, exp, at_edge[b.vid, b.reg])
        predicted[b.vid, b.reg] = exp[:, 0]
        push[b.vid[rows], b.reg[rows]] = True
        return push, predicted, f"model-{model.family}"
    keep_t, fill_t = decision_thresholds(costs, list(ds.regions), 1.0, 1.0, HORIZON)
    y1 = hist.window(day_index, 1)
    rule = np.where(at_edge, y1 > keep_t[None, :], y1 * HORIZON > fill_t[None, :])
    known = np.zeros(n_v, dtype=bool)
    known[np.unique(b.vid)] = True
    push = rule & known[:, None]
    return push, y1.astype(np.float64), "rule-yesterday"


def codec_upgrades(videos: list, predicted_total: np.ndarray, families: list[str],
                   min_daily_views: float) -> list[tuple[str, list[str]]]:
    """(video id, families it lacks) for each video expected to be popular today: its
    predicted views summed over the regions reach `min_daily_views` (`families`:
    transcoder.popular_codecs). A video that already has them all is left alone."""
    wanted = [f.lower() for f in families]
    out = []
    for video, total in zip(videos, predicted_total):
        if not wanted or total < min_daily_views:
            continue
        have = {m.codec for m in video.manifests}
        missing = [f for f in wanted if f not in have]
        if missing:
            out.append((video.id, missing))
    return out


def request_codec_upgrades(cfg, upgrades: list[tuple[str, list[str]]], videos: dict) -> None:
    """One codec-upgrade job per video on the transcode topic (the transcoder skips what a
    video already has, so asking again tomorrow while one is in flight is harmless)."""
    if not upgrades:
        return
    from longtail.events.v1 import events_pb2
    from longtail_common.adapters import make_topic_bus
    from longtail_common.ports import RAW_BUCKET, TOPIC_TRANSCODE_REQUESTS

    bus = make_topic_bus(cfg)
    producer = bus.producer()
    try:
        for video_id, families in upgrades:
            request = events_pb2.TranscodeRequest(video_id=video_id, raw_bucket=RAW_BUCKET,
                                                  raw_object_key=videos[video_id].raw_object_key, add_codecs=families)
            request.request_time.GetCurrentTime()
            producer.publish(TOPIC_TRANSCODE_REQUESTS, request.SerializeToString(), key=video_id.encode())
    finally:
        producer.close()
        bus.close()


# ------------------------------------------------------------------------------ apply
def _placements(regions, push_row, pred_row, policy, now):
    from longtail.metadata.v1 import video_pb2

    return [video_pb2.PlacementDecision(
        region=r, served_from=video_pb2.SERVED_FROM_CDN if p else video_pb2.SERVED_FROM_ORIGIN,
        policy=policy, predicted_views=float(v), decide_time=now) for r, p, v in zip(regions, push_row, pred_row)]


def write_placements(metadata, video, placements) -> None:
    """UpdateVideo(placements) with the etag; re-reads and retries if someone wrote in between."""
    import grpc
    from google.protobuf import field_mask_pb2

    from longtail.metadata.v1 import metadata_service_pb2 as mpb
    from longtail.metadata.v1 import video_pb2

    for _ in range(5):
        patch = video_pb2.Video(id=video.id, etag=video.etag, placements=placements)
        try:
            metadata.UpdateVideo(mpb.UpdateVideoRequest(
                video=patch, update_mask=field_mask_pb2.FieldMask(paths=["placements"])), timeout=30)
            return
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ABORTED:
                raise
            video = metadata.GetVideo(mpb.GetVideoRequest(id=video.id), timeout=30)
    raise RuntimeError(f"video {video.id}: too many concurrent updates")


@dataclass
class AppliedChanges:
    """What applying a day's decisions did."""

    pushed: list[list[str]] = field(default_factory=list)  # [video id, region]
    evicted: list[list[str]] = field(default_factory=list)  # [video id, region]
    errors: list[str] = field(default_factory=list)
    unchanged: int = 0  # videos whose decisions stayed as they were
    changes: dict[tuple[str, str], int] = field(default_factory=dict)  # (region, served_from) -> decisions changed


def apply_decisions(objects, metadata, entries, videos: dict, regions: list[str], at_edge: np.ndarray,
                    push: np.ndarray, predicted: np.ndarray, policy: str) -> AppliedChanges:
    """Per video whose decision changed: push to the new regions' edges first, then write
    the decision, then evict the regions it left, so a cdn URL never points at missing bytes."""
    from google.protobuf.timestamp_pb2 import Timestamp

    from longtail.metadata.v1 import video_pb2
    from placement_svc import edge

    now = Timestamp()
    now.GetCurrentTime()
    rindex = {r: i for i, r in enumerate(regions)}
    done = AppliedChanges()
    for i, e in enumerate(entries):
        want = push[i].copy()
        new = [r for j, r in enumerate(regions) if want[j] and not at_edge[i, j]]
        gone = [r for j, r in enumerate(regions) if at_edge[i, j] and not want[j]]
        if not new and not gone:
            done.unchanged += 1
            continue
        for r in new:  # bytes first
            try:
                edge.push(objects, e.video_id, r)
                done.pushed.append([e.video_id, r])
            except Exception as exc:  # noqa: BLE001 - this pair stays on origin today
                want[rindex[r]] = False
                done.errors.append(f"push {e.video_id} to {r}: {exc}")
        placements = _placements(regions, want, predicted[i], policy, now)
        write_placements(metadata, videos[e.video_id], placements)
        for p in placements:
            if p.region in new or p.region in gone:
                key = (p.region, "cdn" if p.served_from == video_pb2.SERVED_FROM_CDN else "origin")
                done.changes[key] = done.changes.get(key, 0) + 1
        for r in gone:  # the decision no longer points there: now the bytes may go
            edge.evict(objects, e.video_id, r)
            done.evicted.append([e.video_id, r])
    return done


# ------------------------------------------------------------------------------ the run
def run(cfg, day: dt.date, args) -> dict:
    """Decides and applies the placement of `day` (steps 1-4 above); returns the JSON summary."""
    from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
    from longtail_common.adapters import make_object_store, make_view_count_store
    from longtail_common.grpc_server import client_channel
    from placement_svc import metrics as placement_metrics
    from placement_svc.model.costs import CostModel, load_costs

    t0 = time.perf_counter()
    costs = load_costs(args.costs) if args.costs else CostModel()
    regions = list(cfg.platform.regions)
    store = make_view_count_store(cfg)
    objects = make_object_store(cfg)
    channel = client_channel(cfg, "metadata", args.metadata)
    metadata = mpb_grpc.MetadataServiceStub(channel)
    out: dict = {"date": day.isoformat(), "regions": regions}
    try:
        first = (day - dt.timedelta(days=HISTORY_DAYS)).isoformat()
        counts = store.daily_views(first, (day - dt.timedelta(days=1)).isoformat())
        entries, videos = ready_catalogue(store, objects, metadata, counts, day)
        ds = build_dataset(entries, counts, regions, day, costs.default_video_size_bytes)
        d = ds.n_days - 1
        at_edge = served_from_cdn(entries, videos, regions)
        model, hist = choose_model(ds, costs, objects, d, args, out)
        t1 = time.perf_counter()
        push, predicted, policy = decide(ds, hist, model, costs, d, at_edge)
        out["scoring_seconds"] = round(time.perf_counter() - t1, 3)
        out["policy"] = policy
        applied = apply_decisions(objects, metadata, entries, videos, regions, at_edge, push, predicted, policy)
        tc = cfg.transcoder
        upgrades = codec_upgrades([videos[e.video_id] for e in entries], predicted.sum(axis=1),
                                  list(tc.popular_codecs), tc.popular_min_daily_views)
        request_codec_upgrades(cfg, upgrades, videos)
        on_cdn = {r: int(push[:, j].sum()) for j, r in enumerate(regions)}
        placement_metrics.write_daily_summary(objects, day.isoformat(), regions, len(entries), on_cdn,
                                              applied.changes)
        out.update({
            "videos": len(entries), "pairs_scored": int(len(entries) * len(regions)),
            "on_cdn": int(push.sum()), "pushed": applied.pushed, "evicted": applied.evicted,
            "unchanged_videos": applied.unchanged,
            "codec_upgrades": [[v, "+".join(f)] for v, f in upgrades],
            "errors": applied.errors, "total_seconds": round(time.perf_counter() - t0, 3),
        })
        return out
    finally:
        store.close()
        channel.close()


def main(argv: list[str] | None = None, cfg=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def fail(msg: str) -> int:
        print(f"longtail placement run: {msg}", file=sys.stderr)
        return 2

    try:
        args = build_parser().parse_args(argv)
    except ValueError as exc:
        return fail(str(exc))
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    from longtail_common.config import load_config
    from placement_svc.model.costs import CostsError

    try:
        day = dt.date.fromisoformat(args.date) if args.date else dt.datetime.now(dt.timezone.utc).date()
    except ValueError:
        return fail(f"bad --date {args.date!r} (want YYYY-MM-DD)")
    if args.min_train_days < 1:
        return fail("--min-train-days must be at least 1")
    try:
        if cfg is None:
            cfg = load_config(args.config)
        if args.data_dir:
            cfg.data_dir = args.data_dir
    except (OSError, ValueError) as exc:
        return fail(f"bad configuration: {exc}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from longtail_common import telemetry

    cfg.telemetry.prometheus_port = -1  # a batch job: nothing would scrape it
    telemetry.setup("placement_daily", cfg)
    from longtail_common.mesh_identity import MeshPrincipal, configure_client_identity, make_mesh_signer

    # It writes placements into metadata as a service of the mesh (its calls are signed).
    configure_client_identity(make_mesh_signer(cfg), MeshPrincipal(service="longtail.placement.daily"))
    try:
        with telemetry.tracer().start_as_current_span("placement daily run", attributes={"longtail.day": day.isoformat()}) as span:
            summary = run(cfg, day, args)
            span.set_attributes({"longtail.videos": summary.get("videos", 0), "longtail.on_cdn": summary.get("on_cdn", 0),
                                 "longtail.pushed": len(summary.get("pushed", [])),
                                 "longtail.evicted": len(summary.get("evicted", []))})
    except CostsError as exc:
        return fail(str(exc))
    print(json.dumps(summary))
    return 1 if summary.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
