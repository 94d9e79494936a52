"""Contract of the WebhookStore port; every backend must pass it."""
from __future__ import annotations

import dataclasses
import time
import uuid

import pytest

from longtail_common.ports import (
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SUCCEEDED,
    AlreadyExistsError,
    DeliveryRecord,
    WebhookEndpointRecord,
)

BACKENDS = ["sqlite", pytest.param("scylla", marks=pytest.mark.real)]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    if request.param == "sqlite":
        from longtail_common.adapters.sqlite_webhooks import SqliteWebhookStore

        s = SqliteWebhookStore(tmp_path / "w.sqlite3")
    else:
        from longtail_common.adapters.scylla_webhooks import ScyllaWebhookStore
        from tests.real_servers import TEST_KEYSPACE

        servers = request.getfixturevalue("real_servers")
        s = ScyllaWebhookStore(dataclasses.replace(servers["config"].scylla, keyspace=TEST_KEYSPACE))
    yield s
    s.close()


def _uid() -> str:
    return uuid.uuid4().hex[:16]


# Far in the future, so deliveries of other tests sharing a keyspace are never due in these.
BASE_US = int(time.time() * 1_000_000) + 10 * 365 * 86400 * 1_000_000


def _endpoint(account_id: str, created: int = 1, **changes) -> WebhookEndpointRecord:
    fields = dict(webhook_id="wh_" + _uid(), account_id=account_id, url="https://hooks.example.org/in",
                  secret_ciphertext=b"\x00sealed\xff", event_types=("video.ready",), description="ci",
                  create_time_us=created)
    fields.update(changes)
    return WebhookEndpointRecord(**fields)


def _delivery(webhook_id: str, created: int = 1, due: int = BASE_US, **changes) -> DeliveryRecord:
    fields = dict(delivery_id=_uid() + _uid(), webhook_id=webhook_id, account_id="acct", event_id="evt_" + _uid(),
                  event_type="video.ready", payload='{"type":"video.ready"}', create_time_us=created,
                  state=DELIVERY_PENDING, next_attempt_us=due, first_attempt_us=0, attempt_count=0,
                  attempts_json="[]", version=1)
    fields.update(changes)
    return DeliveryRecord(**fields)


def test_endpoints_are_created_listed_newest_first_and_deleted(store):
    account = "a" + _uid()
    older, newer = _endpoint(account, created=10), _endpoint(account, created=20, event_types=())
    store.create_endpoint(older)
    store.create_endpoint(newer)
    store.create_endpoint(_endpoint("b" + _uid()))
    assert store.get_endpoint(older.webhook_id) == older
    assert store.list_endpoints(account) == [newer, older]
    with pytest.raises(AlreadyExistsError):
        store.create_endpoint(dataclasses.replace(older, url="https://other.example.org/"))
    assert store.delete_endpoint(older.webhook_id) is True
    assert store.delete_endpoint(older.webhook_id) is False
    assert store.get_endpoint(older.webhook_id) is None
    assert store.list_endpoints(account) == [newer]


def test_a_delivery_is_added_once(store):
    first = _delivery("wh_" + _uid())
    assert store.add_delivery(first) is True
    assert store.add_delivery(dataclasses.replace(first, create_time_us=99, payload="{}")) is False
    assert store.get_delivery(first.delivery_id) == first
    assert store.get_delivery("0" * 32) is None


def test_deliveries_page_newest_first(store):
    webhook_id = "wh_" + _uid()
    made = [_delivery(webhook_id, created=t, state=DELIVERY_SUCCEEDED) for t in (5, 1, 3, 4, 2)]
    for d in made:
        store.add_delivery(d)
    store.add_delivery(_delivery("wh_" + _uid()))
    seen, cursor = [], None
    for _ in range(5):
        page, cursor = store.list_deliveries(webhook_id, 2, cursor)
        seen += page
        if cursor is None:
            break
    assert [d.create_time_us for d in seen] == [5, 4, 3, 2, 1]
    with pytest.raises(ValueError):
        store.list_deliveries(webhook_id, 2, "not-a-cursor")


def test_update_is_a_compare_and_set_on_version(store):
    d = _delivery("wh_" + _uid())
    store.add_delivery(d)
    claimed = dataclasses.replace(d, next_attempt_us=d.next_attempt_us + 60_000_000, version=2)
    assert store.update_delivery(claimed, expected_version=1) is True
    assert store.update_delivery(dataclasses.replace(d, version=2), expected_version=1) is False
    assert store.get_delivery(d.delivery_id) == claimed


def test_due_deliveries_follow_the_schedule(store):
    webhook_id = "wh_" + _uid()
    early, late = _delivery(webhook_id, due=BASE_US + 1), _delivery(webhook_id, due=BASE_US + 500)
    store.add_delivery(late)
    store.add_delivery(early)
    store.add_delivery(_delivery(webhook_id, due=BASE_US, state=DELIVERY_SUCCEEDED))
    due = [d for d in store.due_deliveries(BASE_US + 100, 50) if d.webhook_id == webhook_id]
    assert due == [early]
    # Rescheduled later, it is not due; rescheduled back, it is; finished, it never is again.
    moved = dataclasses.replace(early, next_attempt_us=BASE_US + 1000, version=2)
    assert store.update_delivery(moved, 1)
    assert [d.delivery_id for d in store.due_deliveries(BASE_US + 600, 50) if d.webhook_id == webhook_id] == [
        late.delivery_id]
    assert [d.delivery_id for d in store.due_deliveries(BASE_US + 1000, 50) if d.webhook_id == webhook_id] == [
        late.delivery_id, early.delivery_id]
    assert store.update_delivery(dataclasses.replace(moved, state=DELIVERY_FAILED, next_attempt_us=0, version=3), 2)
    assert [d.delivery_id for d in store.due_deliveries(BASE_US + 2000, 50) if d.webhook_id == webhook_id] == [
        late.delivery_id]
    # Made pending again (a redeliver), it is due at its new time.
    assert store.update_delivery(dataclasses.replace(moved, next_attempt_us=BASE_US + 3, version=4), 3)
    assert [d.delivery_id for d in store.due_deliveries(BASE_US + 10, 50) if d.webhook_id == webhook_id] == [
        early.delivery_id]
