"""Real webhook backend: endpoints and deliveries in the metadata's ScyllaDB (or Cassandra)
keyspace, through scylla-driver (tables: schema version 4 of `scylla_metadata.MIGRATIONS`).

* `webhook_endpoints` (partition `webhook_id`; `IF NOT EXISTS` on create) and
  `webhook_endpoints_by_account` (what an owner lists and what an event fans out to).
* `webhook_deliveries`, partition `delivery_id`: the truth about a delivery. A create is
  `IF NOT EXISTS` (a redelivered topic message adds nothing), an update is
  `UPDATE ... IF version = ?` (two deliverers never both claim an attempt).
* `webhook_deliveries_by_webhook`: the log an owner pages through, newest first.
* `webhook_due`, partitions `shard` 0..DUE_SHARDS-1 clustered by `next_attempt_us`: the
  schedule, read as a slice up to now. It is a hint kept in step with the deliveries: a new
  row is written *before* the delivery's write and the old one deleted after it, so a writer
  that dies in between leaves an extra row (dropped when it comes due and does not match
  the delivery), never a pending delivery without a row. Rows are deleted once used: on a
  busy deployment the shards collect tombstones until compaction (gc_grace_seconds), the
  usual price of a queue in Cassandra; the slice reads start from now - retry window, never
  from the partition's start, which keeps old tombstones out of reads.
"""
from __future__ import annotations

import json
import zlib

from longtail_common.adapters.scylla_metadata import ScyllaStore
from longtail_common.adapters.sqlite_webhooks import decode_cursor, encode_cursor
from longtail_common.ports import (
    DELIVERY_PENDING,
    AlreadyExistsError,
    DeliveryRecord,
    WebhookEndpointRecord,
    validate_id,
)

DUE_SHARDS = 4
# The due slice starts this long before now: pending deliveries are never older than the
# retry window (a day) plus slack; rows before it are only tombstones.
DUE_LOOKBACK_US = 8 * 86400 * 1_000_000

_ENDPOINT_COLUMNS = "webhook_id, account_id, url, secret_ciphertext, event_types, description, create_time_us"
_DELIVERY_COLUMNS = ("delivery_id, webhook_id, account_id, event_id, event_type, payload, create_time_us, state, "
                     "next_attempt_us, first_attempt_us, attempt_count, attempts_json, version")


def _shard(delivery_id: str) -> int:
    return zlib.crc32(delivery_id.encode()) % DUE_SHARDS


def _endpoint(row) -> WebhookEndpointRecord:
    return WebhookEndpointRecord(webhook_id=row.webhook_id, account_id=row.account_id, url=row.url,
                                 secret_ciphertext=bytes(row.secret_ciphertext or b""),
                                 event_types=tuple(json.loads(row.event_types or "[]")),
                                 description=row.description or "", create_time_us=int(row.create_time_us or 0))


def _delivery(row) -> DeliveryRecord:
    return DeliveryRecord(
        delivery_id=row.delivery_id, webhook_id=row.webhook_id, account_id=row.account_id or "",
        event_id=row.event_id or "", event_type=row.event_type or "", payload=row.payload or "",
        create_time_us=int(row.create_time_us or 0), state=row.state or "", next_attempt_us=int(row.next_attempt_us or 0),
        first_attempt_us=int(row.first_attempt_us or 0), attempt_count=int(row.attempt_count or 0),
        attempts_json=row.attempts_json or "[]", version=int(row.version or 0))


