"""Configuration: one TOML file plus LONGTAIL_* environment overrides.

Embedded backends are the default, so `longtail up` needs no file at all. Environment
overrides use `LONGTAIL_<SECTION>__<KEY>` (double underscore between section and key, and
between nested sections), e.g. `LONGTAIL_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092` or
`LONGTAIL_AUTH__OIDC__ISSUER=https://id.example.org/realms/longtail`.
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
    # Where browsers reach the store, for the presigned URLs of segments and posters
    # (scheme://host[:port], no path): e.g. the fleet's load balancer, which routes the
    # media bucket's path to the store with the Host header kept (the signature covers it).
    # "" = endpoint itself.
    public_url: str = ""


@dataclass
class KafkaConfig:
    bootstrap_servers: str = "127.0.0.1:9092"
    partitions: int = 4
    replication_factor: int = 1


@dataclass
class ServicesConfig:
    """gRPC targets of the services. The launcher fills these in.

    Any gRPC target: `host:port` (or `dns:///host:port`) balances round robin over every
    address the name resolves to (every replica: a compose service, a headless Kubernetes
    Service); `ipv4:10.0.0.1:50051,10.0.0.2:50051` is a static set of replicas.
    """

    metadata: str = "127.0.0.1:50051"
    upload: str = "127.0.0.1:50052"
    transcoder: str = "127.0.0.1:50053"
    placement: str = "127.0.0.1:50054"
    search: str = "127.0.0.1:50055"
    webhook: str = "127.0.0.1:50056"
    # The address this process's own gRPC server binds (e.g. 0.0.0.0:50051), when its
    # service's entry above is a target naming every replica rather than this one; "" = bind
    # that entry. Per process: the launcher sets it for the nodes of a fleet (LONGTAIL_SERVICES__LISTEN).
    listen: str = ""


@dataclass
class MeshConfig:
    """How services reach each other: mutual TLS, keepalive and connection ageing."""

    # Mutual TLS on every gRPC connection: a server refuses a client without a certificate
    # from the mesh CA. false = plain text, for local development and tests that start
    # services by hand.
    tls: bool = True
    # A directory as `longtail certs` lays it out: ca.crt, and <identity>.crt/.key for each
    # service. "" = DATA_DIR/tls, where `longtail up` creates a single-machine CA.
    tls_dir: str = ""
    # The certificate this process presents from tls_dir: its service's name (the launcher
    # sets each one's; "admin" is the operator's, for CLI jobs and tests).
    identity: str = "admin"
    # Single PEM files instead (an operator's CA: a cert-manager Secret, a SPIFFE helper's
    # files); each one set wins over tls_dir.
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    # Clients ping an idle connection this often, and drop it if no answer comes in time,
    # so a replica that vanished (a lost machine) leaves the balancer in seconds.
    keepalive_time_s: float = 20.0
    keepalive_timeout_s: float = 10.0
    # Servers close connections this old (calls in flight get max_connection_age_grace_s),
    # so clients re-resolve DNS names and spread over replicas added since.
    max_connection_age_s: float = 300.0
    max_connection_age_grace_s: float = 3600.0


@dataclass
class PlatformConfig:
    # The address viewers reach the gateway at (e.g. https://video.example.org): every absolute
    # URL the gateway hands out (stream, poster and upload URLs) and the links handed out of
    # band (password links) start with it, never with a client's Host header. "" (development)
    # = the address of the socket a client reached (http://127.0.0.1:<gateway port> for links).
    public_url: str = ""
    # CDN regions placement decides for.
    regions: list[str] = field(default_factory=lambda: ["US", "GB", "DE", "JP", "BR", "IN"])
    default_region: str = "US"
    # Raw uploads are deleted this long after their video is READY (FAILED ones are kept).
    raw_retention_s: int = 86400
    # How often upload_svc sweeps the raw bucket for such files.
    raw_sweep_interval_s: int = 3600
    # Max upload size the gateway accepts.
    max_upload_bytes: int = 8 * 1024**3
    # An unfinished upload untouched (no append) this long expires: upload_svc deletes its
    # staged bytes and its video (tus Upload-Expires).
    upload_expiry_s: int = 86400
    # How often upload_svc sweeps for expired uploads.
    upload_sweep_interval_s: int = 600
    # An append holds its upload for this long, renewed as it goes; a replica that dies
    # mid-append blocks other appends of that upload (409) for at most this long.
    upload_lease_s: int = 10
    transcode_max_attempts: int = 3
    transcode_timeout_s: int = 3600


@dataclass
class PlacementConfig:
    # The measured QoE penalty (`longtail placement qoe`, longtail_common/qoe.py): what one
    # viewer lost to a slow start is worth (USD; an assumption: ad revenue of a view at a
    # $2 RPM), the days of player beacons it reads, and the playbacks a region needs on
    # both origin and edge before its measured penalty replaces the configured one.
    qoe_value_per_view_usd: float = 0.002
    qoe_days: int = 28
    qoe_min_playbacks: int = 200


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
    # the first encode's H.264. slow: 2 % fewer bits than the default ladder at equal VMAF
    # (the default's small rungs already take slow presets), repaid after 3,300-42,000 views
    # at the cheapest CDN price, 370-4,700 at origin prices (bench/peer_bench.py;
    # BENCHMARKS.md "Fewer bits than PeerTube").
    popular_x264_preset: str = "slow"
    # ... and encodes the added AV1 at this SVT-AV1 preset (0 slowest .. 13 fastest; a first
    # encode configured with AV1 in `codecs` takes LONGTAIL_SVTAV1_PRESET, 10). 8: on friday,
    # BBB and cockatoo (6 s) -21 % bits against the default H.264 ladder at equal VMAF, where 10
    # gave -13 %, for 1.2-1.5x its CPU (10: 0.6-0.75x; 6: -27 % at 1.9-2.2x): BENCHMARKS.md
    # "Fewer bits than PeerTube".
    popular_svtav1_preset: int = 8
    # The top rung's check (transcoder_svc/top_rung.py): after a first encode, its top H.264
    # rung is scored (VMAF against the source, every top_rung_vmaf_subsample-th frame) and,
    # under top_rung_min_vmaf, encoded once more at the CRF estimated to reach it (VMAF per
    # CRF step top_rung_vmaf_per_crf, not below top_rung_min_crf) before anything is stored.
    # 93: issue 29's floor for the rung big screens get; 0 = no check. It costs a VMAF pass
    # per upload and a top-rung encode where it falls short (BENCHMARKS.md "Fewer bits than
    # PeerTube").
    top_rung_min_vmaf: float = 93.0
    top_rung_vmaf_per_crf: float = 1.0
    top_rung_min_crf: float = 18.0
    top_rung_vmaf_subsample: int = 4
    # ... scored only when x264's own PSNR of it (luma, mean over its frames; the encoder
    # computes it for ~1 % of its time) is under this many dB: on the bench's ten clips every
    # top rung at 47.2 dB or more scored VMAF 94.7 or more, and the two short of 93 measured
    # 41.3 and 42.9 dB (BENCHMARKS.md "Fewer bits than PeerTube"). 0: score every top rung.
    top_rung_score_below_psnr_db: float = 46.0
    # Automatic captions: once a video with sound is READY, placement asks the transcoders
    # (a job on transcode.requests) to transcribe its speech into a caption marked
    # automatic, in asr_language. Off by default: the offline engine's English model is far
    # less accurate than Whisper (BENCHMARKS.md "Automatic captions").
    automatic_captions: bool = False
    # "pocketsphinx" (its wheel ships the English model: nothing is downloaded), or
    # "package.module:Class" for a stronger engine (transcoder_svc/asr.py SpeechEngine).
    asr_engine: str = "pocketsphinx"
    asr_language: str = "en"
    # Letterboxed or pillarboxed sources: encode only the picture inside the black bars
    # (cropdetect on the keyframes) and let the player letterbox it; rung names and display
    # proportions stay the frame's. No bit is spent on black edges.
    crop_black_bars: bool = True
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
class PlaybackConfig:
    """Signed playback: stream URLs and playback ids carry an HMAC-SHA256 signature (itsdangerous)."""

    # The signing secret. "" = the file secret_file, else DATA_DIR/playback.secret, made at the
    # first start (mode 0600) and shared by every gateway process that reads the same file;
    # gateways on several machines need the same one (LONGTAIL_PLAYBACK__SECRET on each, or
    # a secret_file on a volume they share).
    secret: str = ""
    secret_file: str = ""
    # How long a watch payload's stream URLs and playback id stay valid; players refresh the
    # payload before then.
    ttl_s: int = 4 * 3600
    # Stream URL expiries are rounded up to a multiple of this: every viewer of a public video
    # in one window gets the same URLs (one CDN cache entry per object per window).
    window_s: int = 3600
    # false = unsigned stream URLs, and unsigned requests served: the signing benchmark's
    # baseline, never a public site.
    signed: bool = True
    # Playback ids one gateway process remembers (starts counted once, bytes so far).
    ledger_size: int = 200_000


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
    # Head sampling of the gateway's fast path (anonymous get and watch calls of cached
    # videos, its busiest calls; gateway/fast_routes.py): ParentBased(TraceIdRatioBased).
    # A call whose caller sent a sampled traceparent is traced, one whose caller's is not
    # sampled is not, a new trace is kept with this probability (1.0 = every call). Every
    # other answer (errors included: the fast path answers only 200s) is traced as before.
    fast_path_sample_ratio: float = 0.01
    # ... and a call left out that took longer than this is traced anyway (a root span
    # linked to its caller's), at most fast_path_slow_traces_per_s per second per process.
    fast_path_keep_slower_than_ms: float = 20.0
    fast_path_slow_traces_per_s: int = 10


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
class OidcConfig:
    """An OpenID Connect provider (Keycloak, Dex, Google, ...) to sign in with; README
    "Plugging in an OIDC provider"."""

    # The provider's issuer URL (its discovery document is ISSUER/.well-known/openid-configuration);
    # "" = local accounts only.
    issuer: str = ""
    # The gateway's client at the provider: a confidential client with the standard
    # (authorization code) flow and the redirect URI PUBLIC_URL/auth/oidc/callback.
    client_id: str = ""
    client_secret: str = ""
    # Asked for at sign-in; "openid" must be among them.
    scopes: list[str] = field(default_factory=lambda: ["openid", "profile", "email"])
    # The REST API accepts the provider's access tokens (JWTs checked against its JWKS) whose
    # `aud` (or `azp`) names one of these; [] = the client id.
    audiences: list[str] = field(default_factory=list)
    # A person whose token lists this role in the claim `roles_claim` is an admin here (the
    # account's admin flag follows it at each sign-in); "" = admins are made with
    # `longtail users` only.
    admin_role: str = "admin"
    roles_claim: str = "roles"
    # The name of the sign-in button.
    display_name: str = "single sign-on"
    # How long the provider's discovery document and signing keys are kept before they are
    # fetched again (an unknown key id fetches them at once).
    jwks_cache_s: int = 3600


@dataclass
class AuthConfig:
    # Anyone may create an account from the sign-in page; off: only `longtail users add`
    # (or an admin) creates accounts.
    open_signup: bool = False
    # How long a one-time password link (`longtail users add`) works.
    password_link_ttl_s: int = 7 * 86400
    # Shortest password accepted (NIST SP 800-63B: at least 8; no composition rules).
    min_password_length: int = 8
    # Weakest password accepted, as zxcvbn scores guessability: 0 (any), 1, 2 (the default:
    # not among the ~10^8 likeliest guesses: common passwords, words, names, dates, keyboard
    # walks, the username), 3, 4. A refused password's error says why.
    min_password_strength: int = 2
    # Longest life of a personal API token, in days (0 = tokens may never expire). When set,
    # a token asked for without an expiry gets this one.
    token_max_expiry_days: int = 0
    # A browser session ends this long after sign-in (it is kept server-side, in the account
    # store, so sign-out and disabling the account end it at once on every gateway).
    session_ttl_s: int = 14 * 86400
    # Failed sign-ins allowed per username, and per client address, within the window; more
    # are refused (429) until the window has moved past them.
    sign_in_max_failures: int = 5
    sign_in_failure_window_s: int = 300
    # The key that signs principals between the gateway and the services (gRPC metadata).
    # "" = the file mesh_secret_file, else DATA_DIR/mesh.secret, made at the first start
    # (mode 0600) and shared by every process of the machine; processes on several machines
    # need the same one (set LONGTAIL_AUTH__MESH_SECRET, or a shared mesh_secret_file).
    mesh_secret: str = ""
    mesh_secret_file: str = ""
    # How long a signed principal stays valid (a call checks it when it starts).
    mesh_token_ttl_s: int = 120
    oidc: OidcConfig = field(default_factory=OidcConfig)


@dataclass
class HttpConfig:
    """What one HTTP client may hold at the gateway, so none can starve the others."""

    # A request whose body sends nothing for this long is answered 408 and its connection closed.
    body_idle_timeout_s: float = 30.0
    # An idle keep-alive connection is closed after this long (uvicorn's timeout_keep_alive).
    keep_alive_timeout_s: float = 5.0
    # The largest request body outside the tus PATCH (413 beyond it).
    max_body_bytes: int = 1024**2
    # A tus PATCH body is buffered at the gateway and sent on to upload_svc in pieces of this
    # size, each its own short AppendUpload call: an upload_svc thread is held only while
    # bytes move, never while a slow client is silent. 8 MiB is above S3's 5 MiB part minimum.
    upload_chunk_bytes: int = 8 * 1024**2
    # /healthz asks each service's grpc.health.v1 with this deadline, and reuses the
    # answers for health_cache_s (a load balancer probing often costs the services little).
    health_timeout_s: float = 1.0
    health_cache_s: float = 1.0


@dataclass
class DownloadsConfig:
    """Download files (progressive MP4 of a rung, audio-only M4A), remuxed from the stored
    renditions by the transcoder: on the owner's request, or for every video (Mux's
    static renditions)."""

    # Whether viewers may download a video whose owner has not said (its download_policy).
    allowed_by_default: bool = True
    # Made for every video after its first encode: MP4s of the H.264 rungs of these heights
    # (0 = the top rung; a height the video lacks takes the largest rung below it), and an
    # M4A when auto_m4a. Empty and false: only on request.
    auto_mp4_heights: list[int] = field(default_factory=list)
    auto_m4a: bool = False


@dataclass
class ThumbnailsConfig:
    """Posters chosen by their owner and thumbnails of any moment (gateway/frames.py)."""

    # Thumbnail-at-time requests are rounded to this step (seconds) and cached per (time,
    # width) in the media bucket: at most duration / step x len(widths) images per video.
    time_step_s: float = 0.5
    # The widths a thumbnail may be asked at (anything else is a 400).
    widths: list[int] = field(default_factory=lambda: [80, 120, 160, 240, 320, 480, 640, 960, 1280])
    # An uploaded poster (JPEG or PNG): at most this many bytes (also capped by
    # http.max_body_bytes) and pixels per side; stored re-encoded as JPEG (metadata dropped).
    max_poster_bytes: int = 1024**2
    max_poster_side: int = 4096
    # ffmpeg runs at once per gateway process for thumbnails and posters, and each one's limit.
    max_concurrent_frames: int = 2
    frame_timeout_s: float = 20.0


@dataclass
class GatewayConfig:
    """Each gateway process's cache of the videos it serves (gateway/video_cache.py)."""

    # A cached video is dropped at once when metadata publishes its change (video.changed);
    # this is the safety net: how long a change whose event was missed can go unseen.
    video_cache_ttl_s: float = 2.0
    # Videos one process keeps (least recently used dropped first).
    video_cache_size: int = 100_000
    # Anonymous get/watch calls on cached videos and signed origin bytes on the embedded store
    # answered ahead of FastAPI's routing and middleware (gateway/fast_routes.py); off: every
    # request takes its FastAPI route (the load benchmark's comparison).
    fast_routes: bool = True


