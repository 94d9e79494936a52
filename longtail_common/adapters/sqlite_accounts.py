"""Embedded account backend: accounts, password links, API tokens, browser sessions and
external identities in the metadata's SQLite file (WAL mode), so `longtail users ...` can write while the platform runs.

Secrets arrive hashed (see the AccountStore port); the username is UNIQUE in `accounts`.
"""
from __future__ import annotations

import base64
import pathlib
import sqlite3

from longtail_common.adapters.sqlite_metadata import ThreadConnections
from longtail_common.ports import (
    AccountRecord,
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    SessionRecord,
    TokenRecord,
    validate_id,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    admin INTEGER NOT NULL,
    disabled INTEGER NOT NULL,
    create_time_us INTEGER NOT NULL,
    update_time_us INTEGER NOT NULL,
    etag TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS password_links (
    link_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    expire_time_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    display_name TEXT NOT NULL,
    create_time_us INTEGER NOT NULL,
    expire_time_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS api_tokens_by_account ON api_tokens (account_id, create_time_us);
CREATE TABLE IF NOT EXISTS sessions (
    session_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    create_time_us INTEGER NOT NULL,
    expire_time_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expire_time_us);
CREATE TABLE IF NOT EXISTS external_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    account_id TEXT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
"""

_ACCOUNT_COLUMNS = ("account_id, username, email, password_hash, admin, disabled, create_time_us, "
                    "update_time_us, etag")
_TOKEN_COLUMNS = "token_id, account_id, secret_hash, display_name, create_time_us, expire_time_us"


def _account(row) -> AccountRecord:
    return AccountRecord(account_id=row[0], username=row[1], email=row[2], password_hash=row[3], admin=bool(row[4]),
                         disabled=bool(row[5]), create_time_us=row[6], update_time_us=row[7], etag=row[8])


def _encode_cursor(username: str) -> str:
    return base64.urlsafe_b64encode(username.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except Exception as exc:  # noqa: BLE001 - any malformed token is the caller's error
        raise ValueError(f"invalid page token {cursor!r}") from exc


class SqliteAccountStore:
    def __init__(self, path: str | pathlib.Path):
        self._connections = ThreadConnections(path)
        self._conn = self._connections.get
        self._conn().executescript(_SCHEMA)

    def create_account(self, record: AccountRecord) -> None:
        validate_id(record.account_id, "account id")
        try:
            self._conn().execute(
                f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                (record.account_id, record.username, record.email, record.password_hash, int(record.admin),
                 int(record.disabled), record.create_time_us, record.update_time_us, record.etag))
        except sqlite3.IntegrityError as exc:
            raise AlreadyExistsError(f"account {record.username} already exists") from exc

    def get_account(self, account_id: str) -> AccountRecord | None:
        row = self._conn().execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE account_id=?",
                                   (account_id,)).fetchone()
        return _account(row) if row else None

    def get_account_by_username(self, username: str) -> AccountRecord | None:
        row = self._conn().execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE username=?",
                                   (username,)).fetchone()
        return _account(row) if row else None

    def list_accounts(self, page_size: int, cursor: str | None) -> tuple[list[AccountRecord], str | None]:
        page_size = max(1, min(page_size or 50, 1000))
        after = _decode_cursor(cursor) if cursor else ""
        rows = self._conn().execute(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE username > ? ORDER BY username LIMIT ?",
            (after, page_size + 1)).fetchall()
        page = [_account(r) for r in rows[:page_size]]
        return page, (_encode_cursor(page[-1].username) if len(rows) > page_size else None)

    def replace_account(self, record: AccountRecord, expected_etag: str) -> None:
        with self._connections.write() as conn:
            row = conn.execute("SELECT etag, username FROM accounts WHERE account_id=?",
                               (record.account_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"account {record.account_id} not found")
            if row[0] != expected_etag:
                raise ConflictError(f"account {record.account_id} changed concurrently")
            conn.execute(
                "UPDATE accounts SET email=?, password_hash=?, admin=?, disabled=?, update_time_us=?, etag=? "
                "WHERE account_id=?",
                (record.email, record.password_hash, int(record.admin), int(record.disabled),
                 record.update_time_us, record.etag, record.account_id))

    def put_password_link(self, link_hash: str, account_id: str, expire_time_us: int) -> None:
        self._conn().execute("INSERT OR REPLACE INTO password_links VALUES (?,?,?)",
                             (link_hash, account_id, expire_time_us))

    def consume_password_link(self, link_hash: str, now_us: int) -> str | None:
        with self._connections.write() as conn:
            row = conn.execute("SELECT account_id, expire_time_us FROM password_links WHERE link_hash=?",
                               (link_hash,)).fetchone()
            conn.execute("DELETE FROM password_links WHERE link_hash=? OR expire_time_us<=?", (link_hash, now_us))
        if row is None or row[1] <= now_us:
            return None
        return row[0]

    def create_token(self, record: TokenRecord) -> None:
        try:
            self._conn().execute(
                f"INSERT INTO api_tokens ({_TOKEN_COLUMNS}) VALUES (?,?,?,?,?,?)",
                (record.token_id, record.account_id, record.secret_hash, record.display_name,
                 record.create_time_us, record.expire_time_us))
        except sqlite3.IntegrityError as exc:
            raise AlreadyExistsError(f"token {record.token_id} already exists") from exc

    def get_token(self, token_id: str) -> TokenRecord | None:
        row = self._conn().execute(f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE token_id=?",
                                   (token_id,)).fetchone()
        return TokenRecord(*row) if row else None

    def list_tokens(self, account_id: str) -> list[TokenRecord]:
        rows = self._conn().execute(
            f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE account_id=? ORDER BY create_time_us DESC, token_id",
            (account_id,)).fetchall()
        return [TokenRecord(*row) for row in rows]

    def delete_token(self, account_id: str, token_id: str) -> bool:
        cursor = self._conn().execute("DELETE FROM api_tokens WHERE token_id=? AND account_id=?",
                                      (token_id, account_id))
        return cursor.rowcount > 0

    def create_session(self, record: SessionRecord) -> None:
        with self._connections.write() as conn:
            # Expired sessions go as new ones come: the table holds about the live ones.
            conn.execute("DELETE FROM sessions WHERE expire_time_us <= ?", (record.create_time_us,))
            conn.execute("INSERT INTO sessions VALUES (?,?,?,?)",
                         (record.session_hash, record.account_id, record.create_time_us, record.expire_time_us))

    def get_session(self, session_hash: str) -> SessionRecord | None:
        row = self._conn().execute(
            "SELECT session_hash, account_id, create_time_us, expire_time_us FROM sessions WHERE session_hash=?",
            (session_hash,)).fetchone()
        return SessionRecord(*row) if row else None

    def delete_session(self, session_hash: str) -> None:
        self._conn().execute("DELETE FROM sessions WHERE session_hash=?", (session_hash,))

    def link_identity(self, issuer: str, subject: str, account_id: str) -> str:
        with self._connections.write() as conn:
            conn.execute("INSERT OR IGNORE INTO external_identities VALUES (?,?,?)", (issuer, subject, account_id))
            return conn.execute("SELECT account_id FROM external_identities WHERE issuer=? AND subject=?",
                                (issuer, subject)).fetchone()[0]

    def get_identity(self, issuer: str, subject: str) -> str | None:
        row = self._conn().execute("SELECT account_id FROM external_identities WHERE issuer=? AND subject=?",
                                   (issuer, subject)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self._connections.close()
