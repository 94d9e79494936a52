"""Signing in through a real OpenID Connect provider: Keycloak with the test realm
(deploy/keycloak/longtail-realm.json), the platform configured with `auth.oidc.*`.

The pages: authorization code + PKCE, through Keycloak's own login form (driven with
httpx), ending in a gateway session; a first sign-in makes the account, the realm's admin
role makes an admin. The REST API: Keycloak's access tokens, checked against its JWKS;
an ID token or a tampered token is refused."""
from __future__ import annotations

import html
import re
import urllib.parse

import httpx
import pytest

from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config

pytestmark = [pytest.mark.real, pytest.mark.slow]

LOGIN_FORM = re.compile(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', re.S)


@pytest.fixture(scope="module")
def oidc_platform(keycloak_server, tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("oidc")))
    cfg.auth.oidc.issuer = keycloak_server.issuer
    cfg.auth.oidc.client_id = keycloak_server.client_id
    cfg.auth.oidc.client_secret = keycloak_server.client_secret
    cfg.auth.oidc.display_name = "Keycloak"
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=0) as platform:
        yield platform


def access_token(server, username: str) -> str:
    from tests.real_servers import keycloak_token

    return keycloak_token(server, username)["access_token"]


def sign_in_through_keycloak(client: httpx.Client, server, username: str, next_url: str = "/my/videos"):
    """The browser's journey: the gateway -> Keycloak's login form -> back with a code."""
    start = client.get(f"/auth/oidc/start?next={urllib.parse.quote(next_url)}")
    assert start.status_code == 303, start.text
    authorize = urllib.parse.urlsplit(start.headers["location"])
    query = urllib.parse.parse_qs(authorize.query)
    assert authorize.geturl().startswith(f"{server.issuer}/protocol/openid-connect/auth")
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"] and query["nonce"]
    login = client.get(start.headers["location"])
    form = LOGIN_FORM.search(login.text)
    assert form, login.text[:2000]
    user = server.users[username]
    # Keycloak marks its cookies Secure; browsers send those to http://127.0.0.1 (a trustworthy
    # origin), httpx does not on its own.
    keycloak_cookies = "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar if c.path.startswith("/realms/"))
    back = client.post(html.unescape(form.group(1)), headers={"Cookie": keycloak_cookies},
                       data={"username": user.username, "password": user.password, "credentialId": ""})
    assert back.status_code == 302, back.text[:2000]
    assert back.headers["location"].startswith(f"{str(client.base_url).rstrip('/')}/auth/oidc/callback?")
    return client.get(back.headers["location"])


def test_pages_sign_in_with_the_authorization_code_flow(oidc_platform, keycloak_server):
    with httpx.Client(base_url=oidc_platform.gateway_url, timeout=30) as browser:
        page = browser.get("/account/sign-in")
        assert 'id="oidc-sign-in"' in page.text and "Sign in with Keycloak" in page.text
        done = sign_in_through_keycloak(browser, keycloak_server, "alice")
        assert done.status_code == 303 and done.headers["location"] == "/my/videos", done.text
        assert "lt_session" in browser.cookies
        me = browser.get("/v1/me").json()
        assert me["username"] == "alice" and me["admin"] is False and me["authenticated_by"] == "session"
        assert browser.get("/my/videos").status_code == 200

        # The same person again: the same account, no second one.
        browser.cookies.clear()
        assert sign_in_through_keycloak(browser, keycloak_server, "alice").status_code == 303
        assert browser.get("/v1/me").json()["account_id"] == me["account_id"]

    with httpx.Client(base_url=oidc_platform.gateway_url, timeout=30) as browser:
        assert sign_in_through_keycloak(browser, keycloak_server, "carol").status_code == 303
        assert browser.get("/v1/me").json()["admin"] is True  # the realm's admin role

    with httpx.Client(base_url=oidc_platform.gateway_url, timeout=30) as stranger:
        forged = stranger.get("/auth/oidc/callback?code=x&state=y")
        assert forged.status_code == 400 and "lt_session" not in stranger.cookies


def test_api_takes_the_providers_access_tokens(oidc_platform, keycloak_server):
    base = oidc_platform.gateway_url
    alice = {"Authorization": f"Bearer {access_token(keycloak_server, 'alice')}"}
    bob = {"Authorization": f"Bearer {access_token(keycloak_server, 'bob')}"}
    with httpx.Client(base_url=base, timeout=30) as client:
        me = client.get("/v1/me", headers=alice)
        assert me.status_code == 200 and me.json()["username"] == "alice" and me.json()["authenticated_by"] == "oidc"
        created = client.post("/v1/videos", json={"title": "sso", "channel_id": "alice-sso", "size_bytes": 3},
                              headers=alice)
        assert created.status_code == 201, created.text
        patch = {"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
        assert client.patch(created.json()["upload_url"], content=b"bad", headers={**patch, **bob}).status_code == 403

        token = alice["Authorization"].split()[1]
        head, body, signature = token.split(".")
        tampered = f"{head}.{body}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
        from tests.real_servers import keycloak_token

        id_token = keycloak_token(keycloak_server, "alice")["id_token"]
        for bad in (tampered, id_token):
            refused = client.get("/v1/me", headers={"Authorization": f"Bearer {bad}"})
            assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