@dataclass
class AudioTracksConfig:
    """Alternate audio tracks (dubs, audio description) uploaded by a video's owner and
    encoded by the transcoder (gateway/routes/audio_tracks.py)."""

    # An uploaded track's file (audio, or a video whose sound is taken), bytes: 413 beyond.
    max_upload_bytes: int = 512 * 1024 * 1024
    # Tracks per video (every (language, kind) pair counts once; a replacement is free).
    max_tracks_per_video: int = 16


@dataclass
class LimitsConfig:
    """Rate limits per client address and per account, shared by every gateway process (the
    `limits` library's sliding window counter), and per-account quotas. A rate is the
    library's notation ("50 per 10 seconds"); "" turns that limit off."""

    enabled: bool = True
    # Where the counters live: "" = beside the metadata (SQLite in DATA_DIR, shared by the
    # gateway processes of one machine; the Scylla/Cassandra keyspace, shared by all).
    storage: str = ""  # "" | sqlite | scylla
    # PeerTube's API default is 50 requests per 10 s per address (rates_limit.api); reads
    # get four times that (a page, its watch call and a few listings each).
    reads_per_address: str = "200 per 10 seconds"
    writes_per_address: str = "50 per 10 seconds"
    writes_per_account: str = "50 per 10 seconds"
    # View beacons: a player sends a few a minute; several viewers may share one address.
    beacons_per_address: str = "100 per 10 seconds"
    # PeerTube's login default: 15 per 5 minutes per address (rates_limit.login).
    sign_in_per_address: str = "15 per 5 minutes"
    # POSTs to these paths are sign-in attempts.
    sign_in_paths: list[str] = field(default_factory=lambda: ["/account/sign-in", "/account/sign-up",
                                                              "/account/set-password"])
    # Peers (addresses or CIDR networks) whose X-Forwarded-For names the client: the
    # reverse proxies or load balancers in front of the gateway. Empty: the socket peer is
    # the client, and X-Forwarded-For is ignored.
    trusted_proxies: list[str] = field(default_factory=list)
    # Client addresses (or networks) never rate limited; quotas still apply. Loopback: the
    # machine's own tools and tests (fail2ban's ignoreip default does the same).
    exempt_addresses: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    # Per-account quotas (admins are exempt): the sum of the account's videos' source sizes
    # (FAILED ones not counted), and videos created in the last 24 h. 0 = no quota.
    storage_quota_bytes: int = 10 * 1024**3
    uploads_per_day: int = 20


