"""Issue 22's authorization matrix: every route of the gateway (every method; only served
files and the API docs are left out) x {anonymous, another account, owner, admin}, each
call checked against its expected status in tests/authz_table.py, on a running platform
(embedded backends; and Kafka, Cassandra and S3Proxy, marked `real`) where the owner has a READY public video and a READY private one
(for the routes that act on a video). The cases come from the app's route
table, so a route without a row in the table fails here. The same platform also shows that a
client's Host header stays out of the URLs the gateway hands out."""
from __future__ import annotations

import copy
import tempfile
import uuid

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from gateway.app import create_app
from longtail_cli.cli import make_test_clip, upload_file, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from tests.auth_helpers import bearer
from tests.authz_table import CALLERS, ROWS, SKIPPED_ROUTE_NAMES, Subject
from tests.real_servers import real_config

pytestmark = pytest.mark.slow

READY_TIMEOUT_S = 300  # an upper bound for a short clip on a busy 2-core machine
OWNER, OTHER, ADMIN = "matrix-owner", "matrix-other", "matrix-admin"
CHANNEL = "matrix-channel"


def gateway_routes() -> list[tuple[str, str, str]]:
    """(name, method, path) of every route of the app, as its route table has them."""
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(Config(data_dir=data_dir))
    routes = []
    for context in iter_route_contexts(app.routes):
        if context.name in SKIPPED_ROUTE_NAMES:
            continue
        for method in sorted(context.methods or {"(none)"}):
            routes.append((context.name, method, context.path))
    return routes


ROUTES = gateway_routes()


@pytest.fixture(scope="module", params=["embedded", pytest.param("real", marks=pytest.mark.real)])
def platform(request, tmp_path_factory):
    """The platform on the embedded backends, and on Kafka, Cassandra and S3Proxy (`real`)."""
    data_dir = str(tmp_path_factory.mktemp("authz"))
    if request.param == "real":
        cfg = copy.deepcopy(real_config(request.getfixturevalue("real_servers")))
        tag = uuid.uuid4().hex[:8]
        cfg.data_dir, cfg.scylla.keyspace, cfg.s3.bucket_prefix = data_dir, f"longtail_authz_{tag}", f"authz{tag}-"
    else:
        cfg = Config(data_dir=data_dir)
    cfg.limits.uploads_per_day = 0  # the rows create two dozen videos of the owner's; quotas have their own test
    cfg.webhooks.allow_networks = ["127.0.0.1/32"]  # the owner's webhook is on loopback (nothing listens)
    p = Platform(cfg, gateway_port=free_port(), transcoder_workers=1)
    p.start(timeout_s=180)  # on Cassandra, the first start creates the keyspace and the topics
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def headers(platform) -> dict[str, dict[str, str]]:
    cfg = platform.cfg
    return {"anonymous": {}, "other": bearer(cfg, OTHER), "owner": bearer(cfg, OWNER),
            "admin": bearer(cfg, ADMIN, admin=True)}


def ready_video(client: httpx.Client, base: str, clip: str, privacy: str) -> tuple[str, str]:
    """A READY video of the client's account at this privacy, and its signed manifest path."""
    video_id = upload_file(client, base, clip, f"Matrix clip ({privacy})", CHANNEL)
    assert wait_ready(client, base, video_id, timeout_s=READY_TIMEOUT_S)["status"] == "READY"
    if privacy != "public":
        edited = client.patch(f"{base}/v1/videos/{video_id}", json={"privacy": privacy})
        assert edited.status_code == 200, edited.text
    watched = client.get(f"{base}/v1/videos/{video_id}/watch")
    assert watched.status_code == 200, watched.text
    return video_id, httpx.URL(watched.json()["stream"]["url"]).raw_path.decode()


