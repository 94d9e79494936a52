"""Workload simulator: daily views per video x region for a user-generated video catalogue.

One job: produce a realistic, seeded (deterministic) view history in the evaluation CSV
formats (views: date,video_id,region,views; videos: video_id,upload_date,language,category,
channel_id,size_bytes), so the placement model can be tested where the real data is thin
(the long tail, cold start, many regions). Parameters and the measurements they follow
(docs/placement.md has the table; "notes" = shared/notes/placement-and-encoding-figures.md):

  lifetime views      lognormal(mu=3.8, sigma=2.2): ~65% of videos < 100 lifetime views,
                      ~90% < 1,000, top 10% ~ 80% of views (notes sec. 2: WSJ 2006 / Cha
                      IMC'07 "top 10% ~ 80%"; McGrady 2023 "65% < 100 views")
  channel effect      a channel's videos share part of that variance (sigma 1.2 of 2.2)
  ageing              share w of the lifetime in an initial burst retained rho per day (from
                      the upload's time of day, uniform), the
                      rest an evergreen tail ~ (1 + age/30)^-1.5 over two years; rho ~ U(0.3,
                      0.65) around the day-over-day ratio measured on yt-trending-2017 (median
                      0.44); 80% of videos "timely" (w in 0.6-0.95), news/sports more so,
                      music/education less (Szabo-Huberman, Borghol: evergreen minority)
  region affinity     per-video region shares ~ Dirichlet(kappa * language affinity),
                      kappa set so ~50% of videos get > 70% of views in one region
                      (Brodersen et al., WWW 2012)
  bursts              rare re-discoveries (0.05%/video/day), spread wider across regions
  weekly cycle        +-10% around a weekend peak (assumption; not in the notes)
  daily noise         multiplicative lognormal (sigma 0.5; "daily views are lognormal",
                      TNSM 2019), then Poisson counts
  sizes               duration lognormal (median 240 s) x 25.6 Mbps (Apple H.264 ladder)
"""
from __future__ import annotations

import csv
import datetime as dt
import pathlib
from dataclasses import dataclass, field

import numpy as np

from placement_svc.model.dataset import Dataset

REGIONS = ("BR", "DE", "GB", "IN", "JP", "US")
# language: (share of videos, affinity over REGIONS order BR, DE, GB, IN, JP, US)
LANGUAGES = {
    "en": (0.42, (0.04, 0.05, 0.20, 0.13, 0.03, 0.55)),
    "hi": (0.13, (0.01, 0.01, 0.03, 0.89, 0.01, 0.05)),
    "ja": (0.11, (0.01, 0.01, 0.02, 0.01, 0.90, 0.05)),
    "pt": (0.10, (0.86, 0.02, 0.02, 0.02, 0.02, 0.06)),
    "de": (0.08, (0.01, 0.86, 0.04, 0.02, 0.01, 0.06)),
    "es": (0.08, (0.25, 0.05, 0.05, 0.03, 0.02, 0.60)),
    "fr": (0.04, (0.05, 0.30, 0.25, 0.05, 0.05, 0.30)),
    "ko": (0.04, (0.10, 0.10, 0.10, 0.05, 0.30, 0.35)),
}
# YouTube category id: (share, probability a video is "timely", lifetime multiplier)
CATEGORIES = {
    "24": (0.20, 0.80, 1.0),  # Entertainment
    "22": (0.20, 0.80, 0.8),  # People & Blogs
    "10": (0.15, 0.55, 1.5),  # Music
    "20": (0.12, 0.80, 1.0),  # Gaming
    "26": (0.07, 0.50, 1.0),  # Howto & Style
    "25": (0.06, 0.97, 0.8),  # News & Politics
    "27": (0.06, 0.45, 1.0),  # Education
    "17": (0.05, 0.90, 1.0),  # Sports
    "23": (0.05, 0.80, 1.0),  # Comedy
    "1": (0.04, 0.80, 1.0),   # Film & Animation
}


