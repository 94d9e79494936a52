"""The pieces of authentication that need no running platform: the mesh principal's
signature and the access rules, the sign-in failure window, the cookies' attributes,
and the account rules for sessions and first OIDC sign-ins."""
from __future__ import annotations

import time

import grpc
import pytest
from fastapi.testclient import TestClient

from longtail.auth.v1 import access_pb2
from longtail_common.adapters.sqlite_accounts import SqliteAccountStore
from longtail_common.config import AuthConfig, Config, load_config
from longtail_common.mesh_identity import (
    MeshPrincipal,
    MeshSigner,
    PrincipalRefused,
    access_of,
    mesh_secret,
    refusal,
)
from gateway.app import create_app
from gateway.auth.throttle import FailureWindow
from gateway.routes.account import safe_next
from metadata_svc.accounts import Accounts

A = access_pb2.Access
ACCOUNT = MeshPrincipal("longtail.gateway", "a" * 32, "ada")
ADMIN = MeshPrincipal("longtail.gateway", "b" * 32, "root", admin=True)
SERVICE = MeshPrincipal("longtail.upload.v1.UploadService")


def test_mesh_tokens_are_signed_short_lived_and_bound_to_the_key():
    signer = MeshSigner(b"k" * 40, ttl_s=60)
    assert signer.verify(signer.sign(ACCOUNT)) == ACCOUNT
    assert signer.verify(signer.sign(SERVICE)) == SERVICE
    with pytest.raises(PrincipalRefused):
        MeshSigner(b"x" * 40, ttl_s=60).verify(signer.sign(ACCOUNT))
    token = signer.sign(ACCOUNT)
    with pytest.raises(PrincipalRefused):
        signer.verify(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    old = MeshSigner(b"k" * 40, ttl_s=1)
    stale = old.sign(ACCOUNT)
    real_time = time.time
    try:
        time.time = lambda: real_time() + 40  # past its expiry and the clock leeway
        with pytest.raises(PrincipalRefused):
            old.verify(stale)
    finally:
        time.time = real_time


def test_every_rpc_declares_its_access_and_the_rules_hold():
    assert access_of("/longtail.metadata.v1.MetadataService/GetVideo") == A.ACCESS_PUBLIC
    assert access_of("/longtail.upload.v1.UploadService/AppendUpload") == A.ACCESS_ACCOUNT
    assert access_of("/longtail.accounts.v1.AccountService/VerifyPassword") == A.ACCESS_SERVICE
    assert access_of("/no.such.Service/Method") == A.ACCESS_UNSPECIFIED
    from google.protobuf import descriptor_pool

    import longtail.accounts.v1.account_service_pb2  # noqa: F401 - registers every service below
    import longtail.metadata.v1.metadata_service_pb2  # noqa: F401
    import longtail.placement.v1.placement_service_pb2  # noqa: F401
    import longtail.search.v1.search_service_pb2  # noqa: F401
    import longtail.transcoder.v1.transcoder_service_pb2  # noqa: F401
    import longtail.upload.v1.upload_service_pb2  # noqa: F401
    import longtail.webhook.v1.webhook_service_pb2  # noqa: F401

    pool = descriptor_pool.Default()
    for name in ("metadata.v1.MetadataService", "accounts.v1.AccountService", "upload.v1.UploadService",
                 "search.v1.SearchService", "placement.v1.PlacementService", "transcoder.v1.TranscoderService",
                 "webhook.v1.WebhookService"):
        service = pool.FindServiceByName(f"longtail.{name}")
        undeclared = [m.name for m in service.methods if access_of(f"/{service.full_name}/{m.name}") == 0]
        assert not undeclared, f"{name}: {undeclared} declare no access"

    expected = {  # (access, principal) -> refused with
        (A.ACCESS_PUBLIC, None): None, (A.ACCESS_ACCOUNT, None): grpc.StatusCode.UNAUTHENTICATED,
        (A.ACCESS_ACCOUNT, ACCOUNT): None, (A.ACCESS_ACCOUNT, SERVICE): None,
        (A.ACCESS_ADMIN, ACCOUNT): grpc.StatusCode.PERMISSION_DENIED, (A.ACCESS_ADMIN, ADMIN): None,
        (A.ACCESS_ADMIN, SERVICE): None, (A.ACCESS_SERVICE, ADMIN): grpc.StatusCode.PERMISSION_DENIED,
        (A.ACCESS_SERVICE, SERVICE): None, (A.ACCESS_UNSPECIFIED, ACCOUNT): grpc.StatusCode.PERMISSION_DENIED,
    }
    for (access, principal), code in expected.items():
        refused = refusal(access, principal)
        assert (refused[0] if refused else None) == code, (access, principal)


def test_failure_window_slides():
    now = [0.0]
    window = FailureWindow(max_failures=2, window_s=10, clock=lambda: now[0])
    window.fail("user:a", "address:x")
    now[0] = 4
    window.fail("user:a", "address:x")
    assert window.retry_after("user:a") == 6 and window.retry_after("address:x") == 6
    assert window.retry_after("user:b") == 0 and window.retry_after("user:b", "address:x") == 6
    now[0] = 10.5  # the first failure left the window
    assert window.retry_after("user:a") == 0
    window.forget("user:a")
    now[0] = 11
    window.fail("user:a")
    assert window.retry_after("user:a") == 0


def test_next_is_a_path_on_this_site():
    assert safe_next("/upload?x=1") == "/upload?x=1"
    for bad in ("https://evil.example", "//evil.example", "/\\evil.example", "upload", "/a\r\nSet-Cookie: x", None):
        assert safe_next(bad) == "/"


def test_cookies_are_secure_with_host_prefix_over_https(tmp_path):
    cfg = Config(data_dir=str(tmp_path))
    cfg.platform.public_url = "https://video.example.org"
    page = TestClient(create_app(cfg)).get("/account/sign-in")
    assert page.status_code == 200
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("__Host-lt_csrf=") and "Secure" in cookie and "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower() and "Path=/" in cookie and "Domain" not in cookie


def test_mesh_secret_is_made_once_per_data_dir_or_configured(tmp_path):
    cfg = Config(data_dir=str(tmp_path))
    first = mesh_secret(cfg)
    assert mesh_secret(cfg) == first and (tmp_path / "mesh.secret").stat().st_mode & 0o077 == 0
    cfg.auth.mesh_secret = "s" * 40
    assert mesh_secret(cfg) == b"s" * 40
    cfg.auth.mesh_secret = "short"
    with pytest.raises(ValueError):
        mesh_secret(cfg)


def test_nested_oidc_settings_come_from_the_environment():
    cfg = load_config(env={"LONGTAIL_AUTH__OIDC__ISSUER": "https://id.example.org/realms/lt",
                           "LONGTAIL_AUTH__OIDC__SCOPES": "openid,email", "LONGTAIL_AUTH__SESSION_TTL_S": "60"})
    assert cfg.auth.oidc.issuer == "https://id.example.org/realms/lt" and cfg.auth.oidc.scopes == ["openid", "email"]
    assert cfg.auth.session_ttl_s == 60


@pytest.fixture()
def accounts(tmp_path):
    store = SqliteAccountStore(tmp_path / "m.sqlite3")
    clock = [1_800_000_000.0]
    yield Accounts(store, AuthConfig(session_ttl_s=100), clock=lambda: clock[0]), clock
    store.close()


def test_sessions_expire_end_and_stop_with_a_disabled_account(accounts):
    rules, clock = accounts
    ada = rules.create("ada")
    secret, _expiry = rules.create_session(ada.account_id)
    assert rules.resolve_session(secret).username == "ada"
    assert rules.resolve_session(secret + "x") is None and rules.resolve_session("") is None
    clock[0] += 101
    assert rules.resolve_session(secret) is None
    secret, _expiry = rules.create_session(ada.account_id)
    rules.update(ada.account_id, disabled=True)
    assert rules.resolve_session(secret) is None
    rules.update(ada.account_id, disabled=False)
    rules.end_session(secret)
    assert rules.resolve_session(secret) is None


def test_first_oidc_sign_in_makes_one_account_with_a_free_name(accounts):
    rules, _clock = accounts
    rules.create("alice")
    first = rules.sign_in_external("https://id.example.org", "sub-1", "Alice", "alice@example.org")
    assert first.username == "alice-2"  # "alice" is a local account: never taken over
    again = rules.sign_in_external("https://id.example.org", "sub-1", "renamed", "")
    assert again == first
    other = rules.sign_in_external("https://id.example.org", "sub-2", "9 lives!", "not an email")
    assert other.username == "u9-lives" and rules.get(other.account_id).email == ""
    rules.update(first.account_id, disabled=True)
    assert rules.sign_in_external("https://id.example.org", "sub-1") is None


def test_provider_access_tokens_are_checked_against_its_keys():
    """OidcProvider without a provider: its documents stand in, the checks are the real ones."""
    import asyncio

    from joserfc import jwt
    from joserfc.jwk import KeySet, RSAKey

    from gateway.auth.oidc import OidcError, OidcProvider
    from longtail_common.config import OidcConfig

    old, new = (RSAKey.generate_key(2048, parameters={"kid": kid}) for kid in ("old", "new"))
    published = [KeySet([old])]
    provider = OidcProvider(OidcConfig(issuer="https://id.example.org", client_id="gw"))

    async def documents(force: bool = False):
        if force:
            published[0] = KeySet([old, new])  # the provider rotated in a new key
        return {}, published[0]

    provider._documents = documents

    def token(key, **claims):
        base = {"iss": "https://id.example.org", "sub": "s1", "exp": int(time.time()) + 60, "aud": "account",
                "azp": "gw"}
        return jwt.encode({"alg": "RS256", "kid": key.kid}, {**base, **claims}, key)

    async def check():
        assert (await provider.verify_access_token(token(old)))["sub"] == "s1"
        assert (await provider.verify_access_token(token(new)))["sub"] == "s1"  # fetched on the unknown kid
        good = token(old)
        for bad in (good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), "not.a.jwt",
                    token(old, iss="https://evil.example.org"), token(old, exp=int(time.time()) - 120),
                    token(old, aud="other", azp="other"), token(old, typ="ID"),
                    token(RSAKey.generate_key(2048, parameters={"kid": "stranger"}))):
            with pytest.raises(OidcError):
                await provider.verify_access_token(bad)

    asyncio.run(check())
