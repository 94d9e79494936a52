"""Signing in and out (password or OIDC), open sign-up (when `auth.open_signup` is on),
setting a password from a one-time link, and personal API tokens: the pages, and the
`/v1/tokens` and `/v1/me` API.

A sign-in starts a new session (a new secret; the browser's previous one is ended, so a
session id planted before sign-in is worthless) and a new CSRF nonce. Failed password
sign-ins are counted per username and per client address (FailureWindow); past the limit
the form answers 429 until the window moves on. Every answer to a failed sign-in is the
same, whether or not the account exists.
"""
from __future__ import annotations

import datetime as dt
import secrets
import urllib.parse

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature
from pydantic import BaseModel, ConfigDict, Field

from longtail.accounts.v1 import account_pb2
from longtail.accounts.v1 import account_service_pb2 as apb
from longtail_common.mesh_identity import acting_as
from gateway.api_docs import html_responses
from gateway.auth.cookies import CSRF_FIELD
from gateway.auth.oidc import OidcError
from gateway.auth.principal import GATEWAY, Authenticator
from gateway.dependencies import AccountsStub, Auth, PageViewer, Pages, RequiredPrincipal
from gateway.errors import SERVICE_ERRORS, ApiError, error_responses, grpc_call
from gateway.html_pages import Viewer, message_body, set_password_body, sign_in_body, sign_up_body, tokens_body

OIDC_PENDING_S = 600  # a sign-in at the provider must come back within this long
MAX_FORM_FIELD = 256

router = APIRouter()

REDIRECT = {303: {"description": "Done: on to `Location`.", "headers": {"Location": {"schema": {"type": "string"}}}}}
SIGNED_IN_PAGE = {**html_responses(200), 303: {"description": "Not signed in: on to the sign-in page.",
                                               "headers": {"Location": {"schema": {"type": "string"}}}},
                  **error_responses(401, *SERVICE_ERRORS)}
ACCOUNT_API = error_responses(401, 403, *SERVICE_ERRORS)


def safe_next(value: object) -> str:
    """Where to go after signing in: a path on this site only (no open redirect)."""
    path = value if isinstance(value, str) else ""
    if not path.startswith("/") or path.startswith(("//", "/\\")) or any(c in path for c in "\r\n\t"):
        return "/"
    return path


