"""webhook_svc's parts: receiver URLs (SSRF), secrets at rest, Standard Webhooks signatures,
the retry schedule, events from topic messages, and the deliverer against a real loopback
receiver over the SQLite store (a restarted deliverer resumes the persisted schedule)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import json
import threading

import grpc
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import video_pb2
from longtail_common.adapters.sqlite_webhooks import SqliteWebhookStore
from longtail_common.config import Config, WebhooksConfig
from longtail_common.consumer import PermanentError
from longtail_common.ports import (
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SUCCEEDED,
    TOPIC_CAPTIONS_READY,
    TOPIC_TRANSCODE_REQUESTS,
    TOPIC_VIDEO_CHANGED,
    TOPIC_VIDEO_DELETED,
    TOPIC_VIDEO_PUBLISHED,
    Message,
    WebhookEndpointRecord,
)
from webhook_svc.deliverer import Deliverer, Outcome, after_attempt, retry_delay_s, signed_headers
from webhook_svc.events import EventFanout, EventSource
from webhook_svc.secret_box import SecretBox, new_secret
from webhook_svc.targets import TargetRefused, check_url, parse_networks

S = video_pb2.VideoStatus
LOOPBACK = parse_networks(["127.0.0.1/32"])


# -- receiver URLs ---------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "ftp://hooks.example.org/", "file:///etc/passwd", "gopher://x", "https://", "http:///path",
    "https://user:pw@93.184.216.34/", "https://93.184.216.34/a b", "https://93.184.216.34/#frag",
    "http://127.0.0.1:9000/", "http://localhost/", "http://10.1.2.3/", "http://192.168.0.10/",
    "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/", "http://[::1]/", "http://[fd00::1]/",
    "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://224.0.0.1/", "https://93.184.216.34:99999/",
])
def test_refused_receiver_urls(url):
    with pytest.raises(TargetRefused):
        check_url(url, allow=())


def test_public_and_allowed_receivers_pass():
    assert check_url("https://93.184.216.34/hooks?x=1", allow=()) == "https://93.184.216.34/hooks?x=1"
    assert check_url("http://[2606:4700:4700::1111]/in", allow=())
    # Tests allow loopback, and only loopback: another private network is still refused.
    assert check_url("http://127.0.0.1:9000/in", allow=LOOPBACK)
    with pytest.raises(TargetRefused):
        check_url("http://10.0.0.1/in", allow=LOOPBACK)


# -- secrets at rest -------------------------------------------------------------------------

def test_secrets_are_sealed_and_keys_rotate(tmp_path):
    cfg = Config(data_dir=str(tmp_path))
    secret = new_secret()
    assert secret.startswith("whsec_")
    box = SecretBox.from_config(cfg)
    sealed = box.seal(secret)
    assert secret.encode() not in sealed and secret[6:].encode() not in sealed
    assert SecretBox.from_config(cfg).open(sealed) == secret  # the key file is reused
    assert (tmp_path / "webhook.key").stat().st_mode & 0o077 == 0
    from cryptography.fernet import Fernet
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    cfg.webhooks.encryption_keys = [old]
    sealed_old = SecretBox.from_config(cfg).seal(secret)
    cfg.webhooks.encryption_keys = [new, old]
    assert SecretBox.from_config(cfg).open(sealed_old) == secret
    cfg.webhooks.encryption_keys = [new]
    with pytest.raises(ValueError):
        SecretBox.from_config(cfg).open(sealed_old)


# -- signatures and the retry schedule ---------------------------------------------------------

def test_signatures_verify_and_a_tampered_body_fails():
    secret = new_secret()
    body = '{"data":{"video_id":"v1"},"type":"video.ready"}'
    headers = signed_headers(secret, "evt_1", body, dt.datetime.now(dt.timezone.utc))
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("v1", "v2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "evt_2"})


def test_retries_back_off_exponentially_for_a_day():
    cfg = WebhooksConfig()
    delays = [retry_delay_s(cfg, n, rand=lambda: 0.0) for n in range(1, 14)]
    assert delays[:4] == [5, 10, 20, 40] and delays[-1] == cfg.retry_max_interval_s
    assert retry_delay_s(cfg, 3, rand=lambda: 1.0) == pytest.approx(22.0)
    from tests.contract.test_webhooks_contract import _delivery
    d, now, attempts = _delivery("wh_x"), 1_000_000, 0
    while d.state == DELIVERY_PENDING:
        d = after_attempt(cfg, d, Outcome(503, "busy", 5), now, now)
        now, attempts = max(now, d.next_attempt_us), attempts + 1
    assert d.state == DELIVERY_FAILED
    assert now - d.first_attempt_us <= cfg.retry_for_s * 1_000_000
    assert 25 < attempts < 40  # a day: hourly once the doubling reaches the cap
    assert len(json.loads(d.attempts_json)) == 20 and d.attempt_count == attempts
    ok = after_attempt(cfg, _delivery("wh_x"), Outcome(204, "", 3), 5, 6)
    assert ok.state == DELIVERY_SUCCEEDED and ok.attempt_count == 1


# -- events from topic messages -----------------------------------------------------------------

class FakeRpcError(grpc.RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code


class FakeMetadata:
    """The two MetadataService reads webhook_svc makes, over dicts."""

    def __init__(self):
        self.videos: dict[str, video_pb2.Video] = {}
        self.owners = {"chan": "acct-owner"}

    def GetVideo(self, request, timeout=None):
        if request.id not in self.videos:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND)
        return self.videos[request.id]

    def GetChannel(self, request, timeout=None):
        if request.id not in self.owners:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND)
        return video_pb2.Channel(id=request.id, owner_account_id=self.owners[request.id])


def message(topic: str, event) -> Message:
    return Message(topic=topic, partition=0, offset=0, key=b"v1", value=event.SerializeToString(), timestamp_ms=1000)


def test_topic_messages_become_events():
    meta = FakeMetadata()
    meta.videos["v1"] = video_pb2.Video(id="v1", title="Clip", channel=video_pb2.Channel(id="chan"),
                                        status=S.VIDEO_STATUS_FAILED, failure_reason="not a video")
    source = EventSource(meta)
    uploaded = source.event_of(message(TOPIC_TRANSCODE_REQUESTS, events_pb2.TranscodeRequest(video_id="v1")))
    assert (uploaded.type, uploaded.data["title"], uploaded.channel_id) == ("video.uploaded", "Clip", "chan")
    chunk = events_pb2.TranscodeRequest(video_id="v1", chunk=events_pb2.TranscodeChunk(index=1, count=3))
    assert source.event_of(message(TOPIC_TRANSCODE_REQUESTS, chunk)) is None
    upgrade = events_pb2.TranscodeRequest(video_id="v1", add_codecs=["av1"])
    assert source.event_of(message(TOPIC_TRANSCODE_REQUESTS, upgrade)) is None
    ready = source.event_of(message(TOPIC_VIDEO_PUBLISHED, events_pb2.VideoPublished(video_id="v1", channel_id="chan")))
    assert ready.type == "video.ready"
    changed = events_pb2.VideoChanged(video_id="v1", change=events_pb2.VIDEO_CHANGE_UPDATED)
    failed = source.event_of(message(TOPIC_VIDEO_CHANGED, changed))
    assert (failed.type, failed.data["failure_reason"]) == ("video.failed", "not a video")
    meta.videos["v1"].status = S.VIDEO_STATUS_READY
    assert source.event_of(message(TOPIC_VIDEO_CHANGED, changed)) is None  # an edit of a READY video
    deleted = source.event_of(message(TOPIC_VIDEO_DELETED, events_pb2.VideoDeleted(video_id="v1", channel_id="chan")))
    assert deleted.type == "video.deleted"
    captions = events_pb2.CaptionsReady(video_id="v1", language="en", kind="subtitles", caption_id="c1")
    first = source.event_of(message(TOPIC_CAPTIONS_READY, captions))
    assert first.type == "captions.ready" and first.data["language"] == "en"
    replaced = source.event_of(message(TOPIC_CAPTIONS_READY, events_pb2.CaptionsReady(
        video_id="v1", language="en", caption_id="c2")))
    assert replaced.id != first.id  # a replaced track is a new event; a redelivery is not
    assert source.event_of(message(TOPIC_CAPTIONS_READY, captions)).id == first.id
    with pytest.raises(PermanentError):
        source.event_of(Message(topic=TOPIC_VIDEO_DELETED, partition=0, offset=0, key=None, value=b"\xff\xff"))
    with pytest.raises(PermanentError):
        source.event_of(message(TOPIC_CAPTIONS_READY, events_pb2.CaptionsReady(video_id="v1")))


def test_fanout_queues_one_delivery_per_subscribed_endpoint(tmp_path):
    """One delivery per endpoint of the owner that subscribes to the type and existed when the
    event happened; a redelivered message adds none."""
    store = SqliteWebhookStore(tmp_path / "w.sqlite3")
    meta = FakeMetadata()
    for webhook_id, types in (("wh_all", ()), ("wh_ready", ("video.ready",)), ("wh_deleted", ("video.deleted",))):
        store.create_endpoint(WebhookEndpointRecord(webhook_id, "acct-owner", "http://127.0.0.1:1/", b"x", types,
                                                    "", 1))
    store.create_endpoint(WebhookEndpointRecord("wh_other", "acct-other", "http://127.0.0.1:1/", b"x", (), "", 1))
    # Created a second after the event happened (the message is read late): not told of it.
    store.create_endpoint(WebhookEndpointRecord("wh_late", "acct-owner", "http://127.0.0.1:1/", b"x", (), "",
                                                2_000_000))
    fanout = EventFanout(store, EventSource(meta), clock=lambda: 50.0)
    published = message(TOPIC_VIDEO_PUBLISHED, events_pb2.VideoPublished(video_id="v1", channel_id="chan", title="T"))
    fanout(published)
    fanout(published)  # redelivered, or republished by placement
    meta.owners["orphan"] = ""
    fanout(message(TOPIC_VIDEO_PUBLISHED, events_pb2.VideoPublished(video_id="v2", channel_id="orphan")))
    due = store.due_deliveries(50_000_000, 100)
    assert sorted(d.webhook_id for d in due) == ["wh_all", "wh_ready"]
    body = json.loads(due[0].payload)
    assert body["type"] == "video.ready" and body["data"] == {"video_id": "v1", "channel_id": "chan", "title": "T"}
    assert body["timestamp"] == "1970-01-01T00:00:01Z"
    store.close()


# -- the deliverer against a loopback receiver -------------------------------------------------

class Receiver:
    """A loopback HTTP receiver that answers `fail_first` requests with 500, then 204, and
    keeps every request it got (headers, body, the status it answered)."""

    def __init__(self, fail_first: int = 0, port: int = 0):
        self.fail_first = fail_first
        self.requests: list[tuple[dict, bytes, int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    status = 500 if len(receiver.requests) < receiver.fail_first else 204
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> dict[str, tuple[dict, bytes]]:
        """What a receiver deduplicating on webhook-id keeps: each id's first accepted request."""
        kept: dict[str, tuple[dict, bytes]] = {}
        with self.lock:
            for headers, body, status in self.requests:
                if status < 300:
                    kept.setdefault(headers["webhook-id"], (headers, body))
        return kept

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver():
    r = Receiver(fail_first=3)
    yield r
    r.close()