@pytest.fixture(scope="module")
def subjects(platform, headers, tmp_path_factory) -> dict[str, Subject]:
    """The owner's READY public and private videos, and what the rows make around them."""
    base, owner = platform.gateway_url, headers["owner"]
    clip = tmp_path_factory.mktemp("clip") / "matrix.mp4"
    make_test_clip(str(clip), seconds=2, height=240)

    def new_upload_path() -> str:
        created = httpx.post(f"{base}/v1/videos", json={"title": "t", "channel_id": CHANNEL, "size_bytes": 4},
                             headers=owner, timeout=30)
        assert created.status_code == 201, created.text
        return httpx.URL(created.json()["upload_url"]).raw_path.decode()

    def new_owner_token_id() -> str:
        created = httpx.post(f"{base}/v1/tokens", json={"display_name": "to revoke"}, headers=owner, timeout=30)
        assert created.status_code == 201, created.text
        return created.json()["id"]

    def video_maker(privacy: str):
        def new_video_id() -> str:
            created = httpx.post(f"{base}/v1/videos", headers=owner, timeout=30, json={
                "title": "to delete", "channel_id": CHANNEL, "size_bytes": 4, "privacy": privacy})
            assert created.status_code == 201, created.text
            return created.json()["id"]
        return new_video_id

    def new_owner_webhook_id() -> str:
        created = httpx.post(f"{base}/v1/webhooks", json={"url": "http://127.0.0.1:9/to-delete"}, headers=owner,
                             timeout=30)
        assert created.status_code == 201, created.text
        return created.json()["id"]

    def caption_maker(video_id: str):
        languages = iter(["de", "fr", "es", "it", "nl", "pt", "sv", "da", "fi", "pl", "cs", "hu"])

        def new_caption() -> str:
            language = next(languages)
            created = httpx.post(f"{base}/v1/videos/{video_id}/captions", params={"language": language},
                                 content=b"WEBVTT\n\n00:00.500 --> 00:01.500\nTo delete\n",
                                 headers={**owner, "Content-Type": "text/vtt"}, timeout=30)
            assert created.status_code == 201, created.text
            return language
        return new_caption

    made = {}
    with httpx.Client(headers=owner, timeout=60) as client:
        webhook_id = new_owner_webhook_id()  # before the uploads, so their events make deliveries
        for privacy in ("public", "private"):
            video_id, master_path = ready_video(client, base, str(clip), privacy)
            master_key = master_path.split("/t/", 1)[1].split("/", 1)[1]  # /origin|edge/REGION, /t/TOKEN/, key
            made[privacy] = Subject(video_id=video_id, channel_id=CHANNEL, new_video_id=video_maker(privacy),
                                    master_path=master_path, master_key=master_key, new_upload_path=new_upload_path,
                                    new_owner_token_id=new_owner_token_id, webhook_id=webhook_id,
                                    new_owner_webhook_id=new_owner_webhook_id,
                                    new_caption=caption_maker(video_id), privacy=privacy)
        deliveries = client.get(f"{base}/v1/webhooks/{webhook_id}/deliveries").json()["deliveries"]
        assert deliveries, "the uploads made no webhook deliveries"
        for subject in made.values():
            subject.delivery_id = deliveries[0]["id"]
    return made


def test_every_row_names_a_route():
    """A row left behind by a removed route is a stale expectation."""
    assert set(ROWS) - {(name, method) for name, method, _ in ROUTES} == set()


CASES = [(name, method, path, privacy) for name, method, path in ROUTES for privacy in ("public", "private")
         if privacy == "public" or (ROWS.get((name, method)) and ROWS[name, method].private)]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("name", "method", "path", "privacy"), CASES,
                         ids=[f"{m} {p} ({n}, {v})" for n, m, p, v in CASES])
def test_route_answers_each_caller(platform, headers, subjects, name, method, path, privacy, caller):
    row = ROWS.get((name, method))
    assert row is not None, f"route {name} ({method} {path}) has no row in tests/authz_table.py"
    subject = subjects[privacy]
    expected = row.private if privacy == "private" else row.expect
    request = row.request(subject)
    with httpx.Client(base_url=platform.gateway_url, timeout=60, follow_redirects=False) as client:
        response = client.request(method, row.path(subject), **{
            **request, "headers": {**request.get("headers", {}), **headers[caller]}})
    assert response.status_code == expected[caller], (caller, method, path, response.text[:300])


def test_a_clients_host_header_stays_out_of_stream_urls(platform, headers, subjects):
    """Issue 22: a Host header that is not the gateway's ended up inside the stream URLs
    the watch call returns (and in the renderings cached for everyone after it)."""
    base = platform.gateway_url
    for privacy, caller in (("public", "anonymous"), ("private", "owner")):
        vid = subjects[privacy].video_id
        for path in (f"/v1/videos/{vid}/watch", f"/v1/videos/{vid}", "/v1/latest"):
            answer = httpx.get(f"{base}{path}", headers={**headers[caller], "Host": "evil.example"}, timeout=30)
            assert answer.status_code == 200 and "evil" not in answer.text, (path, answer.text[:300])
        watched = httpx.get(f"{base}/v1/videos/{vid}/watch", headers={**headers[caller], "Host": "evil.example"},
                            timeout=30).json()
        urls = [watched["stream"]["url"], *watched["stream"]["manifests"].values()]
        assert all(u.startswith(f"{base}/") for u in urls), urls
        assert httpx.get(watched["stream"]["url"], headers=headers[caller], timeout=30).status_code == 200