def sign_in_redirect(request: Request) -> RedirectResponse:
    """For a page that needs an account: the sign-in page, coming back here after."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/account/sign-in?{urllib.parse.urlencode({'next': here})}", status_code=303)


def field(form, name: str) -> str:
    value = form.get(name, "")
    return value[:MAX_FORM_FIELD] if isinstance(value, str) else ""


def fresh_viewer(request: Request, username: str = "") -> Viewer:
    token, nonce = request.app.state.auth.csrf.token_for(request)
    return Viewer(username, token, nonce)


async def open_session(request: Request, auth: Authenticator, account_id: str, next_url: str) -> Response:
    """Signs the browser in: a new session (ending the one it had) and a new CSRF nonce."""
    cookies = auth.csrf.cookies
    secret = await auth.create_session(account_id)
    await auth.end_session(request.cookies.get(cookies.session, ""))
    response = RedirectResponse(next_url, status_code=303)
    cookies.set(response, cookies.session, secret, max_age=cookies.session_ttl_s)
    cookies.set(response, cookies.csrf, secrets.token_urlsafe(24), max_age=None)
    return response


# -- password sign-in and sign-out ---------------------------------------------------------

def open_signup(request: Request) -> bool:
    return request.app.state.config.auth.open_signup


@router.get("/account/sign-in", responses={**html_responses(200), **error_responses(401, *SERVICE_ERRORS)})
async def sign_in_page(request: Request, pages: Pages, viewer: PageViewer, auth: Auth, next: str = "/"):
    oidc_name = auth.oidc.cfg.display_name if auth.oidc else ""
    body = sign_in_body(viewer, safe_next(next), oidc_name=oidc_name, sign_up=open_signup(request))
    return pages.page("Sign in", body, viewer=viewer)


@router.post("/account/sign-in",
             responses={**REDIRECT, **html_responses(401, 403, 429), **error_responses(*SERVICE_ERRORS)})
async def sign_in(request: Request, pages: Pages, auth: Auth):
    form = await request.form()
    username, next_url = field(form, "username").strip().lower(), safe_next(form.get("next"))
    viewer = fresh_viewer(request)
    oidc_name = auth.oidc.cfg.display_name if auth.oidc else ""

    def again(message: str, status: int, headers: dict | None = None) -> Response:
        response = pages.page("Sign in", sign_in_body(viewer, next_url, message, username, oidc_name,
                                                      open_signup(request)), status=status, viewer=viewer)
        response.headers.update(headers or {})
        return response

    if not auth.csrf.valid(request, form.get(CSRF_FIELD)):
        return again("This form has expired. Please sign in again.", 403)
    failures = request.app.state.sign_in_failures
    address = request.client.host if request.client else "unknown"
    keys = (f"user:{username}", f"address:{address}")
    wait = failures.retry_after(*keys)
    if wait:
        return again(f"Too many failed sign-ins. Try again in {wait} seconds.", 429, {"Retry-After": str(wait)})
    principal = await auth.verify_password(username, field(form, "password"))
    if principal is None:
        failures.fail(*keys)
        return again("Wrong username or password.", 401)
    failures.forget(keys[0])
    return await open_session(request, auth, principal.account_id, next_url)


@router.post("/account/sign-out", status_code=303, response_class=RedirectResponse,
             responses={**REDIRECT, **error_responses(403, *SERVICE_ERRORS)})
async def sign_out(request: Request, auth: Auth):
    cookies = auth.csrf.cookies
    if not await auth.csrf.check(request):
        raise ApiError(403, "CSRF_FAILED", "this form has expired: reload the page")
    await auth.end_session(request.cookies.get(cookies.session, ""))
    response = RedirectResponse("/", status_code=303)
    cookies.clear(response, cookies.session)
    cookies.clear(response, cookies.csrf)
    return response


# -- open sign-up (auth.open_signup) ---------------------------------------------------------

def no_such_page(pages, viewer: Viewer) -> Response:
    """Open sign-up is off: the sign-up routes do not exist (404), and no page links to them."""
    return pages.page("Not found", message_body("Page not found", "There is no such page here."), status=404,
                      viewer=viewer)


@router.get("/account/sign-up", responses={**html_responses(200, 404), **error_responses(401, *SERVICE_ERRORS)})
async def sign_up_page(request: Request, pages: Pages, viewer: PageViewer, next: str = "/"):
    if not open_signup(request):
        return no_such_page(pages, viewer)
    return pages.page("Sign up", sign_up_body(viewer, safe_next(next)), viewer=viewer)


def sign_up_refusal(err: ApiError, username: str) -> str:
    if err.status == 409:
        return f"The username “{username}” is taken: please choose another."
    return err.message[:1].upper() + err.message[1:]


@router.post("/account/sign-up", status_code=303, response_class=RedirectResponse,
             responses={**REDIRECT, **html_responses(400, 403, 404, 409, 429), **error_responses(*SERVICE_ERRORS)})
async def sign_up(request: Request, pages: Pages, auth: Auth, accounts: AccountsStub):
    """Makes an account (Argon2id, through AccountService) and signs the browser in. Failed
    attempts count against the client address as failed sign-ins do (FailureWindow)."""
    viewer = fresh_viewer(request)
    if not open_signup(request):
        return no_such_page(pages, viewer)
    form = await request.form()
    username, email = field(form, "username").strip().lower(), field(form, "email").strip()
    next_url = safe_next(form.get("next"))

    def again(message: str, status: int, headers: dict | None = None) -> Response:
        response = pages.page("Sign up", sign_up_body(viewer, next_url, message, username, email), status=status,
                              viewer=viewer)
        response.headers.update(headers or {})
        return response

    if not auth.csrf.valid(request, form.get(CSRF_FIELD)):
        return again("This form has expired. Please try again.", 403)
    failures = request.app.state.sign_in_failures
    key = f"sign-up:{request.client.host if request.client else 'unknown'}"
    wait = failures.retry_after(key)
    if wait:
        return again(f"Too many failed attempts. Try again in {wait} seconds.", 429, {"Retry-After": str(wait)})
    try:
        if not email:
            raise ApiError(400, "INVALID_ARGUMENT", "an email address is needed")
        with acting_as(GATEWAY):
            created = await grpc_call(accounts.CreateAccount(apb.CreateAccountRequest(
                account=account_pb2.Account(username=username, email=email), password=field(form, "password")),
                timeout=15))
    except ApiError as err:
        if err.status not in (400, 409):
            raise
        failures.fail(key)
        return again(sign_up_refusal(err, username), err.status)
    return await open_session(request, auth, created.id, next_url)


# -- OpenID Connect ---------------------------------------------------------------------------

def oidc_callback_url(request: Request) -> str:
    public = request.app.state.config.platform.public_url.rstrip("/")
    return f"{public}/auth/oidc/callback" if public else str(request.url_for("oidc_callback"))


@router.get("/auth/oidc/start", status_code=303, responses={**REDIRECT, **error_responses(404, 503)})
async def oidc_start(request: Request, auth: Auth, next: str = "/"):
    if auth.oidc is None:
        raise ApiError(404, "NOT_FOUND", "no OpenID Connect provider is configured")
    try:
        url, pending = await auth.oidc.start(oidc_callback_url(request))
    except OidcError as exc:
        raise ApiError(503, "UNAVAILABLE", str(exc)) from None
    response = RedirectResponse(url, status_code=303)
    cookies = auth.csrf.cookies
    cookies.set(response, cookies.oidc, auth.pending.dumps({**pending, "next": safe_next(next)}),
                max_age=OIDC_PENDING_S)
    return response


@router.get("/auth/oidc/callback", name="oidc_callback",
            responses={**REDIRECT, **html_responses(400, 401, 403, 404), **error_responses(*SERVICE_ERRORS)})
async def oidc_callback(request: Request, auth: Auth, pages: Pages, code: str = "", state: str = "",
                        error: str = ""):
    viewer = fresh_viewer(request)

    def refused(message: str, status: int) -> Response:
        return pages.page("Sign in", message_body("Not signed in", message, ("/account/sign-in", "Sign in")),
                          status=status, viewer=viewer)

    if auth.oidc is None:
        return refused("No OpenID Connect provider is configured.", 404)
    try:
        pending = auth.pending.loads(request.cookies.get(auth.csrf.cookies.oidc, ""), max_age=OIDC_PENDING_S)
    except BadSignature:
        return refused("This sign-in was not started in this browser, or took too long. Please try again.", 400)
    if error:
        return refused("The sign-in provider did not sign you in.", 401)
    try:
        claims = await auth.oidc.finish(oidc_callback_url(request), code, state, pending)
    except OidcError as exc:
        return refused(str(exc), 401)
    principal = await auth.sign_in_external(claims, "oidc")
    if principal is None:
        return refused("This account is disabled.", 403)
    response = await open_session(request, auth, principal.account_id, safe_next(pending.get("next")))
    auth.csrf.cookies.clear(response, auth.csrf.cookies.oidc)
    return response


# -- password links ---------------------------------------------------------------------------

@router.get("/account/set-password", responses={**html_responses(200), **error_responses(401, *SERVICE_ERRORS)})
async def set_password_page(pages: Pages, viewer: PageViewer, token: str = ""):
    return pages.page("Choose a password", set_password_body(viewer, token[:MAX_FORM_FIELD]), viewer=viewer)


@router.post("/account/set-password",
             responses={**html_responses(200, 400, 403, 404), **error_responses(*SERVICE_ERRORS)})
async def set_password(request: Request, pages: Pages, accounts: AccountsStub, auth: Auth):
    form = await request.form()
    link_token = field(form, "token")
    viewer = fresh_viewer(request)
    if not auth.csrf.valid(request, form.get(CSRF_FIELD)):
        return pages.page("Choose a password", set_password_body(viewer, link_token, "This form has expired: "
                                                                  "please try again."), status=403, viewer=viewer)
    try:
        await grpc_call(accounts.SetPassword(apb.SetPasswordRequest(link_token=link_token,
                                                                    password=field(form, "password")), timeout=15))
    except ApiError as err:
        if err.status == 400:
            return pages.page("Choose a password", set_password_body(viewer, link_token, err.message), status=400,
                              viewer=viewer)
        if err.status == 404:
            return pages.page("Choose a password", message_body(
                "Link not valid", "This link is unknown, already used or expired. Ask for a new one."), status=404,
                viewer=viewer)
        raise
    return pages.page("Password set", message_body("Password set", "You can sign in now.",
                                                   ("/account/sign-in", "Sign in")), viewer=viewer)


# -- personal API tokens -----------------------------------------------------------------------

class CreateTokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    display_name: str = Field(default="", max_length=64)
    expires_days: int | None = Field(default=None, ge=1, le=3650)


def token_json(token: account_pb2.ApiToken) -> dict:
    return {"id": token.id, "display_name": token.display_name,
            "create_time": token.create_time.ToJsonString(),
            "expire_time": token.expire_time.ToJsonString() if token.HasField("expire_time") else None}


async def create_token(accounts, principal, body: CreateTokenBody) -> apb.CreateTokenResponse:
    request = apb.CreateTokenRequest(account_id=principal.account_id, display_name=body.display_name)
    if body.expires_days:
        request.expire_time.FromDatetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=body.expires_days))
    return await grpc_call(accounts.CreateToken(request, timeout=15))


async def list_tokens(accounts, principal) -> list[account_pb2.ApiToken]:
    listed = await grpc_call(accounts.ListTokens(apb.ListTokensRequest(account_id=principal.account_id), timeout=15))
    return list(listed.tokens)


@router.get("/v1/me", responses=error_responses(401, *SERVICE_ERRORS))
async def me(principal: RequiredPrincipal):
    return {"account_id": principal.account_id, "username": principal.username, "admin": principal.admin,
            "authenticated_by": principal.method}


@router.get("/v1/tokens", responses=ACCOUNT_API)
async def list_tokens_api(principal: RequiredPrincipal, accounts: AccountsStub):
    return {"tokens": [token_json(t) for t in await list_tokens(accounts, principal)]}


@router.post("/v1/tokens", status_code=201, responses={**ACCOUNT_API, **error_responses(400, 409, 422)})
async def create_token_api(body: CreateTokenBody, principal: RequiredPrincipal, accounts: AccountsStub):
    """A new token for the caller; `token` (the secret) is in this answer only."""
    created = await create_token(accounts, principal, body)
    return {**token_json(created.token), "token": created.secret}


@router.delete("/v1/tokens/{token_id}", status_code=204, responses={**ACCOUNT_API, **error_responses(404)})
async def revoke_token_api(token_id: str, principal: RequiredPrincipal, accounts: AccountsStub):
    await grpc_call(accounts.RevokeToken(apb.RevokeTokenRequest(account_id=principal.account_id, token_id=token_id),
                                         timeout=15))
    return Response(status_code=204)


@router.get("/account/tokens", responses=SIGNED_IN_PAGE)
async def tokens_page(request: Request, pages: Pages, viewer: PageViewer, accounts: AccountsStub, auth: Auth):
    principal = await auth.authenticate(request)
    if principal is None:
        return sign_in_redirect(request)
    return pages.page("API tokens", tokens_body(viewer, await list_tokens(accounts, principal)), viewer=viewer)


@router.post("/account/tokens", status_code=201,
             responses={**html_responses(201), **ACCOUNT_API, **error_responses(400, 409)})
async def create_token_page(request: Request, pages: Pages, viewer: PageViewer, accounts: AccountsStub,
                            principal: RequiredPrincipal):
    form = await request.form()
    try:
        days = field(form, "expires_days")
        body = CreateTokenBody(display_name=field(form, "display_name"), expires_days=int(days) if days else None)
    except ValueError as exc:
        raise ApiError(400, "INVALID_ARGUMENT", f"bad token form: {exc}") from None
    created = await create_token(accounts, principal, body)
    body_html = tokens_body(viewer, await list_tokens(accounts, principal), new_secret=created.secret)
    return pages.page("API tokens", body_html, status=201, viewer=viewer)


@router.post("/account/tokens/{token_id}/revoke", status_code=303, response_class=RedirectResponse,
             responses={**REDIRECT, **ACCOUNT_API, **error_responses(404)})
async def revoke_token_page(token_id: str, principal: RequiredPrincipal, accounts: AccountsStub):
    await grpc_call(accounts.RevokeToken(apb.RevokeTokenRequest(account_id=principal.account_id, token_id=token_id),
                                         timeout=15))
    return RedirectResponse("/account/tokens", status_code=303)
