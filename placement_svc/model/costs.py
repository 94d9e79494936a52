"""The cost model: what one day of placement decisions costs, per region, in USD.

One job: turn (views, video sizes, which video-region pairs sit on the CDN edge, which of
them were filled today) into money, split into parts. Every policy, the oracle and the
learned model are priced by this one function, so they are comparable.

Per region r and video v on one day (GB = 1e9 bytes):
  bytes delivered    = views(v, r) * view_bytes_fraction * size_bytes(v)
  on the edge:       cdn_delivery_per_gb[r] * GB delivered
                   + cdn_storage_per_gb_day[r] * size_GB(v)          (the pushed renditions)
                   + cdn_fill_per_gb[r] * size_GB(v)   only on a day it was not at the edge the day before
  from origin:       (origin_delivery_per_gb[r] + qoe_penalty_per_gb[r]) * GB delivered

The defaults are public list prices (sources in docs/placement.md): a push CDN priced like
bunny.net's standard network, an origin bucket priced like AWS internet egress, edge
storage priced like S3 Standard per region. The QoE penalty is the operator's choice of how
many dollars per GB a far-origin (slower start-up) delivery is worth avoiding.
"""
from __future__ import annotations

import json
import pathlib
import tomllib
from dataclasses import dataclass, field, replace

import numpy as np

GB = 1e9
PRICE_KEYS = (
    "cdn_delivery_per_gb",
    "cdn_fill_per_gb",
    "cdn_storage_per_gb_day",
    "origin_delivery_per_gb",
    "qoe_penalty_per_gb",
)
PART_KEYS = ("cdn_delivery", "cdn_fill", "cdn_storage", "origin_delivery", "qoe_penalty")

# 240 s (a typical user video) over the 9-rung Apple H.264 ladder (25.6 Mbps in total).
DEFAULT_VIDEO_SIZE_BYTES = 768_000_000
# Share of the stored rendition set one view downloads: one ~3 Mbps rung of 25.6 Mbps,
# watched about half-way (0.117 * 0.5 ~ 0.06).
DEFAULT_VIEW_BYTES_FRACTION = 0.06

_S3_STANDARD_PER_GB_DAY = 0.023 / 30.4375  # S3 Standard, us-east-1, per GB-month -> per GB-day


@dataclass(frozen=True)
class RegionPrices:
    cdn_delivery_per_gb: float
    cdn_fill_per_gb: float
    cdn_storage_per_gb_day: float
    origin_delivery_per_gb: float
    qoe_penalty_per_gb: float

    def edge_saving_per_gb(self) -> float:
        """What one GB served from the edge instead of the origin saves (can be negative)."""
        return self.origin_delivery_per_gb + self.qoe_penalty_per_gb - self.cdn_delivery_per_gb


def _prices(cdn: float, qoe: float) -> RegionPrices:
    return RegionPrices(
        cdn_delivery_per_gb=cdn,
        cdn_fill_per_gb=0.09,  # origin bucket's internet egress when the CDN is filled
        cdn_storage_per_gb_day=_S3_STANDARD_PER_GB_DAY,
        origin_delivery_per_gb=0.09,  # AWS internet egress, first 10 TB/month tier
        qoe_penalty_per_gb=qoe,
    )


# bunny.net standard network: Europe & North America $0.01/GB, Asia & Oceania $0.03,
# South America $0.045. The origin is assumed in us-east; QoE grows with distance from it.
DEFAULT_REGION_PRICES: dict[str, RegionPrices] = {
    "US": _prices(0.010, 0.000),
    "GB": _prices(0.010, 0.002),
    "DE": _prices(0.010, 0.002),
    "BR": _prices(0.045, 0.003),
    "JP": _prices(0.030, 0.005),
    "IN": _prices(0.030, 0.005),
}
# A region not listed: the Asia & Oceania tier and a far-region QoE penalty.
DEFAULT_OTHER_REGION = _prices(0.030, 0.005)


class CostsError(ValueError):
    """A costs file that cannot be used (bad syntax, unknown key, negative price)."""


@dataclass(frozen=True)
class CostModel:
    regions: dict[str, RegionPrices] = field(default_factory=lambda: dict(DEFAULT_REGION_PRICES))
    default: RegionPrices = DEFAULT_OTHER_REGION
    view_bytes_fraction: float = DEFAULT_VIEW_BYTES_FRACTION
    default_video_size_bytes: float = DEFAULT_VIDEO_SIZE_BYTES

    def prices(self, region: str) -> RegionPrices:
        return self.regions.get(region, self.default)

    def arrays(self, regions: list[str]) -> dict[str, np.ndarray]:
        """Per-region price vectors in the order of `regions` (for vectorised pricing)."""
        return {k: np.array([getattr(self.prices(r), k) for r in regions], dtype=np.float64) for k in PRICE_KEYS}

    def to_dict(self) -> dict:
        def d(p: RegionPrices) -> dict:
            return {k: getattr(p, k) for k in PRICE_KEYS}

        return {
            "view_bytes_fraction": self.view_bytes_fraction,
            "default_video_size_bytes": self.default_video_size_bytes,
            "default": d(self.default),
            "regions": {r: d(p) for r, p in sorted(self.regions.items())},
        }


