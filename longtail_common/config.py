"""Configuration: one TOML file plus LONGTAIL_* environment overrides.

Embedded backends are the default, so `longtail up` needs no file at all. Environment
overrides use `LONGTAIL_<SECTION>__<KEY>` (double underscore between section and key),
e.g. `LONGTAIL_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tomllib
from dataclasses import dataclass, field


@dataclass
class BackendsConfig:
    metadata: str = "sqlite"  # sqlite | scylla
    objects: str = "fs"  # fs | s3
    topics: str = "local"  # local | kafka


@dataclass
class ScyllaConfig:
    contact_points: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    port: int = 9042
    keyspace: str = "longtail"
    local_dc: str = ""
    replication: str = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    consistency: str = "LOCAL_QUORUM"
    username: str = ""
    password: str = ""


@dataclass
class S3Config:
    endpoint: str = "127.0.0.1:9000"
    access_key: str = ""
    secret_key: str = ""
    secure: bool = False
    region: str = "us-east-1"
    bucket_prefix: str = "longtail-"


@dataclass
class KafkaConfig:
    bootstrap_servers: str = "127.0.0.1:9092"
    partitions: int = 4
    replication_factor: int = 1


@dataclass
class ServicesConfig:
    """gRPC addresses of the services (host:port). The launcher fills these in."""

    metadata: str = "127.0.0.1:50051"
    upload: str = "127.0.0.1:50052"
    transcoder: str = "127.0.0.1:50053"
    placement: str = "127.0.0.1:50054"
    search: str = "127.0.0.1:50055"


@dataclass
class PlatformConfig:
    # CDN regions placement decides for.
    regions: list[str] = field(default_factory=lambda: ["US", "GB", "DE", "JP", "BR", "IN"])
    default_region: str = "US"
    # Raw uploads are deleted this long after their video is READY (FAILED ones are kept).
    raw_retention_s: int = 86400
    # How often upload_svc sweeps the raw bucket for such files.
    raw_sweep_interval_s: int = 3600
    # Max upload size the gateway accepts.
    max_upload_bytes: int = 8 * 1024**3
    transcode_max_attempts: int = 3
    transcode_timeout_s: int = 3600


@dataclass
class TranscoderConfig:
    # Codec families every video is encoded in; H.264 is always added (it plays everywhere).
    codecs: list[str] = field(default_factory=lambda: ["h264"])
    # Families added later to the videos the placement model expects to be popular: AV1 gives
    # H.264's picture for about 0.65-0.75 of its bits (BENCHMARKS.md), but the encode and a
    # second ladder to store only pay where many views share them. The daily placement job asks for
    # them (a codec upgrade on the transcode topic); nothing already encoded is removed.
    popular_codecs: list[str] = field(default_factory=lambda: ["av1"])
    # "Popular": the day's predicted views, summed over the regions, at least this many
    # (0 = every READY video). 1000: one day's views then repay the AV1 encode and a month of
    # storing it even at the cheapest CDN price, with about half the players taking AV1
    # (break-even 98-561 views on bench/codec_bench.py's clips; BENCHMARKS.md).
    popular_min_daily_views: float = 1000.0
    # How each rung of the default ladder spends bits: "constant_quality" (an x264 CRF per
    # rung under a peak cap from a bits-per-pixel table: easy content gets the few bits it
    # needs; BENCHMARKS.md "Fewer bits than PeerTube") or "average" (fixed bitrates per rung).
    rate_control: str = "constant_quality"
    # Per-title bitrates (VMAF on a sample) instead of the default ladder: it costs an
    # analysis per upload and, on short videos, saves less per CPU-second than constant
    # quality (BENCHMARKS.md), so it is off by default.
    per_title: bool = False
    # A codec upgrade (a video expected to be popular) also re-encodes H.264 at this slower
    # x264 preset, which every player that does not take the added families gets; "" keeps
    # the first encode's H.264. slow: 8 % fewer bits than the default ladder at equal VMAF,
    # repaid after 1,600-3,500 views at the cheapest CDN price, 180-390 at origin prices
    # (bench/peer_bench.py; BENCHMARKS.md "Fewer bits than PeerTube").
    popular_x264_preset: str = "slow"
    # Sources beyond these are rejected before any work, with the reason.
    max_duration_s: int = 4 * 3600
    max_long_side: int = 4096
    max_short_side: int = 2160
    max_source_bytes: int = 8 * 1024**3
    # Scrubbing-preview sprite + WebVTT index.
    storyboard: bool = True
    # Chunked parallel transcoding: videos longer than chunk_min_duration_s (0 = never) are
    # cut into chunk_seconds pieces that any worker encodes; the last one joins them.
    chunk_seconds: int = 20
    chunk_min_duration_s: int = 0


@dataclass
class TelemetryConfig:
    # OTLP/HTTP endpoint of an OpenTelemetry Collector (e.g. http://otel-collector:4318); "" = none.
    otlp_endpoint: str = ""
    # false = no tracing at all (no SDK, no span interceptors): the benchmark's baseline.
    tracing: bool = True
    # Also write finished spans as JSON lines under DATA_DIR/traces/ (read by `longtail traces`).
    local_traces: bool = True
    # Serve Prometheus metrics on this port (0 = an ephemeral port recorded in
    # DATA_DIR/metrics/<process>.port; -1 = no metrics endpoint).
    prometheus_port: int = 0


@dataclass
class LauncherConfig:
    # A service that exits is restarted forever, after restart_initial_delay_s doubling at
    # each consecutive restart up to restart_max_delay_s (a crash loop costs little, a
    # transient fault heals on its own). Once it has been alive and SERVING for
    # restart_reset_after_s, the next restart waits the initial delay again.
    restart_initial_delay_s: float = 1.0
    restart_max_delay_s: float = 30.0
    restart_reset_after_s: float = 60.0


@dataclass
class Config:
    data_dir: str = ".longtail"
    backends: BackendsConfig = field(default_factory=BackendsConfig)
    scylla: ScyllaConfig = field(default_factory=ScyllaConfig)
    s3: S3Config = field(default_factory=S3Config)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    services: ServicesConfig = field(default_factory=ServicesConfig)
    platform: PlatformConfig = field(default_factory=PlatformConfig)
    transcoder: TranscoderConfig = field(default_factory=TranscoderConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)

    @property
    def data_path(self) -> pathlib.Path:
        return pathlib.Path(self.data_dir).resolve()

    def to_env(self) -> dict[str, str]:
        """The whole config as one env var, so child processes see exactly this config."""
        return {"LONGTAIL_CONFIG_JSON": json.dumps(dataclasses.asdict(self))}


def _coerce(current, raw: str):
    if isinstance(current, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    if isinstance(current, list):
        return [x.strip() for x in raw.split(",") if x.strip()]
    return raw


def _apply(obj, data: dict) -> None:
    for key, value in data.items():
        if not hasattr(obj, key):
            raise ValueError(f"unknown config key {key!r} in [{type(obj).__name__}]")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"config section {key!r} must be a table")
            _apply(current, value)
        else:
            setattr(obj, key, value)


def load_config(path: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ if env is None else env)
    cfg = Config()
    if env.get("LONGTAIL_CONFIG_JSON"):
        _apply(cfg, json.loads(env["LONGTAIL_CONFIG_JSON"]))
        return cfg
    path = path or env.get("LONGTAIL_CONFIG")
    if path:
        with open(path, "rb") as fh:
            _apply(cfg, tomllib.load(fh))
    if env.get("LONGTAIL_DATA_DIR"):
        cfg.data_dir = env["LONGTAIL_DATA_DIR"]
    for name, raw in env.items():
        if not name.startswith("LONGTAIL_") or "__" not in name:
            continue
        section, _, key = name[len("LONGTAIL_"):].lower().partition("__")
        target = getattr(cfg, section, None)
        if target is None or not dataclasses.is_dataclass(target) or not hasattr(target, key):
            raise ValueError(f"unknown config override {name}")
        setattr(target, key, _coerce(getattr(target, key), raw))
    return cfg
