"""Sends due deliveries: signs each (Standard Webhooks, via the `standardwebhooks` package),
POSTs it, and records the attempt and what happens next, all in the webhook store.

An attempt is claimed before it is made (compare-and-set on the delivery's version, moving
its due time a lease ahead), so deliverers on several machines never send one attempt twice,
and one that dies mid-attempt leaves a delivery that is due again when the lease ends: a
receiver may then see an event twice, with the same `webhook-id`, which is what it
deduplicates on. A receiver that answers 2xx has it; anything else (no answer, a timeout, a
3xx, 4xx or 5xx) is retried after `retry_initial_s`, doubling up to `retry_max_interval_s`
(with up to 10 % jitter, so endpoints that failed together do not retry together), until
`retry_for_s` after the first attempt; then the delivery is FAILED, and a redeliver call
starts it over.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import json
import logging
import random
import threading
import time
from typing import Callable

import httpx
from standardwebhooks.webhooks import Webhook

from longtail_common import telemetry
from longtail_common.config import WebhooksConfig
from longtail_common.ports import (
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SUCCEEDED,
    DeliveryRecord,
    WebhookEndpointRecord,
    WebhookStore,
)
from webhook_svc.secret_box import SecretBox
from webhook_svc.targets import GuardedTransport, parse_networks

log = logging.getLogger("webhook_svc.deliverer")
KEPT_ATTEMPTS = 20
MAX_ANSWER_BYTES = 4096
LEASE_SLACK_S = 30.0
USER_AGENT = "Longtail-Webhooks/1"
_attempts_counter: list = []
_counter_lock = threading.Lock()


def count_attempt(event_type: str, outcome: str) -> None:
    """longtail.webhook.attempts{event_type, outcome}: outcome is succeeded, retrying or failed."""
    with _counter_lock:
        if not _attempts_counter:
            _attempts_counter.append(telemetry.meter().create_counter(
                "longtail.webhook.attempts", description="webhook delivery attempts by event type and outcome"))
    _attempts_counter[0].add(1, {"event_type": event_type, "outcome": outcome})


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: int  # HTTP status; 0 for no answer
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def signed_headers(secret: str, event_id: str, payload: str, when: dt.datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (a fresh timestamp each time)."""
    signature = Webhook(secret).sign(msg_id=event_id, timestamp=when, data=payload)
    return {"webhook-id": event_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": signature, "content-type": "application/json", "user-agent": USER_AGENT}


def retry_delay_s(cfg: WebhooksConfig, failures: int, rand: Callable[[], float] = random.random) -> float:
    """The wait after the `failures`-th failed attempt (1-based)."""
    base = min(cfg.retry_initial_s * 2 ** min(failures - 1, 60), cfg.retry_max_interval_s)
    return base * (1 + 0.1 * rand())


def after_attempt(cfg: WebhooksConfig, claimed: DeliveryRecord, outcome: Outcome, started_us: int,
                  now_us: int) -> DeliveryRecord:
    """The delivery as it is once `outcome` is known: SUCCEEDED, PENDING again, or FAILED."""
    attempts = json.loads(claimed.attempts_json or "[]")
    attempts.append({"t": started_us, "status": outcome.status, "error": outcome.error[:500],
                     "ms": outcome.duration_ms})
    first = claimed.first_attempt_us or started_us
    count = claimed.attempt_count + 1
    state, next_us = DELIVERY_SUCCEEDED, 0
    if not outcome.ok:
        next_us = now_us + int(retry_delay_s(cfg, count) * 1_000_000)
        state = DELIVERY_PENDING if next_us - first <= cfg.retry_for_s * 1_000_000 else DELIVERY_FAILED
        next_us = next_us if state == DELIVERY_PENDING else 0
    return dataclasses.replace(claimed, state=state, next_attempt_us=next_us, first_attempt_us=first,
                               attempt_count=count, attempts_json=json.dumps(attempts[-KEPT_ATTEMPTS:]),
                               version=claimed.version + 1)


class Deliverer:
    def __init__(self, store: WebhookStore, box: SecretBox, cfg: WebhooksConfig,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.box = box
        self.cfg = cfg
        self.clock = clock
        self.client = httpx.Client(transport=GuardedTransport(parse_networks(cfg.allow_networks)),
                                   timeout=cfg.timeout_s, follow_redirects=False, trust_env=False)
        self.slots = max(1, cfg.concurrency)
        self.pool = concurrent.futures.ThreadPoolExecutor(self.slots, thread_name_prefix="deliver")
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()

    def _now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    def run(self, stopping: threading.Event) -> None:
        """Until `stopping`: sends what is due, a batch at a time; a store that fails is
        retried at the next poll (the schedule is in the store, so nothing is lost)."""
        while not stopping.is_set():
            try:
                sent = self.send_due()
            except Exception:  # noqa: BLE001 - keep delivering whatever one poll hit
                log.exception("delivery poll failed")
                sent = 0
            if not sent:
                stopping.wait(self.cfg.poll_interval_s)

    def send_due(self, wait: bool = False) -> int:
        """Starts an attempt at each due delivery while attempts are free (`concurrency`), and
        returns how many it started; with `wait`, once they are done. A slow receiver holds
        one slot, not the others' deliveries."""
        with self._lock:
            free = self.slots - len(self._in_flight)
        if free <= 0:
            return 0
        due = [d for d in self.store.due_deliveries(self._now_us(), self.slots * 2)
               if d.delivery_id not in self._in_flight][:free]
        started = []
        for delivery in due:
            with self._lock:
                self._in_flight.add(delivery.delivery_id)
            started.append(self.pool.submit(self._attempt_in_slot, delivery))
        if wait:
            concurrent.futures.wait(started)
        return len(started)

    def _attempt_in_slot(self, delivery: DeliveryRecord) -> None:
        try:
            self.attempt(delivery)
        except Exception:  # noqa: BLE001 - a store hiccup: the delivery is due again after its lease
            log.exception("attempt at delivery %s failed", delivery.delivery_id)
        finally:
            with self._lock:
                self._in_flight.discard(delivery.delivery_id)

    def attempt(self, delivery: DeliveryRecord) -> DeliveryRecord | None:
        """One attempt, if this deliverer wins the claim; the delivery as recorded after it."""
        lease_us = int((self.cfg.timeout_s + LEASE_SLACK_S) * 1_000_000)
        claimed = dataclasses.replace(delivery, next_attempt_us=self._now_us() + lease_us,
                                      version=delivery.version + 1)
        if not self.store.update_delivery(claimed, delivery.version):
            return None  # another deliverer (or a redeliver call) got there first
        endpoint = self.store.get_endpoint(delivery.webhook_id)
        started_us = self._now_us()
        if endpoint is None:
            done = dataclasses.replace(claimed, state=DELIVERY_FAILED, next_attempt_us=0, version=claimed.version + 1)
            self.store.update_delivery(done, claimed.version)
            return done
        outcome = self.post(endpoint, delivery)
        done = after_attempt(self.cfg, claimed, outcome, started_us, self._now_us())
        if not self.store.update_delivery(done, claimed.version):
            log.warning("delivery %s changed during its attempt; this attempt is not recorded", delivery.delivery_id)
            return None
        count_attempt(delivery.event_type, "retrying" if done.state == DELIVERY_PENDING else done.state)
        log.info("delivery %s (%s) to webhook %s: %s", delivery.delivery_id, delivery.event_type,
                 delivery.webhook_id, done.state if outcome.ok else f"{outcome.status or outcome.error}; {done.state}")
        return done

    def post(self, endpoint: WebhookEndpointRecord, delivery: DeliveryRecord) -> Outcome:
        started = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)
        try:
            secret = self.box.open(endpoint.secret_ciphertext)
            headers = signed_headers(secret, delivery.event_id, delivery.payload, dt.datetime.now(dt.timezone.utc))
            with self.client.stream("POST", endpoint.url, content=delivery.payload.encode(), headers=headers) as answer:
                head = b""
                for chunk in answer.iter_bytes():
                    head += chunk
                    if len(head) >= MAX_ANSWER_BYTES:
                        break
                error = "" if answer.is_success else head[:300].decode(errors="replace")
                return Outcome(answer.status_code, error, took())
        except (httpx.HTTPError, ValueError) as exc:
            return Outcome(0, f"{type(exc).__name__}: {exc}"[:500], took())

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()
