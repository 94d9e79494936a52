"""The rate limiter's storage, for the `limits` library, on top of one primitive a shared
store can do atomically: add to a counter if it still holds what was read (compare-and-set).

A counter is a row (key, window) -> count that expires at a given time. The sliding window
counter (limits.strategies.SlidingWindowCounterRateLimiter) keeps two per key, the current
window and the previous one; the fixed window (FixedWindowRateLimiter) one, window -1.
Subclasses (sqlite_ratelimit, scylla_ratelimit) store the rows; every gateway process that
opens the same store shares the same budgets.
"""
from __future__ import annotations

import math
import time
from abc import abstractmethod

from limits.storage import SlidingWindowCounterSupport, Storage

FIXED_WINDOW = -1
# Compare-and-set attempts before a hit is refused: only a key hammered from several
# processes at once loses this many races in a row.
CAS_ATTEMPTS = 8


class WindowCounterStorage(Storage, SlidingWindowCounterSupport):
    """limits.storage.Storage with sliding-window-counter support, over `read` and `add_if`."""

    STORAGE_SCHEME = None  # built by longtail_common.adapters.make_rate_limit_storage, not by URI

    def __init__(self, clock=time.time):
        super().__init__()
        self._clock = clock

    # --- what a subclass stores -------------------------------------------------------

    @abstractmethod
    def read(self, key: str, windows: list[int]) -> dict[int, tuple[int, float]]:
        """{window: (count, expires_at)} of the live (unexpired) counters among `windows`."""

    @abstractmethod
    def add_if(self, key: str, window: int, expected: int, amount: int, expires_at: float) -> bool:
        """Sets the counter to expected + amount if it holds `expected` (0: absent or
        expired, then it expires at `expires_at`; else it keeps its expiry). False if it
        held something else."""

    @abstractmethod
    def delete_key(self, key: str) -> None:
        """Drops every window of `key`."""

    @abstractmethod
    def delete_all(self) -> int | None:
        """Drops every counter; answers how many, if known."""

    # --- sliding window counter --------------------------------------------------------

    def _windows(self, expiry: int, now: float) -> tuple[int, int]:
        current = int(now // expiry)
        return current - 1, current

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        now = self._clock()
        previous, current = self._windows(expiry, now)
        rows = self.read(key, [previous, current])
        return self._window_info(rows, previous, current, expiry, now)

    @staticmethod
    def _window_info(rows, previous: int, current: int, expiry: int, now: float) -> tuple[int, float, int, float]:
        """(previous count, how long it still weighs, current count, its time to live), as
        limits' own storages answer them."""
        previous_count = rows.get(previous, (0, 0.0))[0]
        current_count = rows.get(current, (0, 0.0))[0]
        left_in_window = (current + 1) * expiry - now
        previous_ttl = left_in_window if previous_count else 0.0
        return previous_count, previous_ttl, current_count, left_in_window + expiry

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        for _ in range(CAS_ATTEMPTS):
            now = self._clock()
            previous, current = self._windows(expiry, now)
            rows = self.read(key, [previous, current])
            previous_count, previous_ttl, current_count, _ = self._window_info(rows, previous, current, expiry, now)
            if math.floor(previous_count * previous_ttl / expiry + current_count) + amount > limit:
                return False
            # The current window's counter weighs until the end of the next window.
            if self.add_if(key, current, current_count, amount, (current + 2) * expiry):
                return True
        return False

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        self.delete_key(key)

    # --- fixed window (limits.Storage's own interface) ---------------------------------

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        for _ in range(CAS_ATTEMPTS * 4):
            count, expires_at = self.read(key, [FIXED_WINDOW]).get(FIXED_WINDOW, (0, 0.0))
            if self.add_if(key, FIXED_WINDOW, count, amount, expires_at or self._clock() + expiry):
                return count + amount
        raise TimeoutError(f"rate limit counter {key!r} kept changing under concurrent writers")

    def get(self, key: str) -> int:
        return self.read(key, [FIXED_WINDOW]).get(FIXED_WINDOW, (0, 0.0))[0]

    def get_expiry(self, key: str) -> float:
        return self.read(key, [FIXED_WINDOW]).get(FIXED_WINDOW, (0, self._clock()))[1]

    def clear(self, key: str) -> None:
        self.delete_key(key)

    def reset(self) -> int | None:
        return self.delete_all()
