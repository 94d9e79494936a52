"""Contract of the AccountStore port; every backend must pass it."""
from __future__ import annotations

import dataclasses
import time
import uuid

import pytest

from longtail_common.ports import (
    AccountRecord,
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    SessionRecord,
    TokenRecord,
)

BACKENDS = ["sqlite", pytest.param("scylla", marks=pytest.mark.real)]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    if request.param == "sqlite":
        from longtail_common.adapters.sqlite_accounts import SqliteAccountStore

        s = SqliteAccountStore(tmp_path / "m.sqlite3")
    else:
        from longtail_common.adapters.scylla_accounts import ScyllaAccountStore
        from tests.real_servers import TEST_KEYSPACE

        servers = request.getfixturevalue("real_servers")
        s = ScyllaAccountStore(dataclasses.replace(servers["config"].scylla, keyspace=TEST_KEYSPACE))
    yield s
    s.close()


def _uid() -> str:
    return uuid.uuid4().hex[:12]


def _account(username=None, etag="e1", **changes) -> AccountRecord:
    fields = dict(account_id=uuid.uuid4().hex, username=username or "u" + _uid(), email="ada@example.org",
                  password_hash="", admin=False, disabled=False, create_time_us=1000, update_time_us=1000, etag=etag)
    fields.update(changes)
    return AccountRecord(**fields)


def _token(account_id, token_id=None, created=1, expires=0) -> TokenRecord:
    return TokenRecord(token_id=token_id or uuid.uuid4().hex[:16], account_id=account_id, secret_hash="ab" * 32,
                       display_name="ci", create_time_us=created, expire_time_us=expires)


def test_create_and_get_by_id_and_username(store):
    record = _account(admin=True, password_hash="$argon2id$v=19$...")
    store.create_account(record)
    assert store.get_account(record.account_id) == record
    assert store.get_account_by_username(record.username) == record
    assert store.get_account("0" * 32) is None
    assert store.get_account_by_username("nobody" + _uid()) is None


def test_usernames_are_unique(store):
    first = _account()
    store.create_account(first)
    with pytest.raises(AlreadyExistsError):
        store.create_account(_account(username=first.username, email="other@example.org"))
    assert store.get_account_by_username(first.username) == first


def test_listing_pages_through_every_account_once(store):
    mine = {}
    created = [_account() for _ in range(7)]
    for record in created:
        store.create_account(record)
        mine[record.account_id] = record
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = store.list_accounts(3, cursor)
        assert len(page) <= 3
        seen += [r.account_id for r in page]
        pages += 1
        if not cursor:
            break
    assert len(seen) == len(set(seen))  # nothing twice (other tests' accounts may be listed too)
    assert set(mine) <= set(seen) and pages >= 3
    with pytest.raises(ValueError):
        store.list_accounts(3, "not a cursor!")


def test_replace_is_compare_and_set_and_keeps_the_username(store):
    record = _account(etag="v1")
    store.create_account(record)
    changed = AccountRecord(**{**record.__dict__, "disabled": True, "password_hash": "h", "update_time_us": 2000,
                               "etag": "v2"})
    store.replace_account(changed, expected_etag="v1")
    assert store.get_account(record.account_id) == changed
    assert store.get_account_by_username(record.username) == changed
    with pytest.raises(ConflictError):
        store.replace_account(AccountRecord(**{**changed.__dict__, "admin": True, "etag": "v3"}), expected_etag="v1")
    assert store.get_account(record.account_id).admin is False
    with pytest.raises(NotFoundError):
        store.replace_account(_account(etag="x"), expected_etag="x")


def test_password_link_is_consumed_once_and_expires(store):
    account_id, now = uuid.uuid4().hex, int(time.time() * 1e6)
    live, expired = "l" + _uid(), "x" + _uid()
    store.put_password_link(live, account_id, expire_time_us=now + 3600_000_000)
    store.put_password_link(expired, account_id, expire_time_us=now + 60_000_000)
    assert store.consume_password_link(expired, now_us=now + 60_000_000) is None  # at its expiry: refused
    assert store.consume_password_link(expired, now_us=now) is None  # and gone
    assert store.consume_password_link(live, now_us=now + 61_000_000) == account_id
    assert store.consume_password_link(live, now_us=now) is None
    assert store.consume_password_link("never" + _uid(), now_us=now) is None


def test_tokens_created_listed_newest_first_and_deleted_by_their_owner(store):
    owner, other = uuid.uuid4().hex, uuid.uuid4().hex
    old, new = _token(owner, created=10, expires=99), _token(owner, created=20)
    store.create_token(old)
    store.create_token(new)
    store.create_token(_token(other))
    with pytest.raises(AlreadyExistsError):
        store.create_token(_token(other, token_id=old.token_id))
    assert store.get_token(old.token_id) == old
    assert store.list_tokens(owner) == [new, old]
    assert store.delete_token(other, old.token_id) is False  # not theirs
    assert store.get_token(old.token_id) == old
    assert store.delete_token(owner, old.token_id) is True
    assert store.get_token(old.token_id) is None
    assert store.list_tokens(owner) == [new]
    assert store.delete_token(owner, old.token_id) is False
    assert store.list_tokens(uuid.uuid4().hex) == []


@pytest.mark.real
def test_sessions_are_read_by_hash_and_ended_at_once(store):
    account = _account()
    store.create_account(account)
    now_us = int(time.time() * 1e6)
    session = SessionRecord(uuid.uuid4().hex * 2, account.account_id, now_us, now_us + 3_600_000_000)
    store.create_session(session)
    assert store.get_session(session.session_hash) == session
    assert store.get_session("0" * 64) is None
    store.delete_session(session.session_hash)
    assert store.get_session(session.session_hash) is None
    store.delete_session(session.session_hash)  # ending it twice is no error


def test_the_first_link_of_an_external_identity_wins(store):
    issuer, subject = f"https://id.example.org/{_uid()}", _uid()
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    assert store.get_identity(issuer, subject) is None
    assert store.link_identity(issuer, subject, first) == first
    assert store.link_identity(issuer, subject, second) == first
    assert store.get_identity(issuer, subject) == first
    assert store.get_identity(issuer, subject + "x") is None


def test_scylla_schema_version_2_reruns_after_a_half_applied_run(real_servers):
    """A migrator that died inside version 2 (its ALTER done, the version not recorded):
    the next run applies version 2 again without tripping over the existing column."""
    from longtail_common.adapters.scylla_metadata import migrate, open_session

    cfg = dataclasses.replace(real_servers["config"].scylla, keyspace="half_" + _uid())
    cluster, session = open_session(cfg)
    try:
        session.execute(f"DELETE FROM {cfg.keyspace}.schema_migrations WHERE version = 2")
        assert migrate(cfg) == [2]
        assert migrate(cfg) == []
    finally:
        session.execute(f"DROP KEYSPACE {cfg.keyspace}")
        cluster.shutdown()
