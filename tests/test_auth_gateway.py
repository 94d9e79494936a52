"""Authentication through the gateway, on a running platform (embedded backends): browser
sessions (cookies, CSRF, rotation, sign-out, throttling), personal API tokens (good,
expired, revoked; the /v1/tokens API), ownership of channels and uploads (a stranger's
PATCH to someone's upload is refused: issue 22's finding), and the mesh itself (a call
straight to a service port without a signed principal is refused)."""
from __future__ import annotations

import re
import time

import grpc
import httpx
import pytest

from longtail.accounts.v1 import account_service_pb2 as apb
from longtail.accounts.v1 import account_service_pb2_grpc as apb_grpc
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail.upload.v1 import upload_service_pb2 as upb
from longtail.upload.v1 import upload_service_pb2_grpc as upb_grpc
from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from longtail_common.grpc_server import dial
from longtail_common.mesh_identity import PRINCIPAL_METADATA_KEY, MeshPrincipal, MeshSigner, make_mesh_signer
from tests.auth_helpers import api_token, bearer, service_metadata, with_password

pytestmark = pytest.mark.slow

TUS = {"Tus-Resumable": "1.0.0"}
WINDOW_S = 10  # long enough for three slow sign-ins on a busy machine to fall inside it
MAX_FAILURES = 3
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("auth")))
    cfg.auth.sign_in_max_failures = MAX_FAILURES
    cfg.auth.sign_in_failure_window_s = WINDOW_S
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=1) as p:
        yield p


@pytest.fixture()
def browser(platform):
    with httpx.Client(base_url=platform.gateway_url, timeout=30) as client:
        yield client


def csrf_of(page: httpx.Response) -> str:
    match = CSRF_RE.search(page.text)
    assert match, page.text
    return match.group(1)


def sign_in(client: httpx.Client, username: str, password: str, next_url: str = "/") -> httpx.Response:
    token = csrf_of(client.get("/account/sign-in"))
    return client.post("/account/sign-in", data={"username": username, "password": password, "next": next_url,
                                                 "csrf_token": token})


def create_video(client: httpx.Client, headers: dict, channel: str) -> httpx.Response:
    return client.post("/v1/videos", json={"title": "mine", "channel_id": channel, "size_bytes": 4}, headers=headers)


def test_session_sign_in_rotation_and_sign_out(platform, browser):
    with_password(platform.cfg, "sally", "correct horse battery")
    assert browser.get("/upload", follow_redirects=False).headers["location"] == "/account/sign-in?next=%2Fupload"
    signed = sign_in(browser, "sally", "correct horse battery", next_url="/upload")
    assert signed.status_code == 303 and signed.headers["location"] == "/upload"
    cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith("lt_session="))
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Secure" not in cookie  # http here
    first = browser.cookies["lt_session"]
    assert browser.get("/v1/me").json() == {"account_id": browser.get("/v1/me").json()["account_id"],
                                            "username": "sally", "admin": False, "authenticated_by": "session"}
    page = browser.get("/upload")
    assert page.status_code == 200 and 'id="signed-in-as">sally<' in page.text

    # Signing in again (rotation): a new session id, and the old one no longer works.
    assert sign_in(browser, "sally", "correct horse battery").status_code == 303
    second = browser.cookies["lt_session"]
    assert second != first
    with httpx.Client(base_url=platform.gateway_url, cookies={"lt_session": first}) as stale:
        assert stale.get("/v1/me").status_code == 401

    # Sign-out needs the CSRF token, then ends the session everywhere.
    assert browser.post("/account/sign-out").status_code == 403
    out = browser.post("/account/sign-out", data={"csrf_token": csrf_of(browser.get("/"))})
    assert out.status_code == 303
    with httpx.Client(base_url=platform.gateway_url, cookies={"lt_session": second}) as replay:
        assert replay.get("/v1/me").status_code == 401


def test_state_changing_calls_on_a_session_need_the_csrf_token(platform, browser):
    with_password(platform.cfg, "cora", "a fine long password")
    token = csrf_of(browser.get("/account/sign-in"))
    forged = browser.post("/account/sign-in", data={"username": "cora", "password": "a fine long password",
                                                     "csrf_token": "0" * 64})
    assert forged.status_code == 403 and "lt_session" not in browser.cookies  # login CSRF refused
    assert browser.post("/account/sign-in", data={"username": "cora", "password": "a fine long password",
                                                  "csrf_token": token}).status_code == 303
    assert browser.post("/v1/tokens", json={"display_name": "x"}).status_code == 403
    header = {"X-CSRF-Token": csrf_of(browser.get("/account/tokens"))}
    created = browser.post("/v1/tokens", json={"display_name": "from the page"}, headers=header)
    assert created.status_code == 201, created.text
    assert create_video(browser, {}, "cora-channel").status_code == 403
    assert create_video(browser, header, "cora-channel").status_code == 201


def test_wrong_password_says_nothing_and_is_throttled(platform, browser):
    with_password(platform.cfg, "tess", "the right password")
    unknown = sign_in(browser, "nobody-here", "whatever password")
    wrong = sign_in(browser, "tess", "the wrong password")
    assert unknown.status_code == wrong.status_code == 401
    message = re.compile(r'<p id="sign-in-error"[^>]*>([^<]*)</p>')
    assert message.search(unknown.text).group(1) == message.search(wrong.text).group(1) == \
        "Wrong username or password."
    sign_in(browser, "tess", "the wrong password")
    # The limit is reached, for this username and this address: even the right password waits.
    throttled = sign_in(browser, "tess", "the right password")
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) <= WINDOW_S
    assert sign_in(browser, "someone-else", "any password").status_code == 429  # same address
    time.sleep(WINDOW_S + 0.5)
    assert sign_in(browser, "tess", "the right password").status_code == 303


