"""Real account backend: accounts, password links, API tokens, sessions and OIDC identity
links in the metadata's ScyllaDB (or Cassandra) keyspace, through scylla-driver.

The tables are part of the keyspace's versioned schema (`scylla_metadata.MIGRATIONS`):

* `accounts`, partition `username`: `INSERT ... IF NOT EXISTS` makes a username unique in
  one lightweight transaction, and `UPDATE ... IF etag = ?` is the compare-and-set.
  `accounts_by_id` maps the id to the username; it is written after the account, and a
  retried create of the same username writes it again (its rows never change).
* `password_links`, partition `link_hash`, written with a TTL of the link's life; using a
  link is a `DELETE ... IF EXISTS`, so one caller wins it.
* `api_tokens`, partition `token_id` (what a request resolves), and
  `api_tokens_by_account` (what the owner lists). A token is listed before it works and
  stops working before it is unlisted, so a writer that dies in between never leaves a
  working token its owner cannot see and revoke.
* `sessions`, partition `session_hash`, written with a TTL of the session's life.
* `external_identities`, partition (issuer, subject): `INSERT ... IF NOT EXISTS`, so the
  first link of an OIDC identity wins.
"""
from __future__ import annotations

import base64
import json
import math
import time

from longtail_common.adapters.scylla_metadata import ScyllaStore
from longtail_common.ports import (
    AccountRecord,
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    SessionRecord,
    TokenRecord,
    validate_id,
)

_ACCOUNT_COLUMNS = ("username, account_id, email, password_hash, admin, disabled, create_time_us, "
                    "update_time_us, etag")
_TOKEN_COLUMNS = "token_id, account_id, secret_hash, display_name, create_time_us, expire_time_us"


def _account(row) -> AccountRecord:
    return AccountRecord(account_id=row.account_id, username=row.username, email=row.email or "",
                         password_hash=row.password_hash or "", admin=bool(row.admin), disabled=bool(row.disabled),
                         create_time_us=int(row.create_time_us or 0), update_time_us=int(row.update_time_us or 0),
                         etag=row.etag or "")


def _token(row) -> TokenRecord:
    return TokenRecord(token_id=row.token_id, account_id=row.account_id, secret_hash=row.secret_hash or "",
                       display_name=row.display_name or "", create_time_us=int(row.create_time_us or 0),
                       expire_time_us=int(row.expire_time_us or 0))


