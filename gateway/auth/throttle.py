"""Sign-in throttling: a sliding window of failures per key (a username, a client address),
kept in this gateway process. Several gateway processes each keep their own, so the limit
is per process; the rate limits shared across processes come with the quotas work."""
from __future__ import annotations

import collections
import math
import threading
import time
from typing import Callable


class FailureWindow:
    """At most `max_failures` failures per key within `window_s`; past that, refused until
    the oldest failure leaves the window."""

    def __init__(self, max_failures: int, window_s: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000):
        self.max_failures, self.window_s = max_failures, window_s
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> collections.deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return collections.deque()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after(self, *keys: str) -> int:
        """Seconds until every key may try again (0: now)."""
        now = self._clock()
        with self._lock:
            waits = [failures[0] + self.window_s - now for key in keys
                     if len(failures := self._recent(key, now)) >= self.max_failures]
        return math.ceil(max(waits)) if waits else 0

    def fail(self, *keys: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) >= self._max_keys:  # bounded memory under a spray of names
                self._failures.pop(next(iter(self._failures)))
            for key in keys:
                self._recent(key, now)
                self._failures.setdefault(key, collections.deque(maxlen=self.max_failures)).append(now)

    def forget(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
