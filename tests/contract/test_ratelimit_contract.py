"""Contract of the rate limiter's storage (a `limits` storage with sliding window counter
support); every backend must pass it. Two instances on one store stand for two gateway
processes: they share one budget."""
from __future__ import annotations

import dataclasses
import time
import uuid

import pytest
from limits import parse
from limits.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

BACKENDS = ["sqlite", pytest.param("scylla", marks=pytest.mark.real)]


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=BACKENDS)
def open_store(request, tmp_path):
    """Opens another instance on the same store (another gateway process's view)."""
    opened = []

    def open_one(clock=None):
        kwargs = {"clock": clock} if clock else {}
        if request.param == "sqlite":
            from longtail_common.adapters.sqlite_ratelimit import SqliteRateLimitStorage

            store = SqliteRateLimitStorage(tmp_path / "ratelimit.sqlite3", **kwargs)
        else:
            from longtail_common.adapters.scylla_ratelimit import ScyllaRateLimitStorage
            from tests.real_servers import TEST_KEYSPACE

            servers = request.getfixturevalue("real_servers")
            store = ScyllaRateLimitStorage(dataclasses.replace(servers["config"].scylla, keyspace=TEST_KEYSPACE),
                                           **kwargs)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


def _who() -> str:
    return uuid.uuid4().hex[:12]


def test_a_budget_is_shared_by_every_instance(open_store):
    first, second = SlidingWindowCounterRateLimiter(open_store()), SlidingWindowCounterRateLimiter(open_store())
    item, who = parse("5 per minute"), _who()
    hits = [limiter.hit(item, who) for limiter in (first, second) * 4]
    assert hits == [True] * 5 + [False] * 3
    assert first.hit(item, _who())  # another client has its own budget
    assert second.get_window_stats(item, who).remaining == 0


def test_the_previous_window_weighs_as_it_slides_out(open_store):
    clock = Clock(now=600.0)  # the start of a one-minute window
    limiter = SlidingWindowCounterRateLimiter(open_store(clock))
    item, who = parse("10 per minute"), _who()
    assert all(limiter.hit(item, who) for _ in range(10))
    assert not limiter.hit(item, who)
    clock.now += 60 + 30  # half-way through the next window: the 10 weigh as 5
    assert [limiter.hit(item, who) for _ in range(6)] == [True] * 5 + [False]
    clock.now += 60 * 2  # both windows gone
    assert limiter.get_window_stats(item, who).remaining == 10


def test_a_refused_hit_is_not_counted_and_clear_forgets(open_store):
    limiter = SlidingWindowCounterRateLimiter(open_store())
    item, who = parse("2 per minute"), _who()
    assert limiter.hit(item, who, cost=2)
    assert not limiter.hit(item, who)
    assert not limiter.hit(item, who, cost=3)  # more than the limit at all
    limiter.clear(item, who)
    assert limiter.hit(item, who) and limiter.hit(item, who)


def test_fixed_window_counts_and_expires(open_store):
    # The real clock: on Scylla a fixed window ends by the row's TTL, kept by the server in
    # whole seconds (so it may end up to a second late).
    limiter = FixedWindowRateLimiter(open_store())
    item, who = parse("3 per 2 seconds"), _who()
    assert [limiter.hit(item, who) for _ in range(4)] == [True, True, True, False]
    started = time.time()
    assert started < limiter.get_window_stats(item, who).reset_time <= started + 3
    time.sleep(3.1)
    assert limiter.hit(item, who)


def test_storage_is_healthy(open_store):
    assert open_store().check()
