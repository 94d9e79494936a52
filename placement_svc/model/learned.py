"""The learned part: train the view predictors (MLP and GBM), calibrate, decide, score fast.

One job: from the training days, fit per family (sklearn MLPRegressor with two outputs, or
two HistGradientBoostingRegressors) two predictors of log1p(today's views) and log1p(views
over the next H days, today included) per video x region: `morning`, on every known pair's
morning features, and `admission`, on the pairs requested that day (the same features; the
request itself is the extra fact). Calibrate both into EXPECTED views (isotonic, on held-out
validation days: cost is linear in views, so the mean is what the decision needs), tune the
decision knobs for the given prices by replaying both moments on the validation days, and
keep the family that costs less there. `PlacementModel` then decides by expected cost, per
(v, r), with s = view_GB/size_GB * edge_saving[r] (size cancels):

  morning, at the edge:       keep iff gamma * E[today] * s > storage[r]
  morning, not at the edge:   push iff that, and gamma * E[next H] * s > alpha * fill[r] + H * storage[r]
  first request, not at edge: fill iff the same two tests hold for E[. | requested] with the
                              admission's own knobs (admit_alpha, admit_gamma; inf = never)

`FastMLP` is the scoring path: the sklearn weights in float32 numpy, the one-hot input
groups folded into one lookup table, so scoring is a gather + two small matmuls.
"""
from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.isotonic import IsotonicRegression
from sklearn.neural_network import MLPRegressor

from placement_svc.model.costs import CostModel
from placement_svc.model.features import (
    N_AGE, NUMERIC, Batch, ChannelTable, History, Vocab, age_bucket, first_request_batch, gbm_matrix, onehot_dense,
)

# inf: the morning keeps or evicts but never pushes a new pair (a first-request fill has
# the same cost and knows the pair is watched; tuning finds where the admission is good enough).
ALPHAS = (0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, np.inf)
GAMMAS = (0.7, 1.0, 1.4, 2.0)
ADMIT_ALPHAS = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, np.inf)  # inf: never fill on a first request
MAX_LOG = 30.0  # log1p(views) cap (~1e13 views) for calibration and extrapolation
HORIZON = 3  # days of the second target: a pushed video's stay is mostly its next few days


# ---------------------------------------------------------------- training rows
@dataclass
class Rows:
    num: np.ndarray
    lr: np.ndarray
    cat: np.ndarray
    age_b: np.ndarray
    dow: np.ndarray
    reg: np.ndarray
    y: np.ndarray  # today's views
    yh: np.ndarray  # views over the next HORIZON days (today included)
    w: np.ndarray  # sample weight (inverse sampling rate)

    def batch_like(self) -> Batch:
        return Batch(day=-1, vid=np.zeros(len(self.y), int), reg=self.reg, num=self.num, lr=self.lr,
                     cat=self.cat, age_b=self.age_b, dow=0)