@dataclass
class SimConfig:
    n_videos: int = 20_000  # catalogue before the first day
    n_days: int = 56
    start: dt.date = dt.date(2024, 1, 1)
    uploads_per_day: float = 100.0
    videos_per_channel: float = 12.0
    lifetime_mu: float = 3.8
    lifetime_sigma: float = 2.2
    channel_sigma: float = 1.2
    history_days: int = 730
    retention: tuple[float, float] = (0.30, 0.65)
    timely_w: tuple[float, float] = (0.60, 0.95)
    evergreen_w: tuple[float, float] = (0.05, 0.30)
    evergreen_tau: float = 30.0
    evergreen_beta: float = 1.5
    kappa: float = 1.2
    burst_rate: float = 0.0005
    burst_size: tuple[float, float] = (0.05, 0.5)
    burst_retention: float = 0.5
    weekly_amplitude: float = 0.10
    noise_sigma: float = 0.5
    median_duration_s: float = 240.0
    ladder_bps: float = 25.6e6
    regions: tuple[str, ...] = REGIONS
    languages: dict = field(default_factory=lambda: dict(LANGUAGES))
    categories: dict = field(default_factory=lambda: dict(CATEGORIES))


def simulate(cfg: SimConfig | None = None, seed: int = 0, with_expected: bool = False):
    """The simulated world as a Dataset (same shape the CSV loader produces).

    With `with_expected`, returns (dataset, {"expected", "cold_start_expected"}), arrays like
    ds.views: "expected" is the mean of each day's views given every latent of the world
    (lifetime, ageing, region shares, bursts, weekday) but not the day's noise draws: what a
    perfect predictor could know. "cold_start_expected" is the mean given only what is known
    at upload (channel quality, language, category, weekday; no bursts): the best a
    cold-start decision can do. bench/placement_bench.py turns both into cost bounds."""
    cfg = cfg or SimConfig()
    rng = np.random.default_rng(seed)
    mix = _Mix.of(cfg)
    cat = _catalogue(cfg, mix, rng)
    g = _evergreen_profile(cfg)
    age = np.arange(cfg.n_days)[None, :] - cat.upload[:, None]  # (n, T)
    base = _base_views(cfg, mix, cat, g, age, rng)
    share = _region_shares(cfg, mix, cat.lang, rng)
    burst, bshare = _bursts(cfg, mix, cat.lifetime, age, share, rng)
    weekly = _weekly_cycle(cfg)
    # The draws stay in this order (noise, views, sizes): a seed names the same world.
    noise = np.exp(rng.normal(-cfg.noise_sigma ** 2 / 2, cfg.noise_sigma, size=(cat.n, cfg.n_days)))
    scale = (weekly[None, :] * noise)[:, None, :]
    latent = base[:, None, :] * share[:, :, None] + burst[:, None, :] * bshare[:, :, None]
    views = rng.poisson(latent * scale).astype(np.float32)
    ds = _dataset(cfg, mix, cat, views, rng)
    if not with_expected:
        return ds
    # The lognormal noise has mean 1, so the mean is the rate without it.
    expected = (latent * weekly[None, None, :]).astype(np.float32)
    cold = _cold_start_expected(cfg, mix, cat, g, age, weekly, seed)
    return ds, {"expected": expected, "cold_start_expected": cold}


@dataclass
class _Mix:
    """The config's language and category tables as normalised arrays."""

    langs: list[str]
    lang_p: np.ndarray  # share of videos per language
    lang_aff: np.ndarray  # (language, region) affinity, rows sum to 1
    cats: list[str]
    cat_p: np.ndarray  # share of videos per category
    cat_timely: np.ndarray  # probability a video of the category is "timely"
    cat_mult: np.ndarray  # lifetime multiplier per category

    @classmethod
    def of(cls, cfg: SimConfig) -> "_Mix":
        langs, cats = list(cfg.languages), list(cfg.categories)
        lang_p = np.array([cfg.languages[x][0] for x in langs]); lang_p /= lang_p.sum()
        lang_aff = np.array([cfg.languages[x][1] for x in langs]); lang_aff /= lang_aff.sum(1, keepdims=True)
        cat_p = np.array([cfg.categories[c][0] for c in cats]); cat_p /= cat_p.sum()
        return cls(langs=langs, lang_p=lang_p, lang_aff=lang_aff, cats=cats, cat_p=cat_p,
                   cat_timely=np.array([cfg.categories[c][1] for c in cats]),
                   cat_mult=np.array([cfg.categories[c][2] for c in cats]))