class Clock:
    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _setup(tmp_path, url: str, allow=("127.0.0.1/32",)):
    cfg = Config(data_dir=str(tmp_path))
    cfg.webhooks.allow_networks = list(allow)
    cfg.webhooks.timeout_s = 5
    store = SqliteWebhookStore(tmp_path / "webhooks.sqlite3")
    box = SecretBox.from_config(cfg)
    secret = new_secret()
    store.create_endpoint(WebhookEndpointRecord("wh_1", "acct-owner", url, box.seal(secret), (), "", 1))
    return cfg, store, box, secret


def _queue(store, clock, kinds=("video.uploaded", "video.ready", "video.deleted")):
    meta = FakeMetadata()
    meta.videos["v1"] = video_pb2.Video(id="v1", title="Clip", channel=video_pb2.Channel(id="chan"))
    fanout = EventFanout(store, EventSource(meta), clock)
    topics = {"video.uploaded": (TOPIC_TRANSCODE_REQUESTS, events_pb2.TranscodeRequest(video_id="v1")),
              "video.ready": (TOPIC_VIDEO_PUBLISHED, events_pb2.VideoPublished(video_id="v1", channel_id="chan")),
              "video.deleted": (TOPIC_VIDEO_DELETED, events_pb2.VideoDeleted(video_id="v1", channel_id="chan"))}
    for kind in kinds:
        fanout(message(*topics[kind]))
        fanout(message(*topics[kind]))  # every message twice: a redelivery adds nothing