def sample_rows(hist: History, days: list[int], max_rows: int, rng: np.random.Generator,
                horizon: int = HORIZON, first_requests: bool = False) -> Rows:
    """Rows of the given days with target = that day's views, down-sampled to ~max_rows.

    Morning rows (default): most are 'dead' (no views anywhere recently, none today): they
    are sampled at a lower rate and re-weighted, so the model still sees the base rate of
    the long tail. `first_requests`: the admission's rows instead, the pairs requested that
    day (`first_request_batch` with an empty edge), sampled uniformly."""
    per_day = max(max_rows // max(len(days), 1), 1)
    parts = []
    views = hist.ds.views
    n_v, n_r = views.shape[:2]
    i28, io7 = NUMERIC.index("r_l28"), NUMERIC.index("o_l7")
    for d in days:
        b = hist.batch(d)
        if first_requests:
            b = first_request_batch(hist, b, views[:, :, d] > 0, np.zeros((n_v, n_r), dtype=bool))
        y = views[b.vid, b.reg, d].astype(np.float64)
        yh = views[b.vid, b.reg, d:d + horizon].astype(np.float64).sum(1)
        # Rows of videos uploaded today or yesterday are all kept: they are few (a day's
        # uploads), cold start is where most of the cost is, and sampling them at the live
        # rate left the model a few dozen of them per day to learn it from.
        young = b.age_b <= 1
        live = ((y > 0) | (b.num[:, i28] > 0) | (b.num[:, io7] > 0)) & ~young
        dead = ~live & ~young
        w = np.ones(len(y))
        keep = young.copy()
        n_live, n_dead = int(live.sum()), int(dead.sum())
        cap_live = per_day if first_requests else int(per_day * 0.75)
        cap_dead = per_day - min(n_live, cap_live)
        for mask, n, cap in ((live, n_live, cap_live), (dead, n_dead, cap_dead)):
            if n == 0:
                continue
            rate = min(1.0, cap / n)
            pick = mask & (rng.random(len(y)) < rate)
            keep |= pick
            w[pick] = 1.0 / rate
        k = np.nonzero(keep)[0]
        parts.append(Rows(num=b.num[k], lr=b.lr[k], cat=b.cat[k], age_b=b.age_b[k], dow=np.full(len(k), b.dow),
                          reg=b.reg[k], y=y[k], yh=yh[k], w=w[k]))
    return Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in Rows.__dataclass_fields__))


