"""Loads and checks the evaluation CSVs into one dense in-memory data set (a `Dataset`).

One job: views.csv (`date,video_id,region,views`) and videos.csv
(`video_id,upload_date,language,category,channel_id,size_bytes`) -> `Dataset`, a dense
(video x region x day) view array plus per-video metadata. Anything malformed raises
`DataError` with a one-line message naming the file and line, never a traceback.

Defaults for empty metadata fields (documented in docs/placement.md):
  upload_date  -> the video's first day with views ("imputed"); such a video becomes known
                  to the planner only the morning AFTER that day (knowing it exists on its
                  first day would leak that day's views)
  language     -> "und", category -> "unknown", channel_id -> none (no channel history)
  size_bytes   -> CostModel.default_video_size_bytes (768 MB)
Duplicate (date, video, region) rows are summed. Days with no rows count as zero views.
"""
from __future__ import annotations

import csv
import datetime as dt
import pathlib
import re

import numpy as np

from placement_svc.model.costs import DEFAULT_VIDEO_SIZE_BYTES
from placement_svc.model.dataset import Dataset

VIEW_COLUMNS = ("date", "video_id", "region", "views")
VIDEO_COLUMNS = ("video_id", "upload_date", "language", "category", "channel_id", "size_bytes")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class DataError(ValueError):
    """Malformed input data; the message is one line meant for the user."""


def parse_date(text: str, where: str) -> dt.date:
    if not _DATE_RE.match(text):
        raise DataError(f"{where}: bad date {text!r} (want YYYY-MM-DD)")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise DataError(f"{where}: bad date {text!r} (want YYYY-MM-DD)") from None


def _open_csv(path: pathlib.Path, required: tuple[str, ...], what: str):
    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        fh.close()
        raise DataError(f"{what} file {path} is empty (want a header: {','.join(required)})") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        fh.close()
        raise DataError(f"{what} file {path}: unreadable header: {exc}") from None
    header = [h.strip().lstrip("\ufeff") for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        fh.close()
        raise DataError(f"{what} file {path} lacks column(s) {','.join(missing)} (header: {','.join(header)})")
    return fh, reader, [header.index(c) for c in required]


def _read_views(path: pathlib.Path):
    fh, reader, idx = _open_csv(path, VIEW_COLUMNS, "views")
    i_date, i_vid, i_reg, i_views = idx
    need = max(idx) + 1
    dates, vids, regs, vals = [], [], [], []
    try:
        with fh:
            for lineno, row in enumerate(reader, start=2):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) < need:
                    raise DataError(f"{path}:{lineno}: expected {len(VIEW_COLUMNS)} fields, got {len(row)}")
                dates.append(row[i_date].strip())
                vids.append(row[i_vid].strip())
                regs.append(row[i_reg].strip())
                vals.append(row[i_views].strip())
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable CSV near line {reader.line_num}: {exc}") from None
    if not dates:
        raise DataError(f"views file {path} has no rows")
    # Vectorised checks; on failure, find the first bad line for the message.
    try:
        v = np.array(vals, dtype=np.float64)
        bad = ~np.isfinite(v) | (v < 0)
    except ValueError:
        v, bad = None, None
    if v is None or bad.any():
        for k, s in enumerate(vals):
            try:
                x = float(s)
            except ValueError:
                raise DataError(f"{path}:{k + 2}: views {s!r} is not a number") from None
            if not np.isfinite(x) or x < 0:
                raise DataError(f"{path}:{k + 2}: views must be a non-negative number, got {s!r}")
    for k, (a, b) in enumerate(zip(vids, regs)):
        if not a or not b:
            raise DataError(f"{path}:{k + 2}: empty {'video_id' if not a else 'region'}")
    uniq, inv = np.unique(np.array(dates), return_inverse=True)
    parsed = []
    for u in uniq:
        k = int(np.argmax(np.array(dates) == u)) if not _DATE_RE.match(u) else 0
        parsed.append(parse_date(str(u), f"{path}:{k + 2}"))
    return parsed, inv, vids, regs, v


