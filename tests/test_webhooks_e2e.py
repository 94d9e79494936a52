"""Webhooks end to end on the embedded backends, every service a process: a creator
registers an endpoint through the REST API; uploading, transcoding, failing, captioning and
deleting videos reach a loopback receiver that fails its first three deliveries, each event
once (by webhook-id) and validly signed; the delivery log and redeliver call; and a receiver
that is down while the deliverer is killed mid-backoff still gets its event from the
restarted one."""
from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from longtail.events.v1 import events_pb2
from longtail_cli.cli import make_test_clip, upload_file, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common.adapters import make_topic_bus
from longtail_common.config import Config
from longtail_common.ports import TOPIC_CAPTIONS_READY
from tests.auth_helpers import bearer
from tests.test_webhooks import Receiver

pytestmark = pytest.mark.slow

CHANNEL = "hooked"
ALL_EVENTS = ["captions.ready", "video.deleted", "video.failed", "video.ready", "video.uploaded"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("webhooks")))
    cfg.webhooks.allow_networks = ["127.0.0.1/32"]  # loopback receivers only, as tests must
    cfg.webhooks.retry_initial_s = 0.5
    cfg.webhooks.retry_max_interval_s = 2.0
    cfg.webhooks.poll_interval_s = 0.2
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=1) as p:
        yield p


@pytest.fixture(scope="module")
def who(platform) -> dict[str, httpx.Client]:
    clients = {name: httpx.Client(base_url=platform.gateway_url, timeout=60,
                                  headers=bearer(platform.cfg, name, admin=name == "admin"))
               for name in ("owner", "other", "admin")}
    yield clients
    for client in clients.values():
        client.close()


def eventually(check, timeout_s: float = 120, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def publish_captions(platform, video_id: str, caption_id: str) -> None:
    """What the captions feature publishes once a track is packaged (events.v1.CaptionsReady)."""
    bus = make_topic_bus(platform.cfg)
    try:
        producer = bus.producer()
        producer.publish(TOPIC_CAPTIONS_READY, events_pb2.CaptionsReady(
            video_id=video_id, language="en", kind="subtitles", label="English", caption_id=caption_id,
        ).SerializeToString(), key=video_id.encode())
        producer.close()
    finally:
        bus.close()


def register(client: httpx.Client, url: str, **body) -> dict:
    created = client.post("/v1/webhooks", json={"url": url, **body})
    assert created.status_code == 201, created.text
    return created.json()


def test_every_event_reaches_a_receiver_that_fails_at_first(platform, who, tmp_path):
    owner = who["owner"]
    receiver = Receiver(fail_first=3)
    try:
        for refused in ("http://10.0.0.1/in", "ftp://127.0.0.1/in", "http://169.254.169.254/"):
            answer = owner.post("/v1/webhooks", json={"url": refused})
            assert answer.status_code == 400, answer.text
        assert owner.post("/v1/webhooks", json={"url": receiver.url, "event_types": ["video.nope"]}).status_code == 400
        hook = register(owner, receiver.url, description="all events")
        secret = hook.pop("secret")
        assert secret.startswith("whsec_")
        listed = owner.get("/v1/webhooks").json()["webhooks"]
        assert listed == [hook] and "secret" not in owner.get(f"/v1/webhooks/{hook['id']}").json()
        assert who["other"].get(f"/v1/webhooks/{hook['id']}").status_code == 404
        assert who["admin"].get(f"/v1/webhooks/{hook['id']}").status_code == 200

        clip = tmp_path / "clip.mp4"
        make_test_clip(str(clip), seconds=2, height=240)
        ready_id = upload_file(owner, platform.gateway_url, str(clip), "Hooked clip", CHANNEL)
        broken = tmp_path / "broken.mp4"
        broken.write_bytes(b"not a video at all " * 64)
        failed_id = upload_file(owner, platform.gateway_url, str(broken), "Broken", CHANNEL)
        assert wait_ready(owner, platform.gateway_url, ready_id, timeout_s=300)["status"] == "READY"
        assert wait_ready(owner, platform.gateway_url, failed_id, timeout_s=300)["status"] == "FAILED"
        publish_captions(platform, ready_id, "cap-1")
        publish_captions(platform, ready_id, "cap-1")  # a redelivery: still one event
        eventually(lambda: len(receiver.accepted()) >= 4, what="four events")
        assert owner.delete(f"/v1/videos/{ready_id}").status_code in (202, 204)

        kept = eventually(lambda: (lambda k: k if len(k) >= 6 else None)(receiver.accepted()), what="every event")
        bodies = [json.loads(body) for _, body in kept.values()]
        assert sorted(b["type"] for b in bodies) == sorted(ALL_EVENTS + ["video.uploaded"])  # two uploads
        assert {b["data"]["video_id"] for b in bodies if b["type"] == "video.failed"} == {failed_id}
        for headers, body in kept.values():
            Webhook(secret).verify(body, headers)
            with pytest.raises(WebhookVerificationError):
                Webhook(secret).verify(body[:-1] + b" }", headers)
        assert sum(status == 500 for _, _, status in receiver.requests) == 3

        log = owner.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"page_size": 100}).json()["deliveries"]
        assert len(log) == 6 and {d["state"] for d in log} == {"succeeded"}
        assert sum(a["status_code"] == 500 for d in log for a in d["attempts"]) == 3
        assert who["other"].get(f"/v1/webhooks/{hook['id']}/deliveries").status_code == 404

        again = log[0]
        before = len(receiver.requests)
        answer = owner.post(f"/v1/webhooks/{hook['id']}/deliveries/{again['id']}:redeliver")
        assert answer.status_code == 202 and answer.json()["state"] == "pending"
        eventually(lambda: len(receiver.requests) > before, what="the redelivery")
        headers, body, status = receiver.requests[-1]
        assert status == 204 and headers["webhook-id"] == again["event_id"]
        Webhook(secret).verify(body, headers)
    finally:
        receiver.close()


def test_a_receiver_down_while_the_deliverer_restarts_loses_nothing(platform, who):
    owner = who["owner"]
    port = free_port()
    hook = register(owner, f"http://127.0.0.1:{port}/down", event_types=["captions.ready"])
    created = owner.post("/v1/videos", json={"title": "to caption", "channel_id": CHANNEL, "size_bytes": 4})
    assert created.status_code == 201, created.text
    publish_captions(platform, created.json()["id"], "cap-restart")

    def backing_off():
        log = owner.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
        return log and log[0]["state"] == "pending" and log[0]["attempt_count"] >= 2 and log[0]

    pending = eventually(backing_off, what="failed attempts (nothing listens)")
    assert all(a["status_code"] == 0 for a in pending["attempts"])
    old = platform.procs["webhook"]
    os.kill(old.pid, signal.SIGKILL)  # the supervisor restarts it, as after a crash
    old.wait()
    receiver = Receiver(port=port)  # the receiver comes back
    try:
        kept = eventually(receiver.accepted, what="the event after the restart")
        assert platform.procs["webhook"].pid != old.pid
        ((headers, body),) = kept.values()
        assert headers["webhook-id"] == pending["event_id"]
        Webhook(hook["secret"]).verify(body, headers)
        assert json.loads(body)["data"]["caption_id"] == "cap-restart"
    finally:
        receiver.close()