def _dense(rows: Rows, vocab: Vocab, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    b = rows.batch_like()
    X = onehot_dense(b, vocab, mean, std)
    # onehot_dense put a single weekday in; redo the weekday block per row.
    off = X.shape[1] - 7
    X[:, off:] = 0.0
    X[np.arange(len(rows.y)), off + rows.dow] = 1.0
    return X


def _gbm_X(rows: Rows) -> np.ndarray:
    return np.column_stack([rows.num, rows.lr, rows.cat, rows.age_b, rows.dow, rows.reg]).astype(np.float32)


# ---------------------------------------------------------------- fast scoring
@dataclass
class FastMLP:
    """Float32 numpy forward pass of a fitted MLPRegressor (ReLU hidden layers).

    Layer 1 = num @ W_num + table[lr, cat, age_b] + dow_tab[dow]; standardisation and the
    one-hot groups are folded into W_num / the tables, so no one-hot matrix is built."""

    W_num: np.ndarray
    table: np.ndarray  # (n_lr * n_cat * N_AGE, h1), includes the layer-1 bias
    dow_tab: np.ndarray  # (7, h1)
    n_cat: int
    layers: list[tuple[np.ndarray, np.ndarray]]  # remaining (W, b); the last is the output

    @classmethod
    def from_sklearn(cls, mlp: MLPRegressor, vocab: Vocab, mean: np.ndarray, std: np.ndarray) -> "FastMLP":
        if mlp.activation != "relu":
            raise ValueError("FastMLP supports ReLU networks only")
        W1, b1 = mlp.coefs_[0].astype(np.float64), mlp.intercepts_[0].astype(np.float64)
        n_num = len(mean)
        n_lr = vocab.n_lang * vocab.n_reg
        Wn = W1[:n_num] / std[:, None]
        bias = b1 - (mean / std) @ W1[:n_num]
        o = n_num
        T_lr = W1[o:o + n_lr]; o += n_lr
        T_cat = W1[o:o + vocab.n_cat]; o += vocab.n_cat
        T_age = W1[o:o + N_AGE]; o += N_AGE
        T_dow = W1[o:o + 7]
        table = (T_lr[:, None, None, :] + T_cat[None, :, None, :] + T_age[None, None, :, :] + bias)
        layers = [(W.astype(np.float32), b.astype(np.float32)) for W, b in zip(mlp.coefs_[1:], mlp.intercepts_[1:])]
        return cls(W_num=Wn.astype(np.float32), table=table.reshape(-1, W1.shape[1]).astype(np.float32),
                   dow_tab=T_dow.astype(np.float32), n_cat=vocab.n_cat, layers=layers)

    def predict_arrays(self, num: np.ndarray, lr: np.ndarray, cat: np.ndarray, age_b: np.ndarray,
                       dow: int | np.ndarray, chunk: int = 16384) -> np.ndarray:
        n = len(num)
        out = np.empty((n, self.layers[-1][0].shape[1]), dtype=np.float32)
        idx_all = (lr * self.n_cat + cat) * N_AGE + age_b
        scalar_dow = np.ndim(dow) == 0
        table = self.table + self.dow_tab[int(dow)] if scalar_dow else self.table
        num = np.ascontiguousarray(num, dtype=np.float32)
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            h = num[s:e] @ self.W_num
            h += table[idx_all[s:e]]
            if not scalar_dow:
                h += self.dow_tab[dow[s:e]]
            np.maximum(h, 0, out=h)
            for j, (W, b) in enumerate(self.layers):
                h = h @ W
                h += b
                if j < len(self.layers) - 1:
                    np.maximum(h, 0, out=h)
            out[s:e] = h
        return out

    def predict(self, b: Batch) -> np.ndarray:
        return self.predict_arrays(b.num, b.lr, b.cat, b.age_b, b.dow)


@dataclass
class Calibrator:
    """Predicted log1p(views) -> expected views, monotone (isotonic on validation days)."""

    x: np.ndarray
    y: np.ndarray
    tail_ratio: float

    @classmethod
    def fit(cls, pred: np.ndarray, views: np.ndarray, weight: np.ndarray | None = None) -> "Calibrator":
        iso = IsotonicRegression(increasing=True, out_of_bounds="clip")
        pred = np.clip(np.nan_to_num(pred.astype(np.float64), nan=0.0), -1.0, MAX_LOG)
        iso.fit(pred, views.astype(np.float64), sample_weight=weight)
        x, y = iso.X_thresholds_, iso.y_thresholds_
        top = float(np.expm1(max(x[-1], 1e-3)))
        return cls(x=x, y=y, tail_ratio=float(max(y[-1], 1e-9) / max(top, 1e-9)))

    def __call__(self, pred: np.ndarray) -> np.ndarray:
        # A diverged or extrapolating network must not overflow: clip in log space first.
        pred = np.clip(np.nan_to_num(pred, nan=0.0), -1.0, MAX_LOG)
        e = np.interp(pred, self.x, self.y)
        above = pred > self.x[-1]
        if above.any():  # beyond the validation range: follow expm1, scaled to meet the curve
            e[above] = np.expm1(pred[above]) * self.tail_ratio
        return e


# ---------------------------------------------------------------- the model
@dataclass
class ViewPredictor:
    """One family's regressors for the two targets, calibrated into expected views."""

    family: str  # "mlp" or "gbm"
    mean: np.ndarray  # standardisation of the numeric features (MLP input)
    std: np.ndarray
    fast: FastMLP | None = None
    mlp: MLPRegressor | None = None
    gbms: tuple[HistGradientBoostingRegressor, HistGradientBoostingRegressor] | None = None
    calibrators: tuple[Calibrator, Calibrator] | None = None  # today, next `horizon` days

    def predict_log(self, b: Batch) -> np.ndarray:
        """(n, 2): predicted log1p(views today), log1p(views over the horizon)."""
        if len(b) == 0:
            return np.zeros((0, 2), dtype=np.float32)
        if self.family == "mlp":
            return self.fast.predict(b)
        X = gbm_matrix(b)
        return np.column_stack([g.predict(X) for g in self.gbms]).astype(np.float32)

    def calibrated(self, log_pred: np.ndarray) -> np.ndarray:
        p = log_pred.astype(np.float64)
        return np.column_stack([self.calibrators[0](p[:, 0]), self.calibrators[1](p[:, 1])])

    def expected_views(self, b: Batch) -> np.ndarray:
        """(n, 2) expected views today and over the horizon."""
        return self.calibrated(self.predict_log(b))


@dataclass
class PlacementModel:
    """The two-moment policy: a morning plan (keep / push) and an admission rule at a
    pair's first request of the day when it is not on the edge (fill through the edge, or
    keep serving it from origin). Both decide by expected cost from calibrated predictions:
    `morning` predicts a pair's views from the morning's features, `admission` the same
    targets given that the pair is requested today (trained on rows of requested pairs)."""

    family: str  # "mlp" or "gbm", shared by both predictors
    vocab: Vocab
    costs: CostModel
    morning: ViewPredictor
    admission: ViewPredictor | None = None
    alpha: float = 1.0
    gamma: float = 1.0
    admit_alpha: float = np.inf  # inf: never fill on a first request (a morning-only plan)
    admit_gamma: float = 1.0
    horizon: int = HORIZON
    channel_index: dict[str, int] = field(default_factory=dict)
    channel_table: ChannelTable | None = None  # snapshot for cold start (decide_new_video)
    info: dict = field(default_factory=dict)

    def expected_views(self, b: Batch) -> np.ndarray:
        """(n, 2) expected views today and over the horizon, from the morning's features."""
        return self.morning.expected_views(b)

    def expected_views_if_requested(self, b: Batch) -> np.ndarray:
        """(n, 2) the same given that the pair is requested today (what admission weighs)."""
        return self.admission.expected_views(b)

    def decide_rows(self, b: Batch, expected: np.ndarray, at_edge: np.ndarray) -> np.ndarray:
        """Morning plan: which rows sit on the edge today."""
        keep_t, fill_t = decision_thresholds(self.costs, self.vocab.regions, self.alpha, self.gamma, self.horizon)
        today_pays = expected[:, 0] > keep_t[b.reg]
        return today_pays & (at_edge | (expected[:, 1] > fill_t[b.reg]))

    def admits(self) -> bool:
        """Whether the on-day rule can fill at all (tuning may find a morning-only plan cheaper)."""
        return self.admission is not None and bool(np.isfinite(self.admit_alpha))

    def admit_rows(self, b: Batch, expected_if_requested: np.ndarray) -> np.ndarray:
        """On-day rule at a pair's first request when it is not on the edge: fill it through
        the edge iff its expected views given the request repay the fill (the morning's
        break-even, with its own tuned knobs). A one-hit video's expectation stays low."""
        if not self.admits():
            return np.zeros(len(b), dtype=bool)
        keep_t, fill_t = decision_thresholds(self.costs, self.vocab.regions, self.admit_alpha, self.admit_gamma,
                                             self.horizon)
        e = expected_if_requested
        return (e[:, 0] > keep_t[b.reg]) & (e[:, 1] > fill_t[b.reg])

    # -- cold start ------------------------------------------------------------------
    def new_video_batch(self, video: dict) -> Batch:
        """Rows (one per region) for a video with no views yet: channel, language, category
        (and upload weekday if `upload_date` is given), zero history, age 0."""
        import datetime as dt

        vocab = self.vocab
        n_r = vocab.n_reg
        lang = vocab.lang_code(np.array([video.get("language") or "und"]))[0]
        cat = vocab.cat_code(np.array([str(video.get("category") or "unknown")]))[0]
        ch = self.channel_index.get(str(video.get("channel_id") or ""), -1)
        num = np.zeros((n_r, len(NUMERIC)), dtype=np.float32)
        num[:, NUMERIC.index("rec_r")] = np.log1p(90)
        num[:, NUMERIC.index("rec_any")] = np.log1p(90)
        if ch >= 0 and self.channel_table is not None:
            t = self.channel_table
            num[:, NUMERIC.index("ch_mean0")] = np.log1p(t.mean0[ch])
            num[:, NUMERIC.index("ch_lmean0")] = t.lmean0[ch]
            num[:, NUMERIC.index("ch_avg7")] = np.log1p(t.avg7[ch])
            num[:, NUMERIC.index("ch_n")] = np.log1p(t.n[ch])
            num[:, NUMERIC.index("ch_known")] = 1.0
            num[:, NUMERIC.index("ch_age_adj")] = t.age_adj[ch]
        up = video.get("upload_date")
        dow = (dt.date.fromisoformat(up) if isinstance(up, str) else up or dt.date.today()).weekday()
        reg = np.arange(n_r)
        return Batch(day=-1, vid=np.zeros(n_r, int), reg=reg, num=num, lr=lang * n_r + reg,
                     cat=np.full(n_r, cat), age_b=np.full(n_r, int(age_bucket(np.array([0]))[0])), dow=dow)

    def decide_new_video(self, video: dict) -> dict[str, str]:
        """Per-region morning decision for a video with no views yet: {region: "cdn"|"origin"}."""
        b = self.new_video_batch(video)
        push = self.decide_rows(b, self.expected_views(b), np.zeros(len(b), dtype=bool))
        return {r: ("cdn" if p else "origin") for r, p in zip(self.vocab.regions, push)}

    def admit_new_video(self, video: dict) -> dict[str, bool]:
        """Per-region admission for a video with no views yet: fill it at its first request?"""
        b = self.new_video_batch(video)
        adm = self.admit_rows(b, self.expected_views_if_requested(b)) if self.admits() else np.zeros(len(b), bool)
        return {r: bool(a) for r, a in zip(self.vocab.regions, adm)}

    def save(self, path) -> None:
        with open(path, "wb") as fh:
            pickle.dump(self, fh)

    @staticmethod
    def load(path) -> "PlacementModel":
        with open(path, "rb") as fh:
            return pickle.load(fh)


def decision_thresholds(costs: CostModel, regions: list[str], alpha: float, gamma: float, horizon: int = HORIZON):
    """Break-even expected views: per day to keep (storage), over the horizon to fill.
    Infinite where the edge never saves money (CDN dearer than origin + QoE)."""
    p = costs.arrays(regions)
    saving = (p["origin_delivery_per_gb"] + p["qoe_penalty_per_gb"] - p["cdn_delivery_per_gb"]) * costs.view_bytes_fraction
    saving = gamma * saving
    pos = saving > 0
    safe = np.where(pos, saving, 1.0)
    keep = np.where(pos, p["cdn_storage_per_gb_day"] / safe, np.inf)
    if not np.isfinite(alpha):  # never fill (inf * a free fill would be nan)
        return keep, np.full_like(keep, np.inf)
    fill = np.where(pos, (alpha * p["cdn_fill_per_gb"] + horizon * p["cdn_storage_per_gb_day"]) / safe, np.inf)
    return keep, fill


_DEFAULT_MODEL: PlacementModel | None = None


def set_default_model(model: PlacementModel | None) -> None:
    """Register the model that `decide_new_video` uses (e.g. loaded by the daily job)."""
    global _DEFAULT_MODEL
    _DEFAULT_MODEL = model


def decide_new_video(video_features: dict, model: PlacementModel | None = None,
                     regions: list[str] | None = None) -> dict[str, str]:
    """Cold start, called when a transcode finishes: {region: "cdn"|"origin"}.

    video_features: language, category, channel_id (size_bytes, upload_date optional).
    Without a trained model, every region is served from origin (the safe default)."""
    m = model or _DEFAULT_MODEL
    if m is None:
        return {r: "origin" for r in (regions or [])}
    out = m.decide_new_video(video_features)
    return {r: out.get(r, "origin") for r in regions} if regions else out


def admit_new_video(video_features: dict, model: PlacementModel | None = None,
                    regions: list[str] | None = None) -> dict[str, bool]:
    """Cold start of the on-day moment: {region: fill at the first request?}; never
    without a model (a morning-only plan, as before admission existed)."""
    m = model or _DEFAULT_MODEL
    if m is None or getattr(m, "admission", None) is None:
        return {r: False for r in (regions or [])}
    out = m.admit_new_video(video_features)
    return {r: out.get(r, False) for r in regions} if regions else out


# ---------------------------------------------------------------- training
def _targets(rows: Rows) -> np.ndarray:
    return np.column_stack([np.log1p(rows.y), np.log1p(rows.yh)])


def fit_mlp(rows: Rows, vocab: Vocab, mean, std, seed: int, hidden=(64, 32), max_iter: int = 40):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    X = _dense(rows, vocab, mean, std)
    mlp = MLPRegressor(hidden_layer_sizes=hidden, activation="relu", alpha=1e-4, batch_size=min(512, len(rows.y)),
                       learning_rate_init=2e-3, max_iter=max_iter, early_stopping=True, validation_fraction=0.1,
                       n_iter_no_change=5, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*batch_size.*")  # tiny training sets
        mlp.fit(X, _targets(rows), sample_weight=rows.w)
    return mlp


def fit_gbm(rows: Rows, seed: int, max_iter: int = 300):
    n_num = rows.num.shape[1]
    X = _gbm_X(rows)
    Y = _targets(rows)
    out = []
    for j in range(2):
        gbm = HistGradientBoostingRegressor(
            loss="squared_error", learning_rate=0.1, max_iter=max_iter, max_leaf_nodes=31, min_samples_leaf=40,
            l2_regularization=1.0, categorical_features=list(range(n_num, n_num + 5)), early_stopping=True,
            validation_fraction=0.1, n_iter_no_change=15, random_state=seed)
        gbm.fit(X, Y[:, j], sample_weight=rows.w)
        out.append(gbm)
    return tuple(out)


@dataclass
class TrainConfig:
    max_rows: int = 400_000
    hidden: tuple[int, ...] = (64, 32)
    mlp_max_iter: int = 40
    gbm_max_iter: int = 300
    val_fraction: float = 0.25
    families: tuple[str, ...] = ("mlp", "gbm")
    horizon: int = HORIZON
    seed: int = 0
    first_request_share: float = 0.5  # admission rows, as a share of max_rows


def split_days(train_end: int, cfg: TrainConfig) -> tuple[list[int], list[int]]:
    """Fit days (whose horizon labels end before validation) and validation days."""
    first = 1  # day 0 has no history
    n_train = train_end - first + 1
    # At least `horizon` validation days, so the first one has a full horizon label.
    n_val = max(cfg.horizon, int(round(n_train * cfg.val_fraction)))
    last_fit = train_end - n_val - cfg.horizon + 1
    if last_fit < first:
        need = first + n_val + cfg.horizon - 1
        raise ValueError(f"too few training days: --train-until must be at least {need} days after the first day of views")
    return list(range(first, last_fit + 1)), list(range(train_end - n_val + 1, train_end + 1))


@dataclass
class ValidationDay:
    """One validation day's rows and labels: the morning rows, and the rows of every pair
    requested that day (what the admission rule would see if none were on the edge)."""

    morning: Batch
    y: np.ndarray
    yh: np.ndarray | None  # None when the horizon runs past the training days
    first: Batch
    first_y: np.ndarray
    first_yh: np.ndarray | None


@dataclass
class Candidate:
    """One family's fitted predictors and their validation-day predictions."""

    family: str
    morning: ViewPredictor
    admission: ViewPredictor
    expected: list[np.ndarray]  # per validation day, morning rows
    first_expected: list[np.ndarray]  # per validation day, requested rows
    info: dict


@dataclass
class FittedPredictors:
    """What training learns before prices enter: every family's calibrated predictors."""

    vocab: Vocab
    horizon: int
    val: list[ValidationDay]
    candidates: list[Candidate]
    channel_index: dict[str, int]
    channel_table: ChannelTable
    info: dict


def validation_days(hist: History, days: list[int], train_end: int, H: int) -> list[ValidationDay]:
    views = hist.ds.views
    n_v, n_r = views.shape[:2]
    out = []
    for d in days:
        b = hist.batch(d)
        fb = first_request_batch(hist, b, views[:, :, d] > 0, np.zeros((n_v, n_r), dtype=bool))
        full = d + H - 1 <= train_end  # horizon labels only inside the training days
        lab = lambda x: (views[x.vid, x.reg, d].astype(np.float64),  # noqa: E731
                         views[x.vid, x.reg, d:d + H].astype(np.float64).sum(1) if full else None)
        (y, yh), (fy, fyh) = lab(b), lab(fb)
        out.append(ValidationDay(morning=b, y=y, yh=yh, first=fb, first_y=fy, first_yh=fyh))
    return out


def _fit_predictor(fam: str, rows: Rows, vocab: Vocab, cfg: TrainConfig, batches: list[Batch],
                   ys: list[np.ndarray], yhs: list[np.ndarray | None]) -> tuple[ViewPredictor, list[np.ndarray], dict]:
    """Fit one family on `rows`, calibrate it on the validation rows; predictions per day."""
    t0 = time.perf_counter()
    mean = np.average(rows.num, axis=0, weights=rows.w)
    std = np.sqrt(np.average((rows.num - mean) ** 2, axis=0, weights=rows.w)) + 1e-6
    pred = ViewPredictor(family=fam, mean=mean, std=std)
    if fam == "mlp":
        pred.mlp = fit_mlp(rows, vocab, mean, std, cfg.seed, cfg.hidden, cfg.mlp_max_iter)
        pred.fast = FastMLP.from_sklearn(pred.mlp, vocab, mean, std)
        info = {"epochs": int(pred.mlp.n_iter_), "hidden": list(cfg.hidden)}
    else:
        pred.gbms = fit_gbm(rows, cfg.seed, cfg.gbm_max_iter)
        info = {"iterations": [int(g.n_iter_) for g in pred.gbms]}
    info["fit_seconds"] = round(time.perf_counter() - t0, 2)
    logs = [pred.predict_log(b).astype(np.float64) for b in batches]
    P, Y = np.concatenate(logs), np.concatenate(ys)
    Ph = np.concatenate([p[:, 1] for p, yh in zip(logs, yhs) if yh is not None])
    Yh = np.concatenate([yh for yh in yhs if yh is not None])
    pred.calibrators = (Calibrator.fit(P[:, 0], Y), Calibrator.fit(Ph, Yh))
    info["validation_rmse_log1p"] = round(float(np.sqrt(np.mean((P[:, 0] - np.log1p(Y)) ** 2))), 4) if len(Y) else None
    return pred, [pred.calibrated(p) for p in logs], info


def fit_predictors(hist: History, train_end: int, cfg: TrainConfig) -> FittedPredictors:
    """Fit every family's morning and admission predictors on the fit days and calibrate
    them on the validation days. Reads only views of days <= train_end (labels included)."""
    ds, vocab, H = hist.ds, hist.vocab, cfg.horizon
    fit_days, val_days = split_days(train_end, cfg)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    rows = sample_rows(hist, fit_days, cfg.max_rows, rng, H)
    first_rows = sample_rows(hist, fit_days, int(cfg.max_rows * cfg.first_request_share), rng, H, first_requests=True)
    val = validation_days(hist, val_days, train_end, H)
    info = {"fit_days": [str(ds.dates[fit_days[0]]), str(ds.dates[fit_days[-1]])],
            "validation_days": [str(ds.dates[val_days[0]]), str(ds.dates[val_days[-1]])],
            "horizon_days": H, "training_rows": int(len(rows.y)), "first_request_rows": int(len(first_rows.y)),
            "row_sampling_s": round(time.perf_counter() - t0, 2)}
    cands = []
    for fam in cfg.families:
        morning, expected, m_info = _fit_predictor(fam, rows, vocab, cfg, [v.morning for v in val],
                                                   [v.y for v in val], [v.yh for v in val])
        adm, first_expected, a_info = _fit_predictor(fam, first_rows, vocab, cfg, [v.first for v in val],
                                                     [v.first_y for v in val], [v.first_yh for v in val])
        cands.append(Candidate(family=fam, morning=morning, admission=adm, expected=expected,
                               first_expected=first_expected,
                               info={**m_info, **{f"admission_{k}": v for k, v in a_info.items()}}))
    return FittedPredictors(vocab=vocab, horizon=H, val=val, candidates=cands,
                            channel_index={c: i for i, c in enumerate(ds.channel_ids)},
                            channel_table=hist.channel_table(train_end + 1), info=info)


def _best_knobs(model: PlacementModel, run, names: tuple[str, str], grid_a, grid_g) -> float:
    """Set the two knobs `names` on `model` to the cheapest pair of the grid; returns its cost."""
    scores = {}
    for a in grid_a:
        for g in grid_g:
            setattr(model, names[0], a)
            setattr(model, names[1], g)
            scores[(a, g)] = run(model)
    (a, g), cost = min(scores.items(), key=lambda kv: (kv[1], -kv[0][0]))  # ties: the more cautious fill
    setattr(model, names[0], a)
    setattr(model, names[1], g)
    return cost


def tune(fitted: FittedPredictors, costs: CostModel, tune_replay) -> PlacementModel:
    """Tune each family's decision knobs for these prices on the validation days and keep the
    family that costs less there. `tune_replay(model, val_days, expected, first_expected) ->
    cost` replays the two-moment rule (the harness and the daily job own the pricing)."""
    best, info = None, {**fitted.info, "families": {}}
    for c in fitted.candidates:
        model = PlacementModel(family=c.family, vocab=fitted.vocab, costs=costs, morning=c.morning,
                               admission=c.admission, horizon=fitted.horizon, channel_index=fitted.channel_index)
        run = lambda m: tune_replay(m, fitted.val, c.expected, c.first_expected)  # noqa: E731
        # Coordinate descent: the morning plan alone (the fallback), then the admission rule
        # for that plan, then each again for the other (a morning fill and an admission
        # compete for the same pairs).
        morning_only = _best_knobs(model, run, ("alpha", "gamma"), ALPHAS, GAMMAS)
        _best_knobs(model, run, ("admit_alpha", "admit_gamma"), ADMIT_ALPHAS, GAMMAS)
        _best_knobs(model, run, ("alpha", "gamma"), ALPHAS, GAMMAS)
        cost = _best_knobs(model, run, ("admit_alpha", "admit_gamma"), ADMIT_ALPHAS, GAMMAS)
        info["families"][c.family] = {
            "validation_cost": round(cost, 4), "validation_cost_morning_only": round(morning_only, 4),
            "alpha": model.alpha if np.isfinite(model.alpha) else None, "gamma": model.gamma,
            "admit_alpha": model.admit_alpha if np.isfinite(model.admit_alpha) else None,
            "admit_gamma": model.admit_gamma, **c.info}
        if best is None or cost < best[0]:
            best = (cost, model)
    model = best[1]
    info["chosen_family"] = model.family
    model.info = info
    model.channel_table = fitted.channel_table
    return model


def train(hist: History, costs: CostModel, train_end: int, cfg: TrainConfig, tune_replay) -> PlacementModel:
    """Fit both families, tune their knobs for `costs`, keep the cheaper on validation days."""
    return tune(fit_predictors(hist, train_end, cfg), costs, tune_replay)