def test_a_failing_receiver_gets_every_event_once_signed_across_a_restart(tmp_path, receiver):
    cfg, store, box, secret = _setup(tmp_path, receiver.url)
    clock = Clock()
    _queue(store, clock)
    deliverer = Deliverer(store, box, cfg.webhooks, clock=clock)
    assert deliverer.send_due(wait=True) == 3  # every first attempt fails (three 500s)
    assert deliverer.send_due(wait=True) == 0  # backing off
    assert [d.state for d in store.due_deliveries(10**18, 10)] == [DELIVERY_PENDING] * 3
    deliverer.close()
    store.close()
    # The deliverer's process is gone mid-backoff; a new one over the same store resumes.
    clock.now += 60
    store = SqliteWebhookStore(tmp_path / "webhooks.sqlite3")
    deliverer = Deliverer(store, SecretBox.from_config(cfg), cfg.webhooks, clock=clock)
    assert deliverer.send_due(wait=True) == 3
    assert deliverer.send_due(wait=True) == 0 and store.due_deliveries(10**18, 10) == []
    kept = receiver.accepted()
    assert len(receiver.requests) == 6 and len(kept) == 3
    assert sorted(json.loads(body)["type"] for _, body in kept.values()) == ["video.deleted", "video.ready",
                                                                              "video.uploaded"]
    for headers, body in kept.values():
        Webhook(secret).verify(body, headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(body.replace(b"v1", b"v9"), headers)
    # A failed attempt and its retry carry the same webhook-id.
    assert {h["webhook-id"] for h, _, _ in receiver.requests} == set(kept)
    page, _ = store.list_deliveries("wh_1", 10, None)
    assert all(d.state == DELIVERY_SUCCEEDED and d.attempt_count == 2 for d in page)
    assert [a["status"] for a in json.loads(page[0].attempts_json)] == [500, 204]
    deliverer.close()
    store.close()


def test_a_loopback_receiver_is_refused_when_not_allowed(tmp_path, receiver):
    """A receiver registered under a public name that now resolves to loopback (DNS
    rebinding) is refused where the connection is made."""
    cfg, store, box, _secret = _setup(tmp_path, receiver.url, allow=())
    clock = Clock()
    _queue(store, clock, kinds=("video.ready",))
    deliverer = Deliverer(store, box, cfg.webhooks, clock=clock)
    assert deliverer.send_due(wait=True) == 1
    (pending,) = store.due_deliveries(10**18, 10)
    (attempt,) = json.loads(pending.attempts_json)
    assert attempt["status"] == 0 and "not a public address" in attempt["error"]
    assert receiver.requests == []
    deliverer.close()
    store.close()


def test_a_deleted_endpoint_fails_its_pending_deliveries(tmp_path, receiver):
    cfg, store, box, _secret = _setup(tmp_path, receiver.url)
    clock = Clock()
    _queue(store, clock, kinds=("video.ready",))
    store.delete_endpoint("wh_1")
    deliverer = Deliverer(store, box, cfg.webhooks, clock=clock)
    deliverer.send_due(wait=True)
    (done,) = store.list_deliveries("wh_1", 10, None)[0]
    assert done.state == DELIVERY_FAILED and receiver.requests == []
    deliverer.close()
    store.close()


def test_a_claimed_attempt_is_made_once(tmp_path, receiver):
    """Two deliverers polling one store: each attempt is claimed by one of them."""
    cfg, store, box, _secret = _setup(tmp_path, receiver.url)
    receiver.fail_first = 0
    clock = Clock()
    _queue(store, clock, kinds=("video.ready",))
    (due,) = store.due_deliveries(10**18, 10)
    first, second = Deliverer(store, box, cfg.webhooks, clock=clock), Deliverer(store, box, cfg.webhooks, clock=clock)
    assert first.attempt(due) is not None
    assert second.attempt(dataclasses.replace(due)) is None  # its view is stale: the claim fails
    assert len(receiver.requests) == 1
    first.close()
    second.close()
    store.close()
