"""`longtail placement run [--date D]`: the daily placement job.

  longtail placement run [--date YYYY-MM-DD] [--config FILE] [--data-dir DIR] [--metadata HOST:PORT]
                         [--costs FILE] [--min-train-days N] [--no-train] [--max-rows N]
                         [--shards N] [--dry-run]

On the morning of day D (default: today, UTC) it
  0. prices QoE: the player-measured penalty (`longtail placement qoe`) in each region with
     placement.qoe_min_playbacks playbacks on origin and on the edge, the configured one
     elsewhere;
  1. reads the catalogue of READY videos, their current placements and the daily view
     counts of the days before D (the ViewCountStore that placement's `views` consumer
     fills), as arrays, per shard (`daily_shard`: videos split by a hash of their id);
  2. trains the model on that history (MLP vs GBM, the cheaper on validation days wins;
     whole channels of at most about TRAIN_SAMPLE_VIDEOS videos) and saves it for cold
     start, when there are at least --min-train-days days of history; otherwise it loads
     the latest saved model; without one it falls back to a break-even rule on
     yesterday's views (push if yesterday's views, kept up for the model's horizon, repay
     the fill; keep while a day's views repay the storage);
  3. scores every READY video x configured region (each shard its videos, with the
     catalogue-wide channel history) and, per video whose decision changed, pushes the
     renditions to the new regions' edges FIRST, then writes the decision into the
     metadata (UpdateVideo, field mask "placements", etag-checked), then evicts the regions
     it left. A cdn URL therefore never points at missing bytes. With it goes the on-day
     moment: each pair left on origin gets `fill_on_first_request` from the model's learned
     admission rule (the rule's: its last week repays a fill), so the gateway's first
     request of the pair that day has placement_svc fill it through the edge (`fills`);
  4. asks the transcoder for the `transcoder.popular_codecs` (AV1) of every video whose
     predicted views for the day, over all regions, reach `transcoder.popular_min_daily_views`
     and that lacks them (a codec upgrade on the transcode topic).
With --shards N the shards run as N processes and decide exactly what one process would.
With --dry-run the trained model is not saved, step 3 stops after scoring and step 4 is
skipped: the summary says how many pushes and evictions the day would make. Prints one JSON
summary. Exit code 2 with one line on stderr for bad input.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("placement_svc.daily")
DEFAULT_MIN_TRAIN_DAYS = 14
# Training reads whole channels up to about this many videos (a sample past that: 400k
# training rows come from a small part of a large catalogue anyway).
TRAIN_SAMPLE_VIDEOS = 50_000


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
    p.add_argument("--shards", type=int, default=1,
                   help="split the catalogue by video-id hash into N shards, each in its own process (default 1)")
    p.add_argument("--dry-run", action="store_true",
                   help="decide and report what would change; push, write and evict nothing")
    p.add_argument("--json", action="store_true", help="(the summary is always JSON)")
    return p


# ------------------------------------------------------------------------------ model
def choose_model(ds, costs, objects, day_index: int, args, out: dict, vocab=None, channel_table=None):
    """Train (enough history), else the latest saved model, else None (rule).

    `vocab` (default: fitted on `ds`) and `channel_table` (the catalogue-wide channel
    history cold start reads; default: `ds`'s) let `ds` be a sample of the catalogue."""
    from placement_svc import modelstore
    from placement_svc.model.costs import Pricer
    from placement_svc.model.features import History, Vocab
    from placement_svc.model.learned import TrainConfig, train
    from placement_svc.model.tuning import ReplayContext, make_tune_replay

    train_end = day_index - 1
    history_days = day_index
    has_views = bool(ds.views[:, :, :day_index].sum() > 0)
    if not args.no_train and history_days >= max(args.min_train_days, 8) and has_views and len(ds.video_ids) > 0:
        vocab = vocab or Vocab.fit(ds, train_end)
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
            if channel_table is not None:
                model.channel_table = channel_table
            if not getattr(args, "dry_run", False):
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
    return None, History(ds, vocab or Vocab.fit(ds, train_end))


def decide(ds, hist, model, costs, day_index: int, at_edge: np.ndarray, channel_table=None):
    """Both moments of day `day_index`: (push mask over (video, region), admit mask (pairs
    not pushed whose first request of the day fills the edge), predicted views, policy
    name). `channel_table`: the catalogue-wide channel history when `ds` is a part of it."""
    from placement_svc.model.learned import HORIZON, decision_thresholds

    n_v, n_r = len(ds.video_ids), len(ds.regions)
    push = np.zeros((n_v, n_r), dtype=bool)
    admit = np.zeros((n_v, n_r), dtype=bool)
    predicted = np.zeros((n_v, n_r))
    if n_v == 0:
        return push, admit, predicted, "none"
    if model is not None:
        b = hist.batch(day_index, ch=channel_table)
        exp = model.expected_views(b)
        rows = model.decide_rows(b, exp, at_edge[b.vid, b.reg])
        predicted[b.vid, b.reg] = exp[:, 0]
        push[b.vid[rows], b.reg[rows]] = True
        if model.admits():  # the learned admission rule, on the rows the morning left on origin
            rest = b.take(~rows)
            fill = model.admit_rows(rest, model.expected_views_if_requested(rest))
            admit[rest.vid[fill], rest.reg[fill]] = True
        return push, admit, predicted, f"model-{model.family}"
    keep_t, fill_t = decision_thresholds(costs, list(ds.regions), 1.0, 1.0, HORIZON)
    y1 = hist.window(day_index, 1)
    rule = np.where(at_edge, y1 > keep_t[None, :], y1 * HORIZON > fill_t[None, :])
    known = np.zeros(n_v, dtype=bool)
    known[hist.candidates(day_index)] = True
    push = rule & known[:, None]
    # The rule's on-day step: a first request fills when the pair's views of the last week,
    # at their daily average, would repay the fill over the horizon.
    admit = ~push & known[:, None] & (hist.window(day_index, 7) / 7.0 * HORIZON > fill_t[None, :])
    return push, admit, y1.astype(np.float64), "rule-yesterday"


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
def _placements(regions, push_row, admit_row, pred_row, policy, now):
    from longtail.metadata.v1 import video_pb2

    return [video_pb2.PlacementDecision(
        region=r, served_from=video_pb2.SERVED_FROM_CDN if p else video_pb2.SERVED_FROM_ORIGIN,
        fill_on_first_request=bool(a and not p), policy=policy, predicted_views=float(v), decide_time=now)
        for r, p, a, v in zip(regions, push_row, admit_row, pred_row)]


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


def apply_decisions(objects, metadata, video_ids: list[str], regions: list[str], at_edge: np.ndarray,
                    push: np.ndarray, predicted: np.ndarray, policy: str, admit: np.ndarray | None = None,
                    admitted: np.ndarray | None = None) -> AppliedChanges:
    """Per video whose decision changed (where it is served, or its first-request fill bit:
    `admit` today's, `admitted` the one in force): push to the new regions' edges first,
    then write the decision, then evict the regions it left, so a cdn URL never points at
    missing bytes. Only the changed videos' metadata is read (again, for a fresh etag)."""
    from google.protobuf.timestamp_pb2 import Timestamp

    from longtail.metadata.v1 import video_pb2
    from placement_svc import edge
    from placement_svc.daily_shard import get_videos

    now = Timestamp()
    now.GetCurrentTime()
    rindex = {r: i for i, r in enumerate(regions)}
    done = AppliedChanges()
    admit = np.zeros_like(push) if admit is None else admit & ~push
    admitted = np.zeros_like(push) if admitted is None else admitted
    changed = np.nonzero(((push != at_edge) | (admit != admitted)).any(1))[0]
    done.unchanged = len(video_ids) - len(changed)
    for s in range(0, len(changed), 1000):
        rows = changed[s:s + 1000]
        videos = get_videos(metadata, [video_ids[i] for i in rows])
        for i in rows:
            vid = video_ids[i]
            want = push[i].copy()
            new = [r for j, r in enumerate(regions) if want[j] and not at_edge[i, j]]
            gone = [r for j, r in enumerate(regions) if at_edge[i, j] and not want[j]]
            if vid not in videos:  # deleted since the catalogue was read
                done.errors.append(f"video {vid} is gone")
                continue
            for r in new:  # bytes first
                try:
                    edge.push(objects, vid, r)
                    done.pushed.append([vid, r])
                except Exception as exc:  # noqa: BLE001 - this pair stays on origin today
                    want[rindex[r]] = False
                    done.errors.append(f"push {vid} to {r}: {exc}")
            placements = _placements(regions, want, admit[i], predicted[i], policy, now)
            write_placements(metadata, videos[vid], placements)
            for p in placements:
                if p.region in new or p.region in gone:
                    key = (p.region, "cdn" if p.served_from == video_pb2.SERVED_FROM_CDN else "origin")
                    done.changes[key] = done.changes.get(key, 0) + 1
            for r in gone:  # the decision no longer points there: now the bytes may go
                edge.evict(objects, vid, r)
                done.evicted.append([vid, r])
    return done


# ------------------------------------------------------------------------------ the run
def open_shards(cfg, day: dt.date, args, default_size: float) -> list:
    """The shards of the run: in this process for one, else one process each."""
    from placement_svc.daily_shard import LocalShard, ShardProcess

    kind = LocalShard if args.shards == 1 else ShardProcess
    return [kind(cfg, day, k, args.shards, args.metadata, default_size) for k in range(args.shards)]


def call_all(shards: list, method: str, *per_shard_args) -> list:
    """Calls `method` on every shard at once and waits for all; per_shard_args[k] are shard k's."""
    for k, shard in enumerate(shards):
        shard.send(method, *(per_shard_args[k] if per_shard_args else ()))
    return [shard.receive() for shard in shards]


def vocab_from_counts(languages, categories, regions: list[str]):
    """Vocab.fit's result from the catalogue-wide counts (the top values, ties by name)."""
    from placement_svc.model.features import MAX_CATS, MAX_LANGS, Vocab

    def top(counts, k):
        return [v for v, _ in sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))[:k]]
    return Vocab(languages=top(languages, MAX_LANGS), categories=top(categories, MAX_CATS), regions=list(regions))


