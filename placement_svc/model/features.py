"""Feature assembly: what the planner knows on the morning of day d, as numpy arrays.

One job: for day d, build one row per (known video, region) from views strictly BEFORE d
(plus static metadata), vectorised. `History` precomputes prefix sums once; every read for
day d goes through `prefix(d)`-style slices that only touch days < d, which is what makes
the replay leakage-free (tests/test_placement_leakage.py checks it by mutating later days).

Numeric features (log1p of counts unless said otherwise):
  r_l1, r_l3, r_l7, r_l28, r_lall   views in this region over the last 1/3/7/28 days, all history
  o_l1, o_l7                         views in the OTHER regions, last 1/7 days
  rec_r, rec_any                     log1p(days since the last view here / anywhere), capped
  age_log, upload_imputed            log1p(days since upload); 1 if the upload date was imputed
  ch_mean0, ch_lmean0, ch_avg7,      channel history: mean (and mean of log1p) first-day views of
  ch_n, ch_known                     its earlier videos here, mean daily views per video here (7 days),
                                     log1p(#videos), 1 if the video has a channel
  ch_age_adj                         channel quality from ALL its older videos: mean over them of
                                     log1p(views so far) minus the catalogue's mean for videos
                                     of the same age (so a channel of old videos is not mistaken
                                     for a weak one); what cold start leans on when the channel
                                     uploaded nothing inside the view history
Categorical inputs (one-hot for the MLP, native categories for the GBM):
  lr     language x region (how language-region affinity is LEARNED, not hard-coded)
  cat    category;  age_b  age bucket (timeliness);  dow  weekday of day d;  reg  region
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement_svc.model.dataset import Dataset

NUMERIC = ("r_l1", "r_l3", "r_l7", "r_l28", "r_lall", "o_l1", "o_l7", "rec_r", "rec_any", "age_log",
           "upload_imputed", "ch_mean0", "ch_lmean0", "ch_avg7", "ch_n", "ch_known", "ch_age_adj")
AGE_EDGES = np.array([1, 2, 3, 4, 8, 15, 31, 91])  # buckets: 0,1,2,3,4-7,8-14,15-30,31-90,91+
N_AGE = len(AGE_EDGES) + 1
REC_CAP = 90
MAX_LANGS = 12
MAX_CATS = 24


@dataclass
class Vocab:
    """Category vocabularies (fitted on metadata of videos known by the end of training)."""

    languages: list[str]
    categories: list[str]
    regions: list[str]

    @property
    def n_lang(self) -> int:
        return len(self.languages) + 1  # + "other"

    @property
    def n_cat(self) -> int:
        return len(self.categories) + 1

    @property
    def n_reg(self) -> int:
        return len(self.regions)

    def lang_code(self, langs: np.ndarray) -> np.ndarray:
        m = {x: i for i, x in enumerate(self.languages)}
        return np.array([m.get(x, len(self.languages)) for x in langs], dtype=np.int64)

    def cat_code(self, cats: np.ndarray) -> np.ndarray:
        m = {x: i for i, x in enumerate(self.categories)}
        return np.array([m.get(x, len(self.categories)) for x in cats], dtype=np.int64)

    @classmethod
    def fit(cls, ds: Dataset, until_day: int) -> "Vocab":
        known = ds.known_from <= until_day
        def top(values: np.ndarray, k: int) -> list[str]:
            u, c = np.unique(values[known], return_counts=True)
            order = np.argsort(-c, kind="stable")
            return [str(u[i]) for i in order[:k]]
        return cls(languages=top(ds.language, MAX_LANGS), categories=top(ds.category, MAX_CATS),
                   regions=list(ds.regions))


@dataclass
class Batch:
    """Rows for one day: row i is (video vid[i], region reg[i])."""

    day: int
    vid: np.ndarray
    reg: np.ndarray
    num: np.ndarray  # (n, len(NUMERIC)) float32
    lr: np.ndarray  # language x region code
    cat: np.ndarray
    age_b: np.ndarray
    dow: int

    def __len__(self) -> int:
        return len(self.vid)

    def take(self, idx: np.ndarray) -> "Batch":
        """The rows at `idx` (indices or a boolean mask), same day."""
        return Batch(day=self.day, vid=self.vid[idx], reg=self.reg[idx], num=self.num[idx], lr=self.lr[idx],
                     cat=self.cat[idx], age_b=self.age_b[idx], dow=self.dow)

    @staticmethod
    def concat(day: int, dow: int, parts: list["Batch"]) -> "Batch":
        """Rows of several batches of the same day, in order."""
        cols = {f: np.concatenate([getattr(p, f) for p in parts]) for f in ("vid", "reg", "num", "lr", "cat", "age_b")}
        return Batch(day=day, dow=dow, **cols)


def age_bucket(age: np.ndarray) -> np.ndarray:
    return np.searchsorted(AGE_EDGES, age, side="right")


@dataclass
class ChannelTable:
    """Channel history as known on one morning (used for cold start)."""

    mean0: np.ndarray  # (n_channels, n_regions) mean first-day views of earlier videos
    lmean0: np.ndarray  # (n_channels, n_regions) mean log1p first-day views (lognormal-robust)
    avg7: np.ndarray  # (n_channels, n_regions) mean daily views per video, last 7 days
    n: np.ndarray  # (n_channels,) videos known
    age_adj: np.ndarray  # (n_channels,) mean age-adjusted log1p(views so far), shrunk to 0


AGE_BINS = 64  # half-octave age bins of the channel quality profile (ages < 2^32 days)
_FIXED_ONE = 2.0 ** 32  # log-views are summed in fixed point: the same sum in any order (shards)


def _fixed(x: np.ndarray) -> np.ndarray:
    return np.rint(x * _FIXED_ONE).astype(np.int64)


@dataclass
class ChannelSums:
    """The channel history of one morning as sums over videos (channel-indexed as the data
    set's `channel`): the sums of disjoint sets of videos (shards of the catalogue) add up
    to the sums of their union, exactly, so a split job computes the same table."""

    s7: np.ndarray  # (n_channels, n_regions) views over the last 7 days, videos known by then
    n: np.ndarray  # (n_channels,) videos known
    day0_sum: np.ndarray  # (n_channels, n_regions) first-day views of videos uploaded before d
    day0_lsum: np.ndarray  # (n_channels, n_regions) their log1p, fixed point
    day0_n: np.ndarray  # (n_channels,) how many
    lv: np.ndarray  # (n_channels,) sum of log1p(views so far) of videos a week old or more, fixed point
    ch_bin_n: np.ndarray  # (n_channels, AGE_BINS) those videos per age bin
    bin_lv: np.ndarray  # (AGE_BINS,) the catalogue's sum of log1p(views so far) per age bin, fixed point
    bin_n: np.ndarray  # (AGE_BINS,) videos per age bin

    @classmethod
    def zeros(cls, n_ch: int, n_r: int) -> "ChannelSums":
        i = np.int64
        return cls(s7=np.zeros((n_ch, n_r)), n=np.zeros(n_ch, i), day0_sum=np.zeros((n_ch, n_r)),
                   day0_lsum=np.zeros((n_ch, n_r), i), day0_n=np.zeros(n_ch, i), lv=np.zeros(n_ch, i),
                   ch_bin_n=np.zeros((n_ch, AGE_BINS), i), bin_lv=np.zeros(AGE_BINS, i), bin_n=np.zeros(AGE_BINS, i))

    def __add__(self, other: "ChannelSums") -> "ChannelSums":
        return ChannelSums(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__})

    def table(self) -> ChannelTable:
        c0 = np.maximum(self.day0_n, 1).astype(np.float64)
        prof = self.bin_lv / _FIXED_ONE / np.maximum(self.bin_n, 1)
        adj_n = self.ch_bin_n.sum(1)
        adj_sum = self.lv / _FIXED_ONE - self.ch_bin_n @ prof
        return ChannelTable(
            mean0=self.day0_sum / c0[:, None], lmean0=self.day0_lsum / _FIXED_ONE / c0[:, None],
            avg7=self.s7 / np.maximum(self.n, 1.0)[:, None] / 7.0, n=self.n.astype(np.float64),
            age_adj=adj_sum / (adj_n + 1.0))  # shrunk towards 0 (the average channel) when few videos


class History:
    """Prefix sums over the view array so that any day's windows cost O(rows)."""

    def __init__(self, ds: Dataset, vocab: Vocab):
        self.ds, self.vocab = ds, vocab
        v = ds.views.astype(np.float64)
        n_v, n_r, n_d = v.shape
        self.cs = np.zeros((n_v, n_r, n_d + 1))
        np.cumsum(v, axis=2, out=self.cs[:, :, 1:])  # cs[..., t] = views on days < t
        self.cs_all = self.cs.sum(1)
        # last[..., t] = last day < t with views (-1 if none); built day by day, no look-ahead.
        self.last = np.full((n_v, n_r, n_d + 1), -1, dtype=np.int32)
        self.last_any = np.full((n_v, n_d + 1), -1, dtype=np.int32)
        for t in range(1, n_d + 1):
            pos = v[:, :, t - 1] > 0
            self.last[:, :, t] = np.where(pos, t - 1, self.last[:, :, t - 1])
            self.last_any[:, t] = np.where(pos.any(1), t - 1, self.last_any[:, t - 1])
        self.lang = vocab.lang_code(ds.language)
        self.cat = vocab.cat_code(ds.category)
        self.known_from = ds.known_from
        self.n_ch = max(len(ds.channel_ids), 1)
        self._channel_tables: dict[int, ChannelTable] = {}  # per morning: the morning and on-day rows share it

    def window(self, d: int, w: int) -> np.ndarray:
        """Views per (video, region) over days [d-w, d-1]."""
        return self.cs[:, :, d] - self.cs[:, :, max(d - w, 0)]

    def channel_table(self, d: int) -> ChannelTable:
        """Channel history from days < d only."""
        if d not in self._channel_tables:
            self._channel_tables[d] = self.channel_sums(d).table()
        return self._channel_tables[d]

    def channel_sums(self, d: int) -> "ChannelSums":
        """This data set's share of the channel history of day d (days < d only)."""
        ds = self.ds
        n_v, n_r, n_d = ds.views.shape
        t = min(d, n_d)
        has = (ds.channel >= 0) & (self.known_from <= d)
        sums = ChannelSums.zeros(self.n_ch, n_r)
        np.add.at(sums.s7, ds.channel[has], self.window(d, 7)[has])
        np.add.at(sums.n, ds.channel[has], 1)
        # First-day views of each video: it joins its channel's history the day after its upload.
        up = ds.upload_day
        first = np.nonzero((up >= 0) & (up < t) & (ds.channel >= 0))[0]
        day0 = ds.views[first, :, up[first]].astype(np.float64)
        np.add.at(sums.day0_sum, ds.channel[first], day0)
        np.add.at(sums.day0_lsum, ds.channel[first], _fixed(np.log1p(day0)))
        np.add.at(sums.day0_n, ds.channel[first], 1)
        # Age-adjusted quality: each video's log1p(views before d, all regions) against the
        # mean for its age (log2-spaced bins), from videos at least a week old.
        age = d - ds.upload_day
        full = np.nonzero(has & (age >= 7))[0]
        lv = _fixed(np.log1p(self.cs_all[full, t]))  # every view before d: 7 days are mostly zeros in the tail
        abin = np.floor(np.log2(np.maximum(age[full], 1)) * 2).astype(np.int64)
        np.add.at(sums.bin_lv, abin, lv)
        np.add.at(sums.bin_n, abin, 1)
        np.add.at(sums.lv, ds.channel[full], lv)
        np.add.at(sums.ch_bin_n, (ds.channel[full], abin), 1)
        return sums

    def candidates(self, d: int) -> np.ndarray:
        """Videos a morning decision for day d may cover (catalogue known by then)."""
        return np.nonzero(self.known_from <= d)[0]

    def batch(self, d: int, vids: np.ndarray | None = None, ch: ChannelTable | None = None) -> Batch:
        ds = self.ds
        if vids is None:
            vids = self.candidates(d)
        n_r = len(ds.regions)
        if ch is None:
            ch = self.channel_table(d)
        cs_d = self.cs[vids, :, d]

        def win(w: int) -> np.ndarray:
            return cs_d - self.cs[vids, :, max(d - w, 0)]

        w1, w7 = win(1), win(7)
        tot1 = w1.sum(1, keepdims=True)
        tot7 = w7.sum(1, keepdims=True)
        last = self.last[vids, :, d]
        rec_r = np.where(last >= 0, np.minimum(d - last, REC_CAP), REC_CAP)
        la = self.last_any[vids, d][:, None]
        rec_any = np.broadcast_to(np.where(la >= 0, np.minimum(d - la, REC_CAP), REC_CAP), (len(vids), n_r))
        age = np.maximum(d - ds.upload_day[vids], 0)
        chan = ds.channel[vids]
        has_ch = chan >= 0
        cidx = np.where(has_ch, chan, 0)
        mean0 = np.where(has_ch[:, None], ch.mean0[cidx], 0.0)
        lmean0 = np.where(has_ch[:, None], ch.lmean0[cidx], 0.0)
        avg7 = np.where(has_ch[:, None], ch.avg7[cidx], 0.0)
        chn = np.where(has_ch, ch.n[cidx], 0.0)
        age_adj = np.where(has_ch, ch.age_adj[cidx], 0.0)
        cols = [
            np.log1p(w1), np.log1p(win(3)), np.log1p(w7), np.log1p(win(28)), np.log1p(cs_d),
            np.log1p(np.maximum(tot1 - w1, 0)), np.log1p(np.maximum(tot7 - w7, 0)),
            np.log1p(rec_r), np.log1p(rec_any),
            np.broadcast_to(np.log1p(age)[:, None], w1.shape),
            np.broadcast_to((~ds.upload_known[vids]).astype(np.float64)[:, None], w1.shape),
            np.log1p(mean0), lmean0, np.log1p(avg7),
            np.broadcast_to(np.log1p(chn)[:, None], w1.shape),
            np.broadcast_to(has_ch.astype(np.float64)[:, None], w1.shape),
            np.broadcast_to(age_adj[:, None], w1.shape),
        ]
        num = np.empty((len(vids), n_r, len(cols)), dtype=np.float32)
        for j, c in enumerate(cols):
            num[:, :, j] = c
        reg = np.tile(np.arange(n_r), len(vids))
        vid = np.repeat(vids, n_r)
        lang = np.repeat(self.lang[vids], n_r)
        return Batch(day=d, vid=vid, reg=reg, num=num.reshape(-1, len(cols)), lr=lang * n_r + reg,
                     cat=np.repeat(self.cat[vids], n_r), age_b=np.repeat(age_bucket(age), n_r),
                     dow=ds.weekday(d))


def first_request_batch(hist: History, morning: Batch, requested: np.ndarray, on_edge: np.ndarray) -> Batch:
    """Rows of the on-day decision for day `morning.day`: pairs requested that day and not on
    the edge after the morning plan. A known video's row is its morning row; a video not yet
    known that morning (no upload date, first views today) gets a row built the same way from
    days before today (zero history, age 0). The fact of the request is the only thing about
    today in it: `requested` (videos x regions, bool) selects rows and is not a feature.

    What an edge would see at that first request: the video id, its region, and the
    per-pair admission bit the morning job published from these same features."""
    d = morning.day
    sel = requested[morning.vid, morning.reg] & ~on_edge[morning.vid, morning.reg]
    parts = [morning.take(sel)]
    new = np.nonzero((hist.known_from > d) & requested.any(1))[0]
    if len(new):
        nb = hist.batch(d, vids=new)
        parts.append(nb.take(requested[nb.vid, nb.reg] & ~on_edge[nb.vid, nb.reg]))
    return Batch.concat(d, morning.dow, parts)


def onehot_dense(b: Batch, vocab: Vocab, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Standardised numeric columns + one-hot groups (the MLP's input layout)."""
    n = len(b)
    n_lr = vocab.n_lang * vocab.n_reg
    widths = (n_lr, vocab.n_cat, N_AGE, 7)
    X = np.zeros((n, b.num.shape[1] + sum(widths)), dtype=np.float32)
    X[:, : b.num.shape[1]] = (b.num - mean) / std
    off = b.num.shape[1]
    rows = np.arange(n)
    for codes, w in zip((b.lr, b.cat, b.age_b, np.full(n, b.dow)), widths):
        X[rows, off + codes] = 1.0
        off += w
    return X


def gbm_matrix(b: Batch) -> np.ndarray:
    """Numeric columns + categorical codes as the last five columns (GBM input layout)."""
    n = len(b)
    return np.column_stack([b.num, b.lr, b.cat, b.age_b, np.full(n, b.dow), b.reg]).astype(np.float32)
