"""Embedded webhook backend: endpoints and deliveries in SQLite (WAL) under the data directory.

`deliveries` is indexed by (state, next_attempt_us), which is the due index: a pending
delivery is found by a range read, and a compare-and-set on `version` is one UPDATE.
"""
from __future__ import annotations

import base64
import json
import pathlib
import sqlite3
import threading

from longtail_common.ports import (
    DELIVERY_PENDING,
    AlreadyExistsError,
    DeliveryRecord,
    WebhookEndpointRecord,
    validate_id,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (
    webhook_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, url TEXT NOT NULL, secret_ciphertext BLOB NOT NULL,
    event_types TEXT NOT NULL, description TEXT NOT NULL, create_time_us INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS endpoints_by_account ON endpoints (account_id, create_time_us);
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, account_id TEXT NOT NULL, event_id TEXT NOT NULL,
    event_type TEXT NOT NULL, payload TEXT NOT NULL, create_time_us INTEGER NOT NULL, state TEXT NOT NULL,
    next_attempt_us INTEGER NOT NULL, first_attempt_us INTEGER NOT NULL, attempt_count INTEGER NOT NULL,
    attempts_json TEXT NOT NULL, version INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS deliveries_by_webhook ON deliveries (webhook_id, create_time_us, delivery_id);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_us);
"""
_ENDPOINT_COLUMNS = "webhook_id, account_id, url, secret_ciphertext, event_types, description, create_time_us"
_DELIVERY_COLUMNS = ("delivery_id, webhook_id, account_id, event_id, event_type, payload, create_time_us, state, "
                     "next_attempt_us, first_attempt_us, attempt_count, attempts_json, version")


def _endpoint(row) -> WebhookEndpointRecord:
    return WebhookEndpointRecord(webhook_id=row[0], account_id=row[1], url=row[2], secret_ciphertext=bytes(row[3]),
                                 event_types=tuple(json.loads(row[4])), description=row[5], create_time_us=row[6])


def _delivery(row) -> DeliveryRecord:
    return DeliveryRecord(*row)


def _delivery_values(r: DeliveryRecord) -> tuple:
    return (r.delivery_id, r.webhook_id, r.account_id, r.event_id, r.event_type, r.payload, r.create_time_us,
            r.state, r.next_attempt_us, r.first_attempt_us, r.attempt_count, r.attempts_json, r.version)


def encode_cursor(create_time_us: int, delivery_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([create_time_us, delivery_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        create_time_us, delivery_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(create_time_us, int) or not isinstance(delivery_id, str):
            raise TypeError("cursor fields")
        return create_time_us, delivery_id
    except Exception as exc:  # noqa: BLE001 - any malformed cursor is the caller's error
        raise ValueError(f"invalid page token {cursor!r}") from exc


class SqliteWebhookStore:
    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    # -- endpoints --------------------------------------------------------------------------

    def create_endpoint(self, record: WebhookEndpointRecord) -> None:
        validate_id(record.webhook_id, "webhook id")
        try:
            self._conn().execute(f"INSERT INTO endpoints ({_ENDPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", (
                record.webhook_id, record.account_id, record.url, record.secret_ciphertext,
                json.dumps(list(record.event_types)), record.description, record.create_time_us))
        except sqlite3.IntegrityError as exc:
            raise AlreadyExistsError(f"webhook {record.webhook_id} already exists") from exc

    def get_endpoint(self, webhook_id: str) -> WebhookEndpointRecord | None:
        row = self._conn().execute(f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints WHERE webhook_id = ?",
                                   (webhook_id,)).fetchone()
        return _endpoint(row) if row else None

    def list_endpoints(self, account_id: str) -> list[WebhookEndpointRecord]:
        rows = self._conn().execute(f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints WHERE account_id = ? "
                                    "ORDER BY create_time_us DESC, webhook_id DESC", (account_id,)).fetchall()
        return [_endpoint(r) for r in rows]

    def delete_endpoint(self, webhook_id: str) -> bool:
        return self._conn().execute("DELETE FROM endpoints WHERE webhook_id = ?", (webhook_id,)).rowcount > 0

    # -- deliveries -------------------------------------------------------------------------

    def add_delivery(self, record: DeliveryRecord) -> bool:
        cursor = self._conn().execute(
            f"INSERT OR IGNORE INTO deliveries ({_DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _delivery_values(record))
        return cursor.rowcount > 0

    def get_delivery(self, delivery_id: str) -> DeliveryRecord | None:
        row = self._conn().execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE delivery_id = ?",
                                   (delivery_id,)).fetchone()
        return _delivery(row) if row else None

    def list_deliveries(self, webhook_id: str, page_size: int, cursor: str | None
                        ) -> tuple[list[DeliveryRecord], str | None]:
        after = decode_cursor(cursor) if cursor else None
        sql = f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE webhook_id = ?"
        args: list = [webhook_id]
        if after is not None:
            sql += " AND (create_time_us < ? OR (create_time_us = ? AND delivery_id < ?))"
            args += [after[0], after[0], after[1]]
        sql += " ORDER BY create_time_us DESC, delivery_id DESC LIMIT ?"
        rows = [_delivery(r) for r in self._conn().execute(sql, (*args, page_size + 1)).fetchall()]
        if len(rows) <= page_size:
            return rows, None
        last = rows[page_size - 1]
        return rows[:page_size], encode_cursor(last.create_time_us, last.delivery_id)

    def update_delivery(self, record: DeliveryRecord, expected_version: int) -> bool:
        values = _delivery_values(record)
        cursor = self._conn().execute(
            "UPDATE deliveries SET state = ?, next_attempt_us = ?, first_attempt_us = ?, attempt_count = ?, "
            "attempts_json = ?, version = ? WHERE delivery_id = ? AND version = ?",
            (*values[7:], record.delivery_id, expected_version))
        return cursor.rowcount > 0

    def due_deliveries(self, now_us: int, limit: int) -> list[DeliveryRecord]:
        rows = self._conn().execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE state = ? AND next_attempt_us <= ? "
            "ORDER BY next_attempt_us LIMIT ?", (DELIVERY_PENDING, now_us, limit)).fetchall()
        return [_delivery(r) for r in rows]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