def plan_model(shards: list, infos: list, cfg, day: dt.date, costs, objects, args, out: dict):
    """Merges what the shards loaded, trains or loads the model; returns (model, vocab, the
    catalogue-wide channel table of the day)."""
    from functools import reduce

    from placement_svc.daily_shard import concat_datasets

    regions = list(cfg.platform.regions)
    firsts = [i.first_view_day for i in infos if i.first_view_day is not None]
    first = min([day - dt.timedelta(days=1), *firsts])
    channel_ids = sorted(set().union(*(i.channel_ids for i in infos)))
    n_videos = sum(i.videos for i in infos)
    rate = min(1.0, TRAIN_SAMPLE_VIDEOS / max(n_videos, 1))
    prepared = call_all(shards, "prepare", *[(first, channel_ids, rate)] * len(shards))
    sums = [p[0] for p in prepared]
    table = reduce(lambda a, b: a + b, sums).table()
    sample = concat_datasets([p[1] for p in prepared])
    vocab = vocab_from_counts(sum((i.languages for i in infos), start=Counter()),
                              sum((i.categories for i in infos), start=Counter()), regions)
    model, hist = choose_model(sample, costs, objects, sample.n_days - 1, args, out, vocab, table)
    out["training_sample_videos"] = len(sample.video_ids)
    return model, hist.vocab, table