class ScyllaWebhookStore(ScyllaStore):
    def _prepare(self) -> None:
        ks, p = self._ks, self._session.prepare
        self._insert_endpoint = p(f"INSERT INTO {ks}.webhook_endpoints ({_ENDPOINT_COLUMNS}) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS")
        self._list_endpoint = p(f"INSERT INTO {ks}.webhook_endpoints_by_account (account_id, create_time_us, "
                                "webhook_id) VALUES (?, ?, ?)")
        self._select_endpoint = p(f"SELECT {_ENDPOINT_COLUMNS} FROM {ks}.webhook_endpoints WHERE webhook_id = ?")
        self._listed_endpoints = p(f"SELECT webhook_id FROM {ks}.webhook_endpoints_by_account "
                                   "WHERE account_id = ?")
        self._delete_endpoint = p(f"DELETE FROM {ks}.webhook_endpoints WHERE webhook_id = ? IF EXISTS")
        self._unlist_endpoint = p(f"DELETE FROM {ks}.webhook_endpoints_by_account "
                                  "WHERE account_id = ? AND create_time_us = ? AND webhook_id = ?")
        self._insert_delivery = p(f"INSERT INTO {ks}.webhook_deliveries ({_DELIVERY_COLUMNS}) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS")
        self._select_delivery = p(f"SELECT {_DELIVERY_COLUMNS} FROM {ks}.webhook_deliveries "
                                  "WHERE delivery_id = ?")
        self._cas_delivery = p(f"UPDATE {ks}.webhook_deliveries SET state = ?, next_attempt_us = ?, "
                               "first_attempt_us = ?, attempt_count = ?, attempts_json = ?, version = ? "
                               "WHERE delivery_id = ? IF version = ?")
        self._log_delivery = p(f"INSERT INTO {ks}.webhook_deliveries_by_webhook (webhook_id, create_time_us, "
                               "delivery_id) VALUES (?, ?, ?)")
        self._page_first = p(f"SELECT create_time_us, delivery_id FROM {ks}.webhook_deliveries_by_webhook "
                             "WHERE webhook_id = ? LIMIT ?")
        self._page_after = p(f"SELECT create_time_us, delivery_id FROM {ks}.webhook_deliveries_by_webhook "
                             "WHERE webhook_id = ? AND (create_time_us, delivery_id) < (?, ?) LIMIT ?")
        self._insert_due = p(f"INSERT INTO {ks}.webhook_due (shard, next_attempt_us, delivery_id) "
                             "VALUES (?, ?, ?)")
        self._delete_due = p(f"DELETE FROM {ks}.webhook_due WHERE shard = ? AND next_attempt_us = ? "
                             "AND delivery_id = ?")
        self._select_due = p(f"SELECT next_attempt_us, delivery_id FROM {ks}.webhook_due "
                             "WHERE shard = ? AND next_attempt_us >= ? AND next_attempt_us <= ? LIMIT ?")

    # -- endpoints --------------------------------------------------------------------------

    def create_endpoint(self, record: WebhookEndpointRecord) -> None:
        validate_id(record.webhook_id, "webhook id")
        # Listed first: an endpoint that exists is always listed (a listed id without an
        # endpoint is skipped by readers).
        self._execute("listing a webhook", self._list_endpoint,
                      (record.account_id, record.create_time_us, record.webhook_id))
        result = self._execute("creating a webhook", self._insert_endpoint, (
            record.webhook_id, record.account_id, record.url, record.secret_ciphertext,
            json.dumps(list(record.event_types)), record.description, record.create_time_us))
        if not result.was_applied:
            raise AlreadyExistsError(f"webhook {record.webhook_id} already exists")

    def get_endpoint(self, webhook_id: str) -> WebhookEndpointRecord | None:
        row = self._execute("reading a webhook", self._select_endpoint, (webhook_id,)).one()
        return _endpoint(row) if row else None

    def list_endpoints(self, account_id: str) -> list[WebhookEndpointRecord]:
        ids = [row.webhook_id for row in self._execute("listing webhooks", self._listed_endpoints, (account_id,))]
        found = (self.get_endpoint(webhook_id) for webhook_id in ids)
        return [e for e in found if e is not None and e.account_id == account_id]

    def delete_endpoint(self, webhook_id: str) -> bool:
        record = self.get_endpoint(webhook_id)
        if record is None:
            return False
        deleted = self._execute("deleting a webhook", self._delete_endpoint, (webhook_id,)).was_applied
        self._execute("unlisting a webhook", self._unlist_endpoint,
                      (record.account_id, record.create_time_us, webhook_id))
        return deleted

    # -- deliveries -------------------------------------------------------------------------

    def add_delivery(self, record: DeliveryRecord) -> bool:
        result = self._execute("adding a delivery", self._insert_delivery, (
            record.delivery_id, record.webhook_id, record.account_id, record.event_id, record.event_type,
            record.payload, record.create_time_us, record.state, record.next_attempt_us, record.first_attempt_us,
            record.attempt_count, record.attempts_json, record.version))
        # The index rows follow from what is stored: an add that died after its insert is
        # completed by the retry of its topic message, which lands here as "not applied".
        stored = record if result.was_applied else _delivery(result.one())
        self._execute("logging a delivery", self._log_delivery,
                      (stored.webhook_id, stored.create_time_us, stored.delivery_id))
        if stored.state == DELIVERY_PENDING:
            self._index_due(stored.next_attempt_us, stored.delivery_id)
        return bool(result.was_applied)

    def get_delivery(self, delivery_id: str) -> DeliveryRecord | None:
        row = self._execute("reading a delivery", self._select_delivery, (delivery_id,)).one()
        return _delivery(row) if row else None

    def list_deliveries(self, webhook_id: str, page_size: int, cursor: str | None
                        ) -> tuple[list[DeliveryRecord], str | None]:
        if cursor:
            after = decode_cursor(cursor)
            rows = self._execute("paging deliveries", self._page_after, (webhook_id, *after, page_size + 1))
        else:
            rows = self._execute("paging deliveries", self._page_first, (webhook_id, page_size + 1))
        keys = [(row.create_time_us, row.delivery_id) for row in rows]
        page = [d for d in (self.get_delivery(delivery_id) for _, delivery_id in keys[:page_size]) if d is not None]
        if len(keys) <= page_size:
            return page, None
        return page, encode_cursor(*keys[page_size - 1])

    def update_delivery(self, record: DeliveryRecord, expected_version: int) -> bool:
        old = self.get_delivery(record.delivery_id)
        if old is None or old.version != expected_version:
            return False
        if record.state == DELIVERY_PENDING:
            self._index_due(record.next_attempt_us, record.delivery_id)
        applied = self._execute("updating a delivery", self._cas_delivery, (
            record.state, record.next_attempt_us, record.first_attempt_us, record.attempt_count, record.attempts_json,
            record.version, record.delivery_id, expected_version)).was_applied
        moved = record.state != DELIVERY_PENDING or record.next_attempt_us != old.next_attempt_us
        if applied and old.state == DELIVERY_PENDING and moved:
            self._unindex_due(old.next_attempt_us, record.delivery_id)
        return bool(applied)

    def due_deliveries(self, now_us: int, limit: int) -> list[DeliveryRecord]:
        due: list[DeliveryRecord] = []
        for shard in range(DUE_SHARDS):
            rows = self._execute("reading the schedule", self._select_due,
                                 (shard, now_us - DUE_LOOKBACK_US, now_us, limit))
            for row in rows:
                delivery = self.get_delivery(row.delivery_id)
                if (delivery is not None and delivery.state == DELIVERY_PENDING
                        and delivery.next_attempt_us == row.next_attempt_us):
                    due.append(delivery)
                    continue
                if delivery is not None and delivery.state == DELIVERY_PENDING:
                    self._index_due(delivery.next_attempt_us, delivery.delivery_id)  # the row it should have
                self._unindex_due(row.next_attempt_us, row.delivery_id)  # a stale hint
        due.sort(key=lambda d: d.next_attempt_us)
        return due[:limit]

    def _index_due(self, next_attempt_us: int, delivery_id: str) -> None:
        self._execute("scheduling a delivery", self._insert_due, (_shard(delivery_id), next_attempt_us, delivery_id))

    def _unindex_due(self, next_attempt_us: int, delivery_id: str) -> None:
        self._execute("unscheduling a delivery", self._delete_due, (_shard(delivery_id), next_attempt_us, delivery_id))
