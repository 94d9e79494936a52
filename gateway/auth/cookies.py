"""The gateway's cookies and the CSRF tokens bound to them.

Every cookie is HttpOnly and SameSite=Lax, and Secure (with the `__Host-` prefix, so no
subdomain can set or shadow it) when the site is served over https (platform.public_url).
The session cookie holds only the session's random secret; the session itself lives in
the account store, so every gateway process sees it and sign-out ends it everywhere.

CSRF (synchronizer token, OWASP's signed double-submit variant): a random nonce cookie,
and forms carry HMAC(key, nonce | session secret), so a token taken from another browser
or from before sign-in is worthless here. Form posts carry it as the `csrf_token` field,
scripts as the `X-CSRF-Token` header.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request
from starlette.responses import Response

from longtail_common.config import Config

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class CookiePolicy:
    secure: bool
    session_ttl_s: int

    @classmethod
    def from_config(cls, cfg: Config) -> "CookiePolicy":
        return cls(secure=cfg.platform.public_url.lower().startswith("https://"), session_ttl_s=cfg.auth.session_ttl_s)

    def name(self, base: str) -> str:
        return f"__Host-{base}" if self.secure else base

    @property
    def session(self) -> str:
        return self.name("lt_session")

    @property
    def csrf(self) -> str:
        return self.name("lt_csrf")

    @property
    def oidc(self) -> str:
        return self.name("lt_oidc")

    def set(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", secure=self.secure, httponly=True,
                            samesite="lax")

    def clear(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", secure=self.secure, httponly=True, samesite="lax")


class Csrf:
    """Issues and checks CSRF tokens (see the module docstring)."""

    def __init__(self, key: bytes, cookies: CookiePolicy):
        self._key = hmac.new(key, b"longtail.csrf", hashlib.sha256).digest()  # its own key, derived
        self.cookies = cookies

    def _token(self, nonce: str, session: str) -> str:
        return hmac.new(self._key, f"{nonce}|{session}".encode(), hashlib.sha256).hexdigest()

    def token_for(self, request: Request, session: str | None = None, nonce: str | None = None) -> tuple[str, str | None]:
        """(the token for this browser's forms, a new nonce to set as cookie or None).
        `session`/`nonce` override the request's cookies (right after sign-in)."""
        new_nonce = None
        nonce = nonce or request.cookies.get(self.cookies.csrf)
        if not nonce:
            nonce = new_nonce = secrets.token_urlsafe(24)
        if session is None:
            session = request.cookies.get(self.cookies.session, "")
        return self._token(nonce, session), new_nonce

    def valid(self, request: Request, token: str | None) -> bool:
        nonce = request.cookies.get(self.cookies.csrf)
        if not token or not nonce:
            return False
        expected = self._token(nonce, request.cookies.get(self.cookies.session, ""))
        return hmac.compare_digest(expected, token)

    async def sent_token(self, request: Request) -> str | None:
        """The token a request carries: the header, else a form's field (the form is parsed
        once and kept by Starlette for the route)."""
        token = request.headers.get(CSRF_HEADER)
        if token is None and request.headers.get("content-type", "").startswith(FORM_TYPES):
            value = (await request.form()).get(CSRF_FIELD)
            token = value if isinstance(value, str) else None
        return token

    async def check(self, request: Request) -> bool:
        return self.valid(request, await self.sent_token(request))