def _encode_cursor(username: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([username]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        (username,) = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return str(username)
    except Exception as exc:  # noqa: BLE001 - any malformed token is the caller's error
        raise ValueError(f"invalid page token {cursor!r}") from exc


class ScyllaAccountStore(ScyllaStore):
    def _prepare(self) -> None:
        ks, p = self._ks, self._session.prepare
        self._insert_account = p(f"INSERT INTO {ks}.accounts ({_ACCOUNT_COLUMNS}) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS")
        self._select_account = p(f"SELECT {_ACCOUNT_COLUMNS} FROM {ks}.accounts WHERE username = ?")
        self._cas_account = p(f"UPDATE {ks}.accounts SET email = ?, password_hash = ?, admin = ?, disabled = ?, "
                              "update_time_us = ?, etag = ? WHERE username = ? IF etag = ?")
        self._insert_id = p(f"INSERT INTO {ks}.accounts_by_id (account_id, username) VALUES (?, ?)")
        self._select_id = p(f"SELECT username FROM {ks}.accounts_by_id WHERE account_id = ?")
        self._list_first = p(f"SELECT {_ACCOUNT_COLUMNS} FROM {ks}.accounts LIMIT ?")
        self._list_after = p(f"SELECT {_ACCOUNT_COLUMNS} FROM {ks}.accounts "
                             "WHERE token(username) > token(?) LIMIT ?")
        self._insert_link = p(f"INSERT INTO {ks}.password_links (link_hash, account_id, expire_time_us) "
                              "VALUES (?, ?, ?) USING TTL ?")
        self._select_link = p(f"SELECT account_id, expire_time_us FROM {ks}.password_links WHERE link_hash = ?")
        self._delete_link = p(f"DELETE FROM {ks}.password_links WHERE link_hash = ? IF EXISTS")
        self._insert_token = p(f"INSERT INTO {ks}.api_tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                               "IF NOT EXISTS")
        self._select_token = p(f"SELECT {_TOKEN_COLUMNS} FROM {ks}.api_tokens WHERE token_id = ?")
        self._delete_token = p(f"DELETE FROM {ks}.api_tokens WHERE token_id = ? IF account_id = ?")
        self._list_token = p(f"INSERT INTO {ks}.api_tokens_by_account ({_TOKEN_COLUMNS}) "
                             "VALUES (?, ?, ?, ?, ?, ?)")
        self._listed_token = p(f"SELECT token_id FROM {ks}.api_tokens_by_account "
                               "WHERE account_id = ? AND token_id = ?")
        self._unlist_token = p(f"DELETE FROM {ks}.api_tokens_by_account WHERE account_id = ? AND token_id = ?")
        self._list_tokens = p(f"SELECT {_TOKEN_COLUMNS} FROM {ks}.api_tokens_by_account WHERE account_id = ?")
        self._insert_session = p(f"INSERT INTO {ks}.sessions (session_hash, account_id, create_time_us, "
                                 "expire_time_us) VALUES (?, ?, ?, ?) USING TTL ?")
        self._select_session = p(f"SELECT session_hash, account_id, create_time_us, expire_time_us "
                                 f"FROM {ks}.sessions WHERE session_hash = ?")
        self._delete_session = p(f"DELETE FROM {ks}.sessions WHERE session_hash = ?")
        self._insert_identity = p(f"INSERT INTO {ks}.external_identities (issuer, subject, account_id) "
                                  "VALUES (?, ?, ?) IF NOT EXISTS")
        self._select_identity = p(f"SELECT account_id FROM {ks}.external_identities "
                                  "WHERE issuer = ? AND subject = ?")

    # -- accounts -------------------------------------------------------------------------

    def create_account(self, record: AccountRecord) -> None:
        validate_id(record.account_id, "account id")
        result = self._execute(f"creating account {record.username}", self._insert_account, (
            record.username, record.account_id, record.email, record.password_hash, record.admin, record.disabled,
            record.create_time_us, record.update_time_us, record.etag))
        stored = result.one() if not result.was_applied else None
        account_id = stored.account_id if stored is not None else record.account_id
        if account_id:  # (re)written: a create that died before this line left the account without it
            self._execute(f"indexing account {record.username}", self._insert_id, (account_id, record.username))
        if not result.was_applied:
            raise AlreadyExistsError(f"account {record.username} already exists")

    def get_account_by_username(self, username: str) -> AccountRecord | None:
        row = self._execute(f"reading account {username}", self._select_account, (username,)).one()
        return _account(row) if row else None

    def get_account(self, account_id: str) -> AccountRecord | None:
        index = self._execute(f"reading account {account_id}", self._select_id, (account_id,)).one()
        record = self.get_account_by_username(index.username) if index else None
        return record if record is not None and record.account_id == account_id else None

    def list_accounts(self, page_size: int, cursor: str | None) -> tuple[list[AccountRecord], str | None]:
        page_size = max(1, min(page_size or 50, 1000))
        if cursor:
            rows = self._execute("listing accounts", self._list_after, (_decode_cursor(cursor), page_size + 1))
        else:
            rows = self._execute("listing accounts", self._list_first, (page_size + 1,))
        rows = list(rows)
        page = [_account(r) for r in rows[:page_size]]
        return page, (_encode_cursor(page[-1].username) if len(rows) > page_size else None)

    def replace_account(self, record: AccountRecord, expected_etag: str) -> None:
        index = self._execute(f"reading account {record.account_id}", self._select_id, (record.account_id,)).one()
        if index is None:
            raise NotFoundError(f"account {record.account_id} not found")
        result = self._execute(f"updating account {index.username}", self._cas_account, (
            record.email, record.password_hash, record.admin, record.disabled, record.update_time_us, record.etag,
            index.username, expected_etag))
        if not result.was_applied:
            current = result.one()
            if current is None or getattr(current, "etag", None) is None:
                raise NotFoundError(f"account {record.account_id} not found")
            raise ConflictError(f"account {record.account_id} changed concurrently")

    # -- password links -------------------------------------------------------------------

    def put_password_link(self, link_hash: str, account_id: str, expire_time_us: int) -> None:
        ttl_s = max(1, math.ceil(expire_time_us / 1e6 - time.time()))  # gone from the table once useless
        self._execute("writing a password link", self._insert_link, (link_hash, account_id, expire_time_us, ttl_s))

    def consume_password_link(self, link_hash: str, now_us: int) -> str | None:
        row = self._execute("reading a password link", self._select_link, (link_hash,)).one()
        if row is None:
            return None
        won = self._execute("using a password link", self._delete_link, (link_hash,)).was_applied
        return row.account_id if won and int(row.expire_time_us) > now_us else None

    # -- API tokens -----------------------------------------------------------------------

    def create_token(self, record: TokenRecord) -> None:
        values = (record.token_id, record.account_id, record.secret_hash, record.display_name,
                  record.create_time_us, record.expire_time_us)
        self._execute(f"listing token {record.token_id}", self._list_token, values)
        result = self._execute(f"creating token {record.token_id}", self._insert_token, values)
        if not result.was_applied:
            existing = result.one()
            if existing is None or existing.account_id != record.account_id:  # not ours: unlist what we listed
                self._execute(f"unlisting token {record.token_id}", self._unlist_token,
                              (record.account_id, record.token_id))
            raise AlreadyExistsError(f"token {record.token_id} already exists")

    def get_token(self, token_id: str) -> TokenRecord | None:
        row = self._execute(f"reading token {token_id}", self._select_token, (token_id,)).one()
        return _token(row) if row else None

    def list_tokens(self, account_id: str) -> list[TokenRecord]:
        rows = self._execute(f"listing tokens of {account_id}", self._list_tokens, (account_id,))
        return sorted((_token(r) for r in rows), key=lambda t: (-t.create_time_us, t.token_id))

    def delete_token(self, account_id: str, token_id: str) -> bool:
        listed = self._execute(f"reading token {token_id}", self._listed_token, (account_id, token_id)).one()
        token = self.get_token(token_id)
        deleted = False
        if token is not None and token.account_id == account_id:
            deleted = self._execute(f"revoking token {token_id}", self._delete_token,
                                    (token_id, account_id)).was_applied
        if listed is not None:
            self._execute(f"unlisting token {token_id}", self._unlist_token, (account_id, token_id))
            deleted = True
        return deleted

    # -- sessions and external identities ------------------------------------------------

    def create_session(self, record: SessionRecord) -> None:
        ttl_s = max(1, math.ceil((record.expire_time_us - record.create_time_us) / 1e6))  # gone once expired
        self._execute("starting a session", self._insert_session, (
            record.session_hash, record.account_id, record.create_time_us, record.expire_time_us, ttl_s))

    def get_session(self, session_hash: str) -> SessionRecord | None:
        row = self._execute("reading a session", self._select_session, (session_hash,)).one()
        if row is None:
            return None
        return SessionRecord(row.session_hash, row.account_id, int(row.create_time_us or 0),
                             int(row.expire_time_us or 0))

    def delete_session(self, session_hash: str) -> None:
        self._execute("ending a session", self._delete_session, (session_hash,))

    def link_identity(self, issuer: str, subject: str, account_id: str) -> str:
        result = self._execute("linking an external identity", self._insert_identity, (issuer, subject, account_id))
        return account_id if result.was_applied else result.one().account_id

    def get_identity(self, issuer: str, subject: str) -> str | None:
        row = self._execute("reading an external identity", self._select_identity, (issuer, subject)).one()
        return row.account_id if row else None
