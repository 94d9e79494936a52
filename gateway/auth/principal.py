"""Who a request comes from: `Authorization: Bearer` (a personal API token, or the OIDC
provider's access token) or the session cookie, resolved through AccountService.

The gateway makes its own auth calls (resolving a token or session, checking a password)
as itself (`GATEWAY`, a service principal); once a request's principal is known, the
calls made for it carry that account (mesh_identity.set_acting_as), and the services
check what it owns.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

from cachetools import TTLCache
from fastapi import Request
from itsdangerous import URLSafeTimedSerializer

from longtail.accounts.v1 import account_pb2
from longtail.accounts.v1 import account_service_pb2 as apb
from longtail.accounts.v1 import account_service_pb2_grpc as apb_grpc
from longtail_common.mesh_identity import MeshPrincipal, acting_as
from gateway.auth.cookies import SAFE_METHODS, Csrf
from gateway.auth.oidc import OidcError, OidcProvider
from gateway.errors import ApiError, grpc_call

GATEWAY = MeshPrincipal(service="longtail.gateway")
API_TOKEN_PREFIX = "lt_"
# An OIDC subject's account, once looked up, for this long: not one RPC per API request.
OIDC_ACCOUNT_CACHE_S = 60
_UNKNOWN = object()


@dataclass(frozen=True)
class Principal:
    """A signed-in account, and how it signed in: "session", "token" or "oidc"."""

    account_id: str
    username: str
    admin: bool
    method: str
    token_id: str = ""

    @property
    def mesh(self) -> MeshPrincipal:
        return MeshPrincipal(GATEWAY.service, self.account_id, self.username, self.admin)

    @classmethod
    def of(cls, message: account_pb2.Principal, method: str) -> "Principal":
        return cls(message.account_id, message.username, message.admin, method, message.token_id)


def invalid_token(message: str) -> ApiError:
    """RFC 6750: a bad bearer token is 401 with a challenge that says so."""
    return ApiError(401, "UNAUTHENTICATED", message,
                    headers={"WWW-Authenticate": f'Bearer realm="longtail", error="invalid_token", '
                                                 f'error_description="{message}"'})


def sign_in_required() -> ApiError:
    return ApiError(401, "UNAUTHENTICATED", "sign in, or send Authorization: Bearer <personal API token>",
                    headers={"WWW-Authenticate": 'Bearer realm="longtail"'})


class Authenticator:
    def __init__(self, accounts: Callable[[], apb_grpc.AccountServiceStub], secret: bytes, csrf: Csrf,
                 oidc: OidcProvider | None):
        self._accounts = accounts
        self.csrf = csrf
        self.oidc = oidc
        # What an OIDC sign-in must get back (state, PKCE verifier, nonce), kept in a signed cookie.
        self.pending = URLSafeTimedSerializer(secret, salt="longtail.oidc-pending",
                                              signer_kwargs={"digest_method": hashlib.sha256})
        self._oidc_accounts: TTLCache = TTLCache(maxsize=10_000, ttl=OIDC_ACCOUNT_CACHE_S)

    async def authenticate(self, request: Request) -> Principal | None:
        """The request's principal (None: anonymous); ApiError for a bad bearer token, or a
        state-changing request on a session without its CSRF token. Once per request."""
        known = getattr(request.state, "principal", _UNKNOWN)
        if known is not _UNKNOWN:
            return known
        header = request.headers.get("authorization")
        if header is not None:
            principal = await self._bearer(header)
        else:
            principal = await self._session(request.cookies.get(self.csrf.cookies.session, ""))
            if principal is not None and request.method not in SAFE_METHODS and not await self.csrf.check(request):
                raise ApiError(403, "CSRF_FAILED", "this form or request is missing its CSRF token: reload the page")
        request.state.principal = principal
        return principal

    async def _bearer(self, header: str) -> Principal:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise invalid_token("use Authorization: Bearer <token>")
        if token.startswith(API_TOKEN_PREFIX) or self.oidc is None:
            return await self._api_token(token)
        return await self._oidc_token(token)

    async def _as_gateway(self, method: str, request) -> account_pb2.Principal | None:
        """An AccountService call the gateway makes as itself; None for UNAUTHENTICATED."""
        try:
            with acting_as(GATEWAY):
                return await grpc_call(getattr(self._accounts(), method)(request, timeout=15))
        except ApiError as err:
            if err.code == "UNAUTHENTICATED":
                return None
            raise

    async def _api_token(self, token: str) -> Principal:
        message = await self._as_gateway("ResolveToken", apb.ResolveTokenRequest(token=token))
        if message is None:
            raise invalid_token("the token is invalid, expired or revoked")
        return Principal.of(message, "token")

    async def _oidc_token(self, token: str) -> Principal:
        try:
            claims = await self.oidc.verify_access_token(token)
        except OidcError as exc:
            raise invalid_token(str(exc)) from None
        key = (claims["sub"], claims.get("preferred_username", ""))
        principal = self._oidc_accounts.get(key)
        if principal is None:
            principal = self._oidc_accounts[key] = await self.sign_in_external(claims, "oidc")
            if principal is None:
                raise invalid_token("the account is disabled")
        return principal

    async def sign_in_external(self, claims: dict, method: str) -> Principal | None:
        """The account of an OIDC identity (made at its first sign-in); None if disabled."""
        request = apb.SignInExternalRequest(issuer=self.oidc.issuer, subject=claims["sub"],
                                            preferred_username=claims.get("preferred_username", ""),
                                            email=claims.get("email", "") if claims.get("email_verified") else "",
                                            admin=self.oidc.is_admin(claims))
        if not self.oidc.cfg.admin_role:
            request.ClearField("admin")  # the provider does not decide who is an admin here
        message = await self._as_gateway("SignInExternal", request)
        return Principal.of(message, method) if message is not None else None

    async def _session(self, secret: str) -> Principal | None:
        if not secret:
            return None
        message = await self._as_gateway("ResolveSession", apb.ResolveSessionRequest(secret=secret))
        # None: the session ended or expired, and the visitor is anonymous again.
        return Principal.of(message, "session") if message is not None else None

    async def create_session(self, account_id: str) -> str:
        """A new session's secret (for the cookie)."""
        with acting_as(GATEWAY):
            created = await grpc_call(self._accounts().CreateSession(
                apb.CreateSessionRequest(account_id=account_id), timeout=15))
        return created.secret

    async def end_session(self, secret: str) -> None:
        if secret:
            with acting_as(GATEWAY):
                await grpc_call(self._accounts().DeleteSession(apb.DeleteSessionRequest(secret=secret), timeout=15))

    async def verify_password(self, username: str, password: str) -> Principal | None:
        message = await self._as_gateway("VerifyPassword",
                                         apb.VerifyPasswordRequest(username=username, password=password))
        return Principal.of(message, "session") if message is not None else None