def _read_prices(obj: object, base: RegionPrices, where: str) -> RegionPrices:
    if not isinstance(obj, dict):
        raise CostsError(f"{where} must be a table/object of prices")
    unknown = set(obj) - set(PRICE_KEYS)
    if unknown:
        raise CostsError(f"{where}: unknown price key(s) {sorted(unknown)}; known: {list(PRICE_KEYS)}")
    values = {}
    for k, v in obj.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
            raise CostsError(f"{where}.{k} must be a non-negative number, got {v!r}")
        values[k] = float(v)
    return replace(base, **values)


def cost_model_from_dict(data: dict) -> CostModel:
    """Build a CostModel from the parsed costs file; anything omitted keeps its default.

    Schema (JSON shown; TOML has the same tables):
      {"view_bytes_fraction": 0.06, "default_video_size_bytes": 768000000,
       "default": {<price keys>}, "regions": {"US": {<price keys>}, ...}}
    A region's missing keys come from the built-in defaults for that region, else `default`.
    """
    if not isinstance(data, dict):
        raise CostsError("costs file must hold an object/table at the top level")
    allowed = {"view_bytes_fraction", "default_video_size_bytes", "default", "regions"}
    unknown = set(data) - allowed
    if unknown:
        raise CostsError(f"unknown top-level key(s) {sorted(unknown)}; known: {sorted(allowed)}")
    base = CostModel()
    default = _read_prices(data.get("default", {}), base.default, "default")
    regions = dict(base.regions)
    raw_regions = data.get("regions", {})
    if not isinstance(raw_regions, dict):
        raise CostsError("regions must be a table/object keyed by region code")
    for name, obj in raw_regions.items():
        regions[str(name)] = _read_prices(obj, base.regions.get(str(name), default), f"regions.{name}")
    out = {}
    for key in ("view_bytes_fraction", "default_video_size_bytes"):
        if key in data:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
                raise CostsError(f"{key} must be a positive number, got {v!r}")
            out[key] = float(v)
    return CostModel(regions=regions, default=default, **out)


def load_costs(path: str | pathlib.Path) -> CostModel:
    """Read a costs file: TOML if it ends in .toml, JSON otherwise."""
    p = pathlib.Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CostsError(f"cannot read costs file {p}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise CostsError(f"costs file {p} is not valid {'TOML' if p.suffix.lower() == '.toml' else 'JSON'}: {exc}") from None
    return cost_model_from_dict(data)


@dataclass
class Pricer:
    """A CostModel bound to one data set's regions and video sizes: prices whole days at once."""

    costs: CostModel
    regions: list[str]
    size_bytes: np.ndarray  # (n_videos,)

    def __post_init__(self) -> None:
        a = self.costs.arrays(self.regions)
        self.p = a
        self.size_gb = np.asarray(self.size_bytes, dtype=np.float64) / GB
        self.view_gb = self.size_gb * self.costs.view_bytes_fraction
        # Per region: $ saved per view-GB at the edge, and $ per stored GB for fill / storage.
        self.saving = a["origin_delivery_per_gb"] + a["qoe_penalty_per_gb"] - a["cdn_delivery_per_gb"]

    def day_parts(self, views: np.ndarray, edge: np.ndarray, fill: np.ndarray) -> dict[str, float]:
        """Cost parts of one day. views, edge, fill: (n_videos, n_regions); edge/fill boolean.

        `edge` means the pair sits on the edge that day (pays storage, its views are served
        there); `fill` means it was copied there that day (pays the fill)."""
        p = self.p
        gb = views * self.view_gb[:, None]
        edge_gb = np.where(edge, gb, 0.0)
        origin_gb = gb - edge_gb
        stored = np.where(edge, self.size_gb[:, None], 0.0)
        filled = np.where(fill, self.size_gb[:, None], 0.0)
        return {
            "cdn_delivery": float(edge_gb.sum(0) @ p["cdn_delivery_per_gb"]),
            "cdn_fill": float(filled.sum(0) @ p["cdn_fill_per_gb"]),
            "cdn_storage": float(stored.sum(0) @ p["cdn_storage_per_gb_day"]),
            "origin_delivery": float(origin_gb.sum(0) @ p["origin_delivery_per_gb"]),
            "qoe_penalty": float(origin_gb.sum(0) @ p["qoe_penalty_per_gb"]),
            "_edge_gb": float(edge_gb.sum()),
            "_total_gb": float(gb.sum()),
            "_stored_gb": float(stored.sum()),
        }

    def pair_costs(self, views: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pair, for a stack of days (..., n_videos, n_regions): cost if served from the
        edge (storage + delivery, no fill), cost if served from origin, and the fill cost."""
        p = self.p
        gb = views * self.view_gb[:, None]
        edge = self.size_gb[:, None] * p["cdn_storage_per_gb_day"] + gb * p["cdn_delivery_per_gb"]
        origin = gb * (p["origin_delivery_per_gb"] + p["qoe_penalty_per_gb"])
        fill = np.broadcast_to(self.size_gb[:, None] * p["cdn_fill_per_gb"], views.shape[-2:])
        return edge, origin, fill