@dataclass
class _Catalogue:
    """Every video of the world: when it was uploaded, by which channel, and what it is."""

    upload: np.ndarray  # (n,) day index of upload (< 0: before the window)
    channel: np.ndarray  # (n,) channel index
    n_channels: int
    channel_z: np.ndarray  # (n_channels,) channel quality (log-lifetime offset)
    video_sigma: float  # the lifetime's spread left to the video once the channel's is drawn
    lang: np.ndarray  # (n,) index into _Mix.langs
    cat: np.ndarray  # (n,) index into _Mix.cats
    lifetime: np.ndarray  # (n,) lifetime views

    @property
    def n(self) -> int:
        return len(self.upload)


def _catalogue(cfg: SimConfig, mix: _Mix, rng: np.random.Generator) -> _Catalogue:
    # Uploads: the existing catalogue over the past two years, then new uploads each day.
    T = cfg.n_days
    n_new = rng.poisson(cfg.uploads_per_day, size=T)
    upload = np.concatenate([rng.integers(-cfg.history_days, 0, size=cfg.n_videos), np.repeat(np.arange(T), n_new)])
    n = len(upload)
    # Channels: Zipf-like sizes; a channel has a language, a main category and a quality.
    n_ch = max(int(n / cfg.videos_per_channel), 1)
    ch_w = 1.0 / np.arange(1, n_ch + 1) ** 0.8
    channel = rng.choice(n_ch, size=n, p=ch_w / ch_w.sum())
    ch_lang = rng.choice(len(mix.langs), size=n_ch, p=mix.lang_p)
    ch_cat = rng.choice(len(mix.cats), size=n_ch, p=mix.cat_p)
    ch_z = rng.normal(0.0, cfg.channel_sigma, size=n_ch)
    lang = np.where(rng.random(n) < 0.9, ch_lang[channel], rng.choice(len(mix.langs), size=n, p=mix.lang_p))
    cat = np.where(rng.random(n) < 0.7, ch_cat[channel], rng.choice(len(mix.cats), size=n, p=mix.cat_p))
    video_sigma = np.sqrt(max(cfg.lifetime_sigma ** 2 - cfg.channel_sigma ** 2, 1e-6))
    lifetime = np.exp(cfg.lifetime_mu + ch_z[channel] + rng.normal(0.0, video_sigma, size=n)) * mix.cat_mult[cat]
    return _Catalogue(upload=upload, channel=channel, n_channels=n_ch, channel_z=ch_z, video_sigma=video_sigma,
                      lang=lang, cat=cat, lifetime=lifetime)


def _evergreen_profile(cfg: SimConfig) -> np.ndarray:
    """Share of the evergreen tail per day of age, normalised over the two years of history."""
    ages = np.arange(cfg.history_days + cfg.n_days)
    g = (1.0 + ages / cfg.evergreen_tau) ** -cfg.evergreen_beta
    return g / g[: cfg.history_days].sum()


