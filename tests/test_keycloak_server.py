"""The Keycloak test server is a working OpenID Connect provider: discovery, JWKS, the
authorization-code flow with PKCE (S256) for a confidential client, signed tokens, roles.

This is what the gateway's OIDC sign-in is built and tested against; the realm is
deploy/keycloak/longtail-realm.json (TEST client secret and passwords only).
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import stat
import urllib.parse

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from longtail_testservers import cli as services_cli
from longtail_testservers import jars, keycloak
from tests.real_servers import keycloak_token

# Any port: Keycloak matches loopback redirect URIs whatever their port (RFC 8252 7.3).
REDIRECT_URI = "http://127.0.0.1:18123/auth/oidc/callback"


def discovery(server) -> dict:
    return httpx.get(f"{server.issuer}/.well-known/openid-configuration", timeout=30).raise_for_status().json()


def key_set(server) -> KeySet:
    return KeySet.import_key_set(httpx.get(discovery(server)["jwks_uri"], timeout=30).raise_for_status().json())


def verified_claims(token: str, keys: KeySet, server, audience: str) -> dict:
    """Signature checked against the JWKS, then iss, aud and exp."""
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": server.issuer},
                          aud={"essential": True, "value": audience},
                          exp={"essential": True}).validate(decoded.claims)
    return decoded.claims


def sign_in_with_pkce(server, username: str, password: str) -> tuple[dict, str]:
    """What a browser and the gateway do: the login form, the redirect, the code exchange.
    Returns (token response, nonce)."""
    conf = discovery(server)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    with httpx.Client(timeout=30) as client:
        page = client.get(conf["authorization_endpoint"], params={
            "client_id": server.client_id, "response_type": "code", "redirect_uri": REDIRECT_URI,
            "scope": "openid email profile", "state": state, "nonce": nonce,
            "code_challenge": challenge, "code_challenge_method": "S256"})
        assert page.status_code == 200, page.text[:500]
        action = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', page.text)
        assert action, "no login form on Keycloak's page"
        # Keycloak marks its cookies Secure; browsers send those to http://127.0.0.1 (a secure
        # context), httpx's cookie jar does not, so they are passed on by hand.
        cookies = "; ".join(f"{name}={value}" for name, value in page.cookies.items())
        login = client.post(html.unescape(action.group(1)), headers={"Cookie": cookies},
                            data={"username": username, "password": password, "credentialId": ""})
        assert login.status_code == 302, login.text[:500]
        location = login.headers["location"]
        assert location.startswith(REDIRECT_URI + "?")
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        assert query["state"] == state and query["iss"] == server.issuer
        tokens = client.post(conf["token_endpoint"], auth=(server.client_id, server.client_secret), data={
            "grant_type": "authorization_code", "code": query["code"], "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier})
        assert tokens.status_code == 200, tokens.text
        return tokens.json(), nonce


@pytest.mark.real
def test_discovery_and_jwks(keycloak_server):
    conf = discovery(keycloak_server)
    assert conf["issuer"] == keycloak_server.issuer == f"http://127.0.0.1:{keycloak_server.port}/realms/longtail"
    for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint",
                     "end_session_endpoint"):
        assert conf[endpoint].startswith(keycloak_server.issuer + "/")
    assert "S256" in conf["code_challenge_methods_supported"]
    assert "authorization_code" in conf["grant_types_supported"]
    keys = key_set(keycloak_server)
    assert any(key.alg == "RS256" for key in keys.keys)


@pytest.mark.real
def test_alice_signs_in_with_code_and_pkce_and_the_tokens_verify(keycloak_server):
    alice = keycloak_server.users["alice"]
    tokens, nonce = sign_in_with_pkce(keycloak_server, alice.username, alice.password)
    keys = key_set(keycloak_server)
    access = verified_claims(tokens["access_token"], keys, keycloak_server, keycloak_server.client_id)
    assert access["preferred_username"] == "alice" and access["email"] == alice.email
    assert access["azp"] == keycloak_server.client_id and "admin" not in access["roles"]
    identity = verified_claims(tokens["id_token"], keys, keycloak_server, keycloak_server.client_id)
    assert identity["nonce"] == nonce and identity["sub"] == access["sub"]
    info = httpx.get(discovery(keycloak_server)["userinfo_endpoint"], timeout=30,
                     headers={"Authorization": f"Bearer {tokens['access_token']}"}).raise_for_status().json()
    assert info["sub"] == access["sub"] and info["email_verified"] is True

    # A token whose payload was changed no longer verifies.
    header, _, signature = tokens["access_token"].split(".")
    claims = jwt.decode(tokens["access_token"], keys).claims
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "preferred_username": "carol"}).encode())
    with pytest.raises(BadSignatureError):
        jwt.decode(f"{header}.{forged.rstrip(b'=').decode()}.{signature}", keys)


@pytest.mark.real
def test_pkce_is_required_and_the_secret_checked(keycloak_server):
    conf = discovery(keycloak_server)
    plain = httpx.get(conf["authorization_endpoint"], timeout=30, params={
        "client_id": keycloak_server.client_id, "response_type": "code", "redirect_uri": REDIRECT_URI,
        "scope": "openid"})
    assert plain.status_code == 302
    assert "error=invalid_request" in plain.headers["location"]
    assert "code_challenge_method" in urllib.parse.unquote_plus(plain.headers["location"])
    bob = keycloak_server.users["bob"]
    wrong = httpx.post(conf["token_endpoint"], timeout=30, auth=(keycloak_server.client_id, "not-the-secret"),
                       data={"grant_type": "password", "username": bob.username, "password": bob.password})
    assert wrong.status_code == 401


@pytest.mark.real
def test_admin_role_reaches_the_token_of_carol_only(keycloak_server):
    keys = key_set(keycloak_server)
    roles = {}
    for name in ("alice", "bob", "carol"):
        claims = verified_claims(keycloak_token(keycloak_server, name)["access_token"], keys, keycloak_server,
                                 keycloak_server.client_id)
        roles[name] = "admin" in claims["roles"]
    assert roles == {"alice": False, "bob": False, "carol": True}
    assert keycloak_server.users["carol"].roles == ("admin",)


def test_java21_lookup_reports_what_is_wrong(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(jars.JAVA21_HOME_ENV, str(tmp_path / "no-such-jdk"))
    java, reason = jars.java_at_least(21)
    assert java is None and "no bin/java" in reason
    ok, why = keycloak.keycloak_available()
    assert not ok and jars.JAVA21_HOME_ENV in why
    if jars.java_available()[0]:  # else the missing Java 17 is reported first
        assert services_cli.main(["start", "--dir", str(tmp_path / "servers")]) == 2
        err = capsys.readouterr().err
        assert keycloak.MISSING_JAVA21_PREFIX in err and "--without-keycloak" in err

    old_jdk = tmp_path / "jdk17"
    (old_jdk / "bin").mkdir(parents=True)
    fake = old_jdk / "bin" / "java"
    fake.write_text('#!/bin/sh\necho \'openjdk version "17.0.15" 2025-04-15\' >&2\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(jars.JAVA21_HOME_ENV, str(old_jdk))
    java, reason = jars.java_at_least(21)
    assert java is None and "is Java 17, not 21+" in reason


def test_compose_runs_the_same_keycloak_and_realm():
    import yaml

    service = yaml.safe_load((keycloak.REPO_ROOT / "deploy" / "compose.yaml").read_text())["services"]["keycloak"]
    assert service["image"].endswith(":" + jars.server_versions()["keycloak"])
    assert f"./keycloak/{keycloak.REALM_FILE.name}:/opt/keycloak/data/import/{keycloak.REALM_FILE.name}:ro" \
        in service["volumes"]
    realm = keycloak.load_realm()
    client = next(c for c in realm["clients"] if c["clientId"] == keycloak.CLIENT_ID)
    assert client["publicClient"] is False and client["attributes"]["pkce.code.challenge.method"] == "S256"
    assert sorted(keycloak.realm_users(realm)) == ["alice", "bob", "carol"]
