"""Backends of the ports in `longtail_common.ports`, and the factories that pick one by config."""
from __future__ import annotations

from longtail_common.config import Config
from longtail_common.ports import AccountStore, MetadataStore, ObjectStore, TopicBus, ViewCountStore, WebhookStore


def make_metadata_store(cfg: Config) -> MetadataStore:
    kind = cfg.backends.metadata
    if kind == "sqlite":
        from longtail_common.adapters.sqlite_metadata import SqliteMetadataStore

        return SqliteMetadataStore(cfg.data_path / "metadata.sqlite3")
    if kind == "scylla":
        from longtail_common.adapters.scylla_metadata import ScyllaMetadataStore

        return ScyllaMetadataStore(cfg.scylla)
    raise ValueError(f"unknown metadata backend {kind!r} (sqlite | scylla)")


def make_account_store(cfg: Config) -> AccountStore:
    """Accounts live in the metadata backend: the same SQLite file or Scylla keyspace."""
    kind = cfg.backends.metadata
    if kind == "sqlite":
        from longtail_common.adapters.sqlite_accounts import SqliteAccountStore

        return SqliteAccountStore(cfg.data_path / "metadata.sqlite3")
    if kind == "scylla":
        from longtail_common.adapters.scylla_accounts import ScyllaAccountStore

        return ScyllaAccountStore(cfg.scylla)
    raise ValueError(f"unknown metadata backend {kind!r} (sqlite | scylla)")


def make_webhook_store(cfg: Config) -> WebhookStore:
    """Webhook endpoints and deliveries live beside the metadata: their own SQLite file, or
    the same Scylla keyspace."""
    kind = cfg.backends.metadata
    if kind == "sqlite":
        from longtail_common.adapters.sqlite_webhooks import SqliteWebhookStore

        return SqliteWebhookStore(cfg.data_path / "webhooks.sqlite3")
    if kind == "scylla":
        from longtail_common.adapters.scylla_webhooks import ScyllaWebhookStore

        return ScyllaWebhookStore(cfg.scylla)
    raise ValueError(f"unknown metadata backend {kind!r} (sqlite | scylla)")


def make_view_count_store(cfg: Config) -> ViewCountStore:
    """Placement's daily view counts live beside the metadata (same backend choice)."""
    kind = cfg.backends.metadata
    if kind == "sqlite":
        from longtail_common.adapters.sqlite_viewcounts import SqliteViewCountStore

        return SqliteViewCountStore(cfg.data_path / "viewcounts.sqlite3")
    if kind == "scylla":
        from longtail_common.adapters.scylla_viewcounts import ScyllaViewCountStore

        return ScyllaViewCountStore(cfg.scylla)
    raise ValueError(f"unknown metadata backend {kind!r} for view counts (sqlite | scylla)")


def make_rate_limit_storage(cfg: Config):
    """The rate limiter's counters (a `limits` storage), shared by every gateway process:
    beside the metadata unless `limits.storage` names a backend."""
    kind = cfg.limits.storage or cfg.backends.metadata
    if kind == "sqlite":
        from longtail_common.adapters.sqlite_ratelimit import SqliteRateLimitStorage

        return SqliteRateLimitStorage(cfg.data_path / "ratelimit.sqlite3")
    if kind == "scylla":
        from longtail_common.adapters.scylla_ratelimit import ScyllaRateLimitStorage

        return ScyllaRateLimitStorage(cfg.scylla)
    raise ValueError(f"unknown rate limit storage {kind!r} (sqlite | scylla)")


def make_object_store(cfg: Config) -> ObjectStore:
    kind = cfg.backends.objects
    if kind == "fs":
        from longtail_common.adapters.fs_objects import FilesystemObjectStore

        return FilesystemObjectStore(cfg.data_path / "objects")
    if kind == "s3":
        from longtail_common.adapters.s3_objects import S3ObjectStore

        return S3ObjectStore(cfg.s3)
    raise ValueError(f"unknown object backend {kind!r} (fs | s3)")


def make_topic_bus(cfg: Config) -> TopicBus:
    """The configured bus, wrapped so publishes are traced and carry trace context."""
    from longtail_common.telemetry import TracingTopicBus

    return TracingTopicBus(_make_raw_topic_bus(cfg))


def _make_raw_topic_bus(cfg: Config) -> TopicBus:
    kind = cfg.backends.topics
    if kind == "local":
        from longtail_common.adapters.local_log import LocalTopicBus

        return LocalTopicBus(cfg.data_path / "topics")
    if kind == "kafka":
        from longtail_common.adapters.kafka_topics import KafkaTopicBus

        return KafkaTopicBus(cfg.kafka)
    raise ValueError(f"unknown topic backend {kind!r} (local | kafka)")