def _base_views(cfg: SimConfig, mix: _Mix, cat: _Catalogue, g: np.ndarray, age: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """(n, T) mean views per day over all regions, before bursts, weekday and noise."""
    # Ageing: initial burst (share w, kept rho per day) + evergreen tail over two years.
    n = cat.n
    timely = rng.random(n) < mix.cat_timely[cat.cat]
    w = np.where(timely, rng.uniform(*cfg.timely_w, size=n), rng.uniform(*cfg.evergreen_w, size=n))
    rho = rng.uniform(*cfg.retention, size=n)
    a = np.clip(age, 0, len(g) - 1)
    # Uploads land at a uniform time of day u: the burst decays continuously from then, so
    # the upload day gets the first (1 - u) day of it and day k the slice [k - u, k + 1 - u].
    u = rng.random(n)[:, None]
    r_ = rho[:, None]
    burst0 = np.where(age == 0, 1 - r_ ** (1 - u), r_ ** np.maximum(a - u, 0) * (1 - r_))
    tail = g[a] * np.where(age == 0, 1 - u, 1.0)
    base = cat.lifetime[:, None] * (w[:, None] * burst0 + (1 - w[:, None]) * tail)
    return np.where(age >= 0, base, 0.0)


def _region_shares(cfg: SimConfig, mix: _Mix, lang: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, regions) each video's share of views per region: Dirichlet around its language's affinity."""
    n_r = len(cfg.regions)
    share = np.empty((len(lang), n_r))
    for li in range(len(mix.langs)):
        idx = np.nonzero(lang == li)[0]
        if len(idx):
            share[idx] = rng.dirichlet(cfg.kappa * mix.lang_aff[li] * n_r, size=len(idx))
    return share


def _bursts(cfg: SimConfig, mix: _Mix, lifetime: np.ndarray, age: np.ndarray, share: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rare re-discoveries of older videos: (n, T) burst views and their (n, regions) shares,
    spread wider across regions than the video's own audience."""
    n, T = age.shape
    burst = np.zeros((n, T))
    events = np.nonzero((rng.random((n, T)) < cfg.burst_rate) & (age >= 7))
    sizes = lifetime[events[0]] * rng.uniform(*cfg.burst_size, size=len(events[0]))
    t_idx = np.arange(T)
    for v, t0, s in zip(events[0], events[1], sizes):
        k = t_idx[t0:] - t0
        burst[v, t0:] += s * (1 - cfg.burst_retention) * cfg.burst_retention ** k
    traffic = mix.lang_p @ mix.lang_aff
    return burst, 0.5 * share + 0.5 * traffic[None, :]


def _weekly_cycle(cfg: SimConfig) -> np.ndarray:
    dows = np.array([(cfg.start + dt.timedelta(days=int(t))).weekday() for t in range(cfg.n_days)])
    return 1.0 + cfg.weekly_amplitude * np.cos(2 * np.pi * (dows - 5.5) / 7.0)


def _dataset(cfg: SimConfig, mix: _Mix, cat: _Catalogue, views: np.ndarray, rng: np.random.Generator) -> Dataset:
    """The world's views and catalogue as a Dataset (sizes drawn here, from the durations)."""
    n, T = cat.n, cfg.n_days
    duration = np.clip(cfg.median_duration_s * np.exp(rng.normal(0, 0.8, size=n)), 15, 7200)
    size = np.round(duration * cfg.ladder_bps / 8 * rng.uniform(0.7, 1.0, size=n))
    any_views = views.sum(1) > 0
    first_seen = np.where(any_views.any(1), any_views.argmax(1), T)
    return Dataset(
        dates=[cfg.start + dt.timedelta(days=i) for i in range(T)], regions=list(cfg.regions),
        video_ids=[f"v{i:06d}" for i in range(n)], views=views, upload_day=cat.upload.astype(np.int64),
        upload_known=np.ones(n, dtype=bool), first_seen=first_seen.astype(np.int64),
        language=np.array([mix.langs[i] for i in cat.lang]), category=np.array([mix.cats[i] for i in cat.cat]),
        channel=cat.channel.astype(np.int64), channel_ids=[f"c{i:05d}" for i in range(cat.n_channels)],
        size_bytes=size)


def _cold_start_expected(cfg: SimConfig, mix: _Mix, cat: _Catalogue, g: np.ndarray, age: np.ndarray,
                         weekly: np.ndarray, seed: int) -> np.ndarray:
    """Mean views given only what is known at upload: video-level draws replaced by their
    means given channel, category and language (no bursts)."""
    prior = np.random.default_rng(seed + 1)  # its own stream: the world is unchanged
    m = 20_000
    a_m = np.arange(len(g))
    u_m, rho_m = prior.random(m)[:, None], prior.uniform(*cfg.retention, size=m)[:, None]
    b0 = np.where(a_m == 0, 1 - rho_m ** (1 - u_m), rho_m ** np.maximum(a_m - u_m, 0) * (1 - rho_m))
    t0 = g[None, :] * np.where(a_m == 0, 1 - u_m, 1.0)
    prof = {}
    for kind, rng_w in (("timely", cfg.timely_w), ("evergreen", cfg.evergreen_w)):
        w_m = prior.uniform(*rng_w, size=m)[:, None]
        prof[kind] = (w_m * b0 + (1 - w_m) * t0).mean(0)
    prof_cat = mix.cat_timely[:, None] * prof["timely"] + (1 - mix.cat_timely[:, None]) * prof["evergreen"]
    life_prior = np.exp(cfg.lifetime_mu + cat.channel_z[cat.channel] + cat.video_sigma ** 2 / 2) * mix.cat_mult[cat.cat]
    a = np.clip(age, 0, len(g) - 1)
    cold = life_prior[:, None] * prof_cat[cat.cat][np.arange(cat.n)[:, None], a]
    cold = np.where(age >= 0, cold, 0.0)[:, None, :] * mix.lang_aff[cat.lang][:, :, None] * weekly[None, None, :]
    return cold.astype(np.float32)


def write_csv(ds: Dataset, out_dir: str | pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Write views.csv (non-zero rows only) and videos.csv; returns both paths."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vpath, mpath = out / "views.csv", out / "videos.csv"
    v, r, t = np.nonzero(ds.views)
    order = np.lexsort((r, v, t))
    v, r, t = v[order], r[order], t[order]
    dates = [d.isoformat() for d in ds.dates]
    with open(vpath, "w", newline="") as fh:
        fh.write("date,video_id,region,views\n")
        fh.writelines(f"{dates[a]},{ds.video_ids[b]},{ds.regions[c]},{int(ds.views[b, c, a])}\n"
                      for a, b, c in zip(t.tolist(), v.tolist(), r.tolist()))
    with open(mpath, "w", newline="") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(["video_id", "upload_date", "language", "category", "channel_id", "size_bytes"])
        for i, vid in enumerate(ds.video_ids):
            up = ds.dates[0] + dt.timedelta(days=int(ds.upload_day[i]))
            ch = ds.channel_ids[ds.channel[i]] if ds.channel[i] >= 0 else ""
            wr.writerow([vid, up.isoformat(), ds.language[i], ds.category[i], ch, int(ds.size_bytes[i])])
    return vpath, mpath


def describe(ds: Dataset) -> dict:
    """The statistics the simulator is calibrated against (compare with docs/placement.md)."""
    v = ds.views.astype(np.float64)
    per_video = v.sum((1, 2))
    watched = per_video > 0
    srt = np.sort(per_video)[::-1]
    top10 = srt[: max(len(srt) // 10, 1)].sum() / max(srt.sum(), 1)
    reg = v.sum(2)
    # Brodersen et al. count videos with real audiences; tiny counts are trivially local.
    big = per_video >= 100
    maxshare = reg.max(1)[big] / per_video[big]
    existing = ds.upload_day < 0
    daily_unwatched = 1 - ((v.sum(1) > 0) & (ds.upload_day[:, None] <= np.arange(ds.n_days))).sum(0) / np.maximum(
        (ds.upload_day[:, None] <= np.arange(ds.n_days)).sum(0), 1)
    new_view_share = float(per_video[~existing].sum() / max(per_video.sum(), 1))
    return {
        "videos": int(len(per_video)), "days": ds.n_days, "regions": list(ds.regions),
        "views_total": float(per_video.sum()),
        "share_videos_unwatched_per_day_mean": round(float(daily_unwatched.mean()), 4),
        "share_videos_unwatched_whole_window": round(float(1 - watched.mean()), 4),
        "top10pct_videos_share_of_views": round(float(top10), 4),
        "share_videos_100plus_views_gt70pct_one_region": round(float((maxshare > 0.7).mean()), 4),
        "share_of_views_on_videos_uploaded_in_window": round(new_view_share, 4),
    }


if __name__ == "__main__":  # python -m placement_research.simulator OUT_DIR [SEED]
    import json
    import sys

    d = simulate(seed=int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print(write_csv(d, sys.argv[1]))
    print(json.dumps(describe(d), indent=1))