@dataclass
class WebhooksConfig:
    """Creators' webhooks (webhook_svc): delivery, retries and which receivers are allowed."""

    # Fernet keys (URL-safe base64 of 32 bytes) that encrypt the stored signing secrets; the
    # first encrypts, all decrypt (rotation). Empty: one key derived from DATA_DIR/webhook.key,
    # made at the first start (0600). Better: LONGTAIL_WEBHOOKS__ENCRYPTION_KEYS.
    encryption_keys: list[str] = field(default_factory=list)
    # Receivers whose address is private, loopback, link-local or otherwise not global are
    # refused (SSRF), unless inside one of these networks (CIDRs).
    allow_networks: list[str] = field(default_factory=list)
    # The first retry waits retry_initial_s, each next one twice as long up to
    # retry_max_interval_s; none starts later than retry_for_s after the first attempt.
    retry_initial_s: float = 5.0
    retry_max_interval_s: float = 3600.0
    retry_for_s: float = 86400.0
    # One attempt's limit (connect + answer); the answer is read up to 4 KiB.
    timeout_s: float = 15.0
    # How often the deliverer looks for due deliveries, and how many it sends at once.
    poll_interval_s: float = 0.5
    concurrency: int = 8
    max_endpoints_per_account: int = 20


@dataclass
class Config:
    data_dir: str = ".longtail"
    backends: BackendsConfig = field(default_factory=BackendsConfig)
    scylla: ScyllaConfig = field(default_factory=ScyllaConfig)
    s3: S3Config = field(default_factory=S3Config)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    services: ServicesConfig = field(default_factory=ServicesConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    platform: PlatformConfig = field(default_factory=PlatformConfig)
    transcoder: TranscoderConfig = field(default_factory=TranscoderConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    playback: PlaybackConfig = field(default_factory=PlaybackConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    downloads: DownloadsConfig = field(default_factory=DownloadsConfig)
    audio_tracks: AudioTracksConfig = field(default_factory=AudioTracksConfig)
    thumbnails: ThumbnailsConfig = field(default_factory=ThumbnailsConfig)

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
        *sections, key = name[len("LONGTAIL_"):].lower().split("__")
        target = cfg
        for section in sections:  # LONGTAIL_AUTH__OIDC__ISSUER: nested sections
            target = getattr(target, section, None)
            if target is None or not dataclasses.is_dataclass(target):
                break
        if target is None or not dataclasses.is_dataclass(target) or not hasattr(target, key):
            raise ValueError(f"unknown config override {name}")
        setattr(target, key, _coerce(getattr(target, key), raw))
    return cfg