def _read_videos(path: pathlib.Path, default_size: float):
    fh, reader, idx = _open_csv(path, VIDEO_COLUMNS, "videos")
    need = max(idx) + 1
    out = {}
    try:
        with fh:
            for lineno, row in enumerate(reader, start=2):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) < need:
                    raise DataError(f"{path}:{lineno}: expected {len(VIDEO_COLUMNS)} fields, got {len(row)}")
                vid, up, lang, cat, chan, size = (row[i].strip() for i in idx)
                if not vid:
                    raise DataError(f"{path}:{lineno}: empty video_id")
                upload = parse_date(up, f"{path}:{lineno}") if up else None
                if size:
                    try:
                        s = float(size)
                    except ValueError:
                        raise DataError(f"{path}:{lineno}: size_bytes {size!r} is not a number") from None
                    if not np.isfinite(s) or s <= 0:
                        raise DataError(f"{path}:{lineno}: size_bytes must be positive, got {size!r}")
                else:
                    s = default_size
                out[vid] = (upload, lang or "und", cat or "unknown", chan, s)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable CSV near line {reader.line_num}: {exc}") from None
    return out


def load_dataset(views_path, videos_path=None, default_size_bytes: float = DEFAULT_VIDEO_SIZE_BYTES,
                 last_day: dt.date | None = None) -> Dataset:
    """Read and check both files. `last_day` extends the day range (days without rows = 0 views)."""
    parsed, date_inv, vids, regs, vals = _read_views(pathlib.Path(views_path))
    meta = _read_videos(pathlib.Path(videos_path), default_size_bytes) if videos_path else {}
    first = min(parsed)
    last = max(max(parsed), last_day) if last_day else max(parsed)
    n_days = (last - first).days + 1
    dates = [first + dt.timedelta(days=i) for i in range(n_days)]
    day_of_uniq = np.array([(d - first).days for d in parsed], dtype=np.int64)
    day = day_of_uniq[date_inv]

    video_ids = list(meta)
    seen = set(video_ids)
    for v in vids:
        if v not in seen:
            seen.add(v)
            video_ids.append(v)
    vindex = {v: i for i, v in enumerate(video_ids)}
    regions = sorted(set(regs))
    rindex = {r: i for i, r in enumerate(regions)}
    vi = np.fromiter((vindex[v] for v in vids), dtype=np.int64, count=len(vids))
    ri = np.fromiter((rindex[r] for r in regs), dtype=np.int64, count=len(regs))
    n_v, n_r = len(video_ids), len(regions)
    flat = np.zeros(n_v * n_r * n_days, dtype=np.float64)
    np.add.at(flat, (vi * n_r + ri) * n_days + day, vals)  # duplicates are summed
    views = flat.reshape(n_v, n_r, n_days).astype(np.float32)

    any_views = views.sum(1) > 0
    first_seen = np.where(any_views.any(1), any_views.argmax(1), n_days).astype(np.int64)
    upload_day = first_seen.copy()
    upload_known = np.zeros(n_v, dtype=bool)
    language = np.full(n_v, "und", dtype=object)
    category = np.full(n_v, "unknown", dtype=object)
    channel = np.full(n_v, -1, dtype=np.int64)
    size = np.full(n_v, float(default_size_bytes))
    channel_ids: list[str] = []
    cindex: dict[str, int] = {}
    for v, (up, lang, cat, chan, s) in meta.items():
        i = vindex[v]
        if up is not None:
            upload_day[i] = (up - first).days
            upload_known[i] = True
        language[i], category[i], size[i] = lang, cat, s
        if chan:
            if chan not in cindex:
                cindex[chan] = len(channel_ids)
                channel_ids.append(chan)
            channel[i] = cindex[chan]
    return Dataset(dates=dates, regions=regions, video_ids=video_ids, views=views, upload_day=upload_day,
                   upload_known=upload_known, first_seen=first_seen, language=language.astype(str),
                   category=category.astype(str), channel=channel, channel_ids=channel_ids, size_bytes=size)