def test_bearer_tokens_good_expired_revoked(platform, browser):
    cfg = platform.cfg
    good = api_token(cfg, "tom")
    assert browser.get("/v1/me", headers={"Authorization": f"Bearer {good}"}).json()["authenticated_by"] == "token"
    now = time.time()
    expired = api_token(cfg, "tom", expire_time_us=int((now - 86400) * 1e6), clock=lambda: now - 2 * 86400)
    for token in (expired, "lt_0123456789abcdef_" + "x" * 43, "not-a-token"):
        refused = browser.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith('Bearer realm="longtail", error="invalid_token"')
    anonymous = browser.get("/v1/me")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == 'Bearer realm="longtail"'

    auth = {"Authorization": f"Bearer {good}"}
    created = browser.post("/v1/tokens", json={"display_name": "ci", "expires_days": 30}, headers=auth)
    assert created.status_code == 201 and created.json()["token"].startswith("lt_")
    listed = browser.get("/v1/tokens", headers=auth).json()["tokens"]
    assert {t["display_name"] for t in listed} >= {"ci"} and all("token" not in t for t in listed)
    other = bearer(cfg, "tina")
    assert browser.delete(f"/v1/tokens/{created.json()['id']}", headers=other).status_code == 404
    assert browser.delete(f"/v1/tokens/{created.json()['id']}", headers=auth).status_code == 204
    revoked = browser.get("/v1/me", headers={"Authorization": f"Bearer {created.json()['token']}"})
    assert revoked.status_code == 401 and 'error="invalid_token"' in revoked.headers["WWW-Authenticate"]


def test_uploads_belong_to_their_creator(platform, browser):
    alice, bob = bearer(platform.cfg, "alice"), bearer(platform.cfg, "bob")
    assert create_video(browser, {}, "alices").status_code == 401
    created = create_video(browser, alice, "alices")
    assert created.status_code == 201 and created.json()["status"] == "UPLOADING"
    url = created.json()["upload_url"]
    patch = {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}

    # Issue 22's finding: a stranger's bytes no longer replace the creator's upload.
    assert browser.patch(url, content=b"evil", headers={**patch, **bob}).status_code == 403
    assert browser.head(url, headers={**TUS, **bob}).status_code == 403
    assert browser.patch(url, content=b"evil", headers=patch).status_code == 401
    assert browser.head(url, headers={**TUS, **alice}).headers["Upload-Offset"] == "0"
    assert create_video(browser, bob, "alices").status_code == 403  # alice's channel
    assert browser.post("/v1/uploads", headers={**TUS, **bob, "Upload-Length": "4",
                                                "Upload-Metadata": "title dA==,channel_id YWxpY2Vz"}).status_code == 403
    done = browser.patch(url, content=b"mine", headers={**patch, **alice})
    assert done.status_code == 204 and done.headers["Upload-Offset"] == "4"


def test_service_ports_refuse_calls_without_a_signed_principal(platform):
    cfg = platform.cfg
    video = video_pb2.Video(id="direct1", title="t", channel=video_pb2.Channel(id="direct", owner_account_id="a" * 32))
    forged = MeshSigner(b"not the mesh key of this platform!!", 60).sign(MeshPrincipal(service="x"))
    account = make_mesh_signer(cfg).sign(MeshPrincipal(service="longtail.gateway", account_id="b" * 32,
                                                        username="bob"))
    # Over the mesh's mutual TLS (the operator's certificate): a mesh member, yet no principal.
    with dial(cfg.services.metadata, cfg, "metadata") as mch, dial(cfg.services.upload, cfg, "upload") as uch:
        metadata, accounts, upload = (mpb_grpc.MetadataServiceStub(mch), apb_grpc.AccountServiceStub(mch),
                                      upb_grpc.UploadServiceStub(uch))
        for call in (lambda md: metadata.CreateVideo(mpb.CreateVideoRequest(video=video), metadata=md, timeout=10),
                     lambda md: upload.GetUpload(upb.GetUploadRequest(video_id="direct1"), metadata=md, timeout=10),
                     lambda md: accounts.ResolveToken(apb.ResolveTokenRequest(token="x"), metadata=md, timeout=10)):
            for md in ((), ((PRINCIPAL_METADATA_KEY, forged),), ((PRINCIPAL_METADATA_KEY, "garbage"),)):
                with pytest.raises(grpc.RpcError) as err:
                    call(md)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (md, err.value.details())
        # An account's principal is not a service's; and it creates only in its own name.
        with pytest.raises(grpc.RpcError) as err:
            accounts.VerifyPassword(apb.VerifyPasswordRequest(username="a", password="b"),
                                    metadata=((PRINCIPAL_METADATA_KEY, account),), timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as err:
            metadata.CreateVideo(mpb.CreateVideoRequest(video=video), metadata=((PRINCIPAL_METADATA_KEY, account),),
                                 timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Public reads need nothing; a service's principal may do the rest.
        assert metadata.BatchGetVideos(mpb.BatchGetVideosRequest(ids=["direct1"]), timeout=10).videos == []
        created = metadata.CreateVideo(mpb.CreateVideoRequest(video=video), metadata=service_metadata(cfg), timeout=10)
        assert created.channel.owner_account_id == "a" * 32
