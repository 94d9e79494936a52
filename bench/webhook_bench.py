"""Webhook delivery throughput: how many signed deliveries per second one deliverer sends
from the embedded store to a loopback receiver, and what queueing them costs.

Run from the repo root:  .venv/bin/python bench/webhook_bench.py [--deliveries N]
Writes bench/results/webhooks.json.

One SQLite webhook store, one endpoint, N pending deliveries (a 300-byte `video.ready` body
each) added as the topic consumer adds them; then one Deliverer (`webhooks.concurrency`
attempts at once, 8 by default) sends them all to a ThreadingHTTPServer on 127.0.0.1
answering 204, each attempt claimed, signed (standardwebhooks), POSTed and recorded. Reported:
deliveries added per second, delivered per second, and the attempts' own durations (p50,
p95: the POST as the deliverer timed it).
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.server
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from longtail_common.adapters.sqlite_webhooks import SqliteWebhookStore  # noqa: E402
from longtail_common.config import Config  # noqa: E402
from longtail_common.ports import DELIVERY_PENDING, DeliveryRecord, WebhookEndpointRecord  # noqa: E402
from machine import cpu_model  # noqa: E402  (bench/machine.py)
from webhook_svc.deliverer import Deliverer  # noqa: E402
from webhook_svc.secret_box import SecretBox, new_secret  # noqa: E402


class Quiet(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def queue(store: SqliteWebhookStore, n: int, now_us: int) -> float:
    """Adds n pending deliveries; returns the seconds it took."""
    body = json.dumps({"type": "video.ready", "timestamp": "2026-12-07T00:00:00Z",
                       "data": {"video_id": "v" * 11, "channel_id": "c" * 20, "title": "t" * 200}})
    started = time.perf_counter()
    for i in range(n):
        store.add_delivery(DeliveryRecord(
            delivery_id=f"d{i:031d}", webhook_id="wh_bench", account_id="acct", event_id=f"evt_{i}",
            event_type="video.ready", payload=body, create_time_us=now_us, state=DELIVERY_PENDING,
            next_attempt_us=now_us, first_attempt_us=0, attempt_count=0, attempts_json="[]", version=1))
    return time.perf_counter() - started


def run(n: int, work: pathlib.Path) -> dict:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = Config(data_dir=str(work))
    cfg.webhooks.allow_networks = ["127.0.0.1/32"]
    store = SqliteWebhookStore(work / "webhooks.sqlite3")
    box = SecretBox.from_config(cfg)
    store.create_endpoint(WebhookEndpointRecord("wh_bench", "acct", f"http://127.0.0.1:{server.server_address[1]}/",
                                                box.seal(new_secret()), (), "", 1))
    queue_s = queue(store, n, int(time.time() * 1_000_000))
    deliverer = Deliverer(store, box, cfg.webhooks)
    started = time.perf_counter()
    cpu_started = time.process_time()
    while deliverer.send_due(wait=True):
        pass
    send_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    durations, cursor, delivered = [], None, 0
    while True:
        page, cursor = store.list_deliveries("wh_bench", 100, cursor)
        for d in page:
            delivered += d.state == "succeeded"
            durations += [a["ms"] for a in json.loads(d.attempts_json)]
        if cursor is None:
            break
    deliverer.close()
    store.close()
    server.shutdown()
    quantiles = statistics.quantiles(durations, n=20)
    return {"deliveries": n, "delivered": delivered, "concurrency": cfg.webhooks.concurrency,
            "queued_per_s": round(n / queue_s, 1), "delivered_per_s": round(n / send_s, 1),
            "cpu_ms_per_delivery": round(cpu_s * 1000 / n, 2),
            "attempt_ms_p50": quantiles[9], "attempt_ms_p95": quantiles[18]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.deliveries, pathlib.Path(tmp))
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    result.update({"machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                               "load_1m": round(os.getloadavg()[0], 1)},
                   "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"), "git": git.strip()})
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / "webhooks.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