def costs_with_measured_qoe(cfg, costs, day: dt.date, regions: list[str]):
    """The prices with the player-measured QoE penalty in the regions with enough playbacks
    (placement_svc.qoe_report), and per region which penalty ($/GB) is used and why."""
    from longtail_common.adapters import make_view_count_store
    from placement_svc.qoe_report import measured_costs

    store = make_view_count_store(cfg)
    try:
        costs, source, penalties = measured_costs(cfg, costs, store, day, regions)
    finally:
        store.close()
    return costs, {r: {"used": source[r], "per_gb": costs.prices(r).qoe_penalty_per_gb,
                       "origin_playbacks": penalties[r].origin_playbacks,
                       "edge_playbacks": penalties[r].edge_playbacks} for r in regions}


def run(cfg, day: dt.date, args) -> dict:
    """Decides and applies the placement of `day` (steps 1-4 above); returns the JSON summary."""
    from longtail_common.adapters import make_object_store
    from placement_svc import metrics as placement_metrics
    from placement_svc.model.costs import CostModel, load_costs

    t0 = time.perf_counter()
    costs = load_costs(args.costs) if args.costs else CostModel()
    regions = list(cfg.platform.regions)
    objects = make_object_store(cfg)
    out: dict = {"date": day.isoformat(), "regions": regions, "shards": args.shards}
    costs, out["qoe_penalty"] = costs_with_measured_qoe(cfg, costs, day, regions)
    shards = open_shards(cfg, day, args, costs.default_video_size_bytes)
    try:
        infos = call_all(shards, "load")
        out["timings_s"] = {"load": round(time.perf_counter() - t0, 2)}
        model, vocab, table = plan_model(shards, infos, cfg, day, costs, objects, args, out)
        out["timings_s"]["model"] = round(time.perf_counter() - t0 - out["timings_s"]["load"], 2)
        t1 = time.perf_counter()
        parts = call_all(shards, "plan_and_apply", *[(model, vocab, table, costs, args.dry_run)] * len(shards))
        out["timings_s"]["plan_and_apply"] = round(time.perf_counter() - t1, 2)
    finally:
        for shard in shards:
            shard.close()
    n_videos = sum(p["videos"] for p in parts)
    on_cdn = dict(zip(regions, np.sum([p["on_cdn"] for p in parts], axis=0).tolist()))
    out.update({"policy": "none" if not n_videos else f"model-{model.family}" if model else "rule-yesterday",
                "videos": n_videos, "pairs_scored": n_videos * len(regions), "on_cdn": int(sum(on_cdn.values())),
                "fill_on_request": int(sum(sum(p.get("fill_on_request", [])) for p in parts))})
    if args.dry_run:
        out.update({k: sum(p[k] for p in parts)
                    for k in ("would_push", "would_evict", "would_change_admission", "changed_videos")})
    else:
        changes = Counter()
        for p in parts:
            changes.update({(r, s): n for r, s, n in p["changes"]})
        placement_metrics.write_daily_summary(objects, day.isoformat(), regions, n_videos, on_cdn, dict(changes))
        rindex = {r: i for i, r in enumerate(regions)}
        for key in ("pushed", "evicted", "codec_upgrades", "errors"):
            out[key] = sorted((x for p in parts for x in p[key]),
                              key=lambda x: (x[0], rindex.get(x[1], -1)) if isinstance(x, list) else (x, 0))
        out["unchanged_videos"] = sum(p["unchanged"] for p in parts)
    out["total_seconds"] = round(time.perf_counter() - t0, 3)
    return out


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
    from longtail_common.ports import VIEW_BUCKETS
    from placement_svc.model.costs import CostsError

    try:
        day = dt.date.fromisoformat(args.date) if args.date else dt.datetime.now(dt.timezone.utc).date()
    except ValueError:
        return fail(f"bad --date {args.date!r} (want YYYY-MM-DD)")
    if args.min_train_days < 1:
        return fail("--min-train-days must be at least 1")
    if not 1 <= args.shards <= VIEW_BUCKETS:
        return fail(f"--shards must be between 1 and {VIEW_BUCKETS}")
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
    from placement_svc.daily_shard import configure_identity

    configure_identity(cfg)
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
