"""Sign-in through an OpenID Connect provider (auth.oidc): the authorization-code flow with
PKCE for the pages (authlib's httpx OAuth 2 client), and the provider's JWT access tokens
for the REST API, both checked against the provider's JWKS (joserfc).

What the provider says comes from its discovery document, ISSUER/.well-known/openid-configuration,
kept with its signing keys for `jwks_cache_s`; a token signed with a key id not among them
fetches the keys again (at most every MIN_REFRESH_S), so a key rotation needs no restart.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from longtail_common.config import OidcConfig

log = logging.getLogger("gateway.oidc")

# Asymmetric algorithms only: a provider's tokens are checked with its public keys.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
MIN_REFRESH_S = 10.0
CLOCK_LEEWAY_S = 30
HTTP_TIMEOUT_S = 10.0


class OidcError(Exception):
    """A sign-in or token the provider's rules refuse (the message is safe to show)."""


class OidcProvider:
    def __init__(self, cfg: OidcConfig, http: httpx.AsyncClient | None = None):
        if "openid" not in cfg.scopes:
            raise ValueError("auth.oidc.scopes must include openid")
        if not cfg.client_id:
            raise ValueError("auth.oidc.client_id is required with auth.oidc.issuer")
        self.cfg = cfg
        self.issuer = cfg.issuer.rstrip("/")
        self.audiences = list(cfg.audiences or [cfg.client_id])
        self._http = http or httpx.AsyncClient(timeout=HTTP_TIMEOUT_S)
        self._metadata: dict | None = None
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    # -- the provider's documents ----------------------------------------------------------

    async def _get_json(self, url: str) -> dict:
        response = await self._http.get(url)
        response.raise_for_status()
        return response.json()

    async def _refresh(self) -> None:
        metadata = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
        if metadata.get("issuer", "").rstrip("/") != self.issuer:
            raise OidcError(f"the provider's discovery document names issuer {metadata.get('issuer')!r}")
        self._keys = KeySet.import_key_set(await self._get_json(metadata["jwks_uri"]))
        self._metadata, self._fetched_at = metadata, time.monotonic()

    async def _documents(self, force: bool = False) -> tuple[dict, KeySet]:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if self._metadata is None or age > self.cfg.jwks_cache_s or (force and age > MIN_REFRESH_S):
                try:
                    await self._refresh()
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    log.warning("cannot read the OIDC provider %s: %s", self.issuer, exc)
                    if self._metadata is None:
                        raise OidcError("the sign-in provider cannot be reached") from None
            return self._metadata, self._keys

    async def _decode(self, token: str) -> jwt.Token:
        _metadata, keys = await self._documents()
        for last_try in (False, True):
            try:
                return jwt.decode(token, keys, algorithms=ALGORITHMS)
            except InvalidKeyIdError:  # signed with a key we have not seen: the provider may have rotated
                if last_try:
                    break
                _metadata, keys = await self._documents(force=True)
            except (JoseError, ValueError) as exc:
                raise OidcError(f"token not signed by the provider ({type(exc).__name__})") from None
        raise OidcError("token signed with a key the provider does not publish")

    @staticmethod
    def _validate(claims: dict, **options) -> dict:
        try:
            jwt.JWTClaimsRegistry(leeway=CLOCK_LEEWAY_S, **options).validate(claims)
        except JoseError as exc:
            raise OidcError(f"token refused: {exc.description or type(exc).__name__}") from None
        return claims

    # -- the pages: authorization code + PKCE ------------------------------------------------

    def _client(self, redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(client_id=self.cfg.client_id, client_secret=self.cfg.client_secret or None,
                                 scope=" ".join(self.cfg.scopes), redirect_uri=redirect_uri,
                                 code_challenge_method="S256", timeout=HTTP_TIMEOUT_S)

    async def start(self, redirect_uri: str) -> tuple[str, dict]:
        """(the provider's authorization URL, what the callback must get back: state, PKCE
        verifier and nonce, which the caller keeps in a signed cookie)."""
        metadata, _keys = await self._documents()
        pending = {"state": secrets.token_urlsafe(24), "verifier": secrets.token_urlsafe(48),
                   "nonce": secrets.token_urlsafe(24)}
        async with self._client(redirect_uri) as client:
            url, _state = client.create_authorization_url(metadata["authorization_endpoint"], state=pending["state"],
                                                          code_verifier=pending["verifier"], nonce=pending["nonce"])
        return url, pending

    async def finish(self, redirect_uri: str, code: str, state: str, pending: dict) -> dict:
        """The ID token's claims once the code is exchanged and the token checked."""
        if not code or not secrets.compare_digest(state or "", pending.get("state", "")):
            raise OidcError("the sign-in came back with a state this browser did not start")
        metadata, _keys = await self._documents()
        async with self._client(redirect_uri) as client:
            try:
                token = await client.fetch_token(metadata["token_endpoint"], code=code,
                                                 code_verifier=pending["verifier"])
            except Exception as exc:  # noqa: BLE001 - authlib raises its own and httpx's errors
                log.info("OIDC code exchange failed: %s", exc)
                raise OidcError("the sign-in provider refused the sign-in") from None
        if "id_token" not in token:
            raise OidcError("the sign-in provider sent no ID token")
        decoded = await self._decode(token["id_token"])
        return self._validate(decoded.claims, iss={"essential": True, "value": self.issuer},
                              aud={"essential": True, "value": self.cfg.client_id}, sub={"essential": True},
                              exp={"essential": True}, nonce={"essential": True, "value": pending["nonce"]})

    # -- the REST API: the provider's access tokens ---------------------------------------------

    async def verify_access_token(self, token: str) -> dict:
        """The claims of a JWT access token the provider issued for us; OidcError otherwise."""
        decoded = await self._decode(token)
        claims = self._validate(decoded.claims, iss={"essential": True, "value": self.issuer},
                                sub={"essential": True}, exp={"essential": True})
        if claims.get("typ") in ("ID", "Refresh") or "nonce" in claims:
            raise OidcError("token refused: not an access token")
        audiences = claims.get("aud") or []
        audiences = [audiences] if isinstance(audiences, str) else list(audiences)
        if not set(self.audiences) & {*audiences, claims.get("azp")}:
            raise OidcError("token refused: issued for another client")
        return claims

    def is_admin(self, claims: dict) -> bool:
        """Whether the provider names this person an admin (auth.oidc.admin_role)."""
        roles = claims.get(self.cfg.roles_claim) or []
        return isinstance(roles, list) and self.cfg.admin_role in roles

    async def close(self) -> None:
        await self._http.aclose()
