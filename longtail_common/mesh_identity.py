"""Who is calling, across the gRPC mesh: the signed principal every call carries, the
server interceptor that checks it against the RPC's declared access, and the client
interceptors that attach it.

The gateway authenticates people (sessions, API tokens, OIDC); a service trusts only what
arrives signed with the mesh key, which clients outside the mesh do not have. The token
(gRPC metadata `x-longtail-principal`, named by longtail/auth/v1/access.proto) says which
process signed it and, when it acts for a signed-in account, which account; it expires
after `auth.mesh_token_ttl_s`. Each RPC declares who may call it with the `access` method
option; `MeshIdentityInterceptor` refuses a call that does not qualify before the servicer
runs, and puts the verified principal where the servicer finds it (`caller()`), so the
servicer can check that the account owns what the call changes (`may_act_for`).

Outgoing calls carry, in this order: the principal set for the current context (the
gateway, per request: `acting_as`), else the process's own service principal (set by
`run_service`), else nothing.
"""
from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import hashlib
import logging
import os
import pathlib
import secrets
import tempfile
import time
from dataclasses import dataclass

import grpc
from cachetools import TTLCache
from google.protobuf import descriptor_pool
from itsdangerous import BadSignature, URLSafeSerializer

from longtail.auth.v1 import access_pb2
from longtail_common.config import Config

log = logging.getLogger(__name__)

PRINCIPAL_METADATA_KEY: str = access_pb2.DESCRIPTOR.GetOptions().Extensions[access_pb2.principal_metadata_key]
SALT = "longtail.mesh"
SECRET_FILE = "mesh.secret"
MIN_SECRET_CHARS = 32
# Clocks of two machines disagree a little: a token from a few seconds "in the future" or
# just past its expiry still passes.
CLOCK_LEEWAY_S = 30
# Calls that never need a principal, whatever their service declares.
EXEMPT_PREFIXES = ("/grpc.health.", "/grpc.reflection.")
Access = access_pb2.Access


@dataclass(frozen=True)
class MeshPrincipal:
    """A verified caller: the process that signed the call, and the account it acts for
    ("" when a service acts for itself)."""

    service: str
    account_id: str = ""
    username: str = ""
    admin: bool = False

    @property
    def is_account(self) -> bool:
        return bool(self.account_id)

    @property
    def is_service(self) -> bool:
        return bool(self.service) and not self.account_id


# What the interceptor records for a call that came in without a principal (PUBLIC RPCs).
ANONYMOUS = MeshPrincipal(service="")


class PrincipalRefused(Exception):
    """A principal token that is malformed, badly signed or expired."""


class MeshSigner:
    """Signs and checks principal tokens: itsdangerous URL-safe JSON with HMAC-SHA256."""

    def __init__(self, secret: bytes, ttl_s: int):
        if ttl_s <= 0:
            raise ValueError("auth.mesh_token_ttl_s must be positive")
        self.ttl_s = ttl_s
        self._serializer = URLSafeSerializer(secret, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256})
        # A process signs the same few principals over and over: reuse a token for a quarter
        # of its life, so each is still valid for most of it when it is sent.
        self._signed: TTLCache = TTLCache(maxsize=10_000, ttl=max(1, ttl_s // 4))

    def sign(self, principal: MeshPrincipal) -> str:
        token = self._signed.get(principal)
        if token is None:
            claims = {"s": principal.service, "e": int(time.time()) + self.ttl_s}
            if principal.account_id:
                claims.update(a=principal.account_id, u=principal.username, adm=principal.admin)
            token = self._signed[principal] = self._serializer.dumps(claims)
        return token

    def verify(self, token: str) -> MeshPrincipal:
        try:
            claims = self._serializer.loads(token)
        except BadSignature:
            raise PrincipalRefused("bad signature") from None
        if not isinstance(claims, dict) or not isinstance(claims.get("e"), int) or not claims.get("s"):
            raise PrincipalRefused("malformed principal")
        now = time.time()
        if claims["e"] + CLOCK_LEEWAY_S < now or claims["e"] - self.ttl_s - CLOCK_LEEWAY_S > now:
            raise PrincipalRefused("expired principal")
        try:
            return MeshPrincipal(str(claims["s"]), str(claims.get("a", "")), str(claims.get("u", "")),
                                 bool(claims.get("adm", False)))
        except (TypeError, ValueError):
            raise PrincipalRefused("malformed principal") from None


def read_or_create_secret(path: pathlib.Path) -> bytes:
    """The secret in `path`, made once (0600) if absent. Made under a temporary name and
    hard-linked into place, so processes starting together all end up with the one secret
    that won the link."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")  # mode 0600
        try:
            os.write(fd, secrets.token_urlsafe(48).encode())
            os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: use that one
        finally:
            os.unlink(tmp)
    secret = path.read_bytes().strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(f"{path} holds no usable secret (at least {MIN_SECRET_CHARS} characters)")
    return secret


def mesh_secret(cfg: Config) -> bytes:
    """auth.mesh_secret, else the file auth.mesh_secret_file, else DATA_DIR/mesh.secret."""
    if cfg.auth.mesh_secret:
        if len(cfg.auth.mesh_secret) < MIN_SECRET_CHARS:
            raise ValueError(f"auth.mesh_secret must be at least {MIN_SECRET_CHARS} characters")
        return cfg.auth.mesh_secret.encode()
    path = pathlib.Path(cfg.auth.mesh_secret_file) if cfg.auth.mesh_secret_file else cfg.data_path / SECRET_FILE
    return read_or_create_secret(path)


def make_mesh_signer(cfg: Config) -> MeshSigner:
    return MeshSigner(mesh_secret(cfg), cfg.auth.mesh_token_ttl_s)


# -- the server side ----------------------------------------------------------------------

_caller: contextvars.ContextVar[MeshPrincipal | None] = contextvars.ContextVar("longtail_mesh_caller", default=None)


def caller() -> MeshPrincipal | None:
    """The verified principal of the call being served: ANONYMOUS for a PUBLIC RPC called
    without one; None when no MeshIdentityInterceptor ran (a servicer hosted bare, in tests)."""
    return _caller.get()


def may_act_for(owner_account_id: str) -> bool:
    """Whether the current caller may change what `owner_account_id` owns: a service, an
    admin, or that account. A servicer hosted without the interceptor trusts its host."""
    principal = caller()
    if principal is None:
        return True
    if principal.is_service or principal.admin:
        return True
    return principal.is_account and principal.account_id == owner_account_id


@functools.lru_cache(maxsize=512)
def access_of(method: str) -> int:
    """The `access` option of `/package.Service/Method`; ACCESS_UNSPECIFIED if undeclared."""
    service, _, name = method.lstrip("/").partition("/")
    try:
        descriptor = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
    except KeyError:
        return Access.ACCESS_UNSPECIFIED
    return descriptor.GetOptions().Extensions[access_pb2.access]


def refusal(access: int, principal: MeshPrincipal | None) -> tuple[grpc.StatusCode, str] | None:
    """Why `principal` (None: no token) may not call an RPC of this access; None if it may."""
    if access == Access.ACCESS_PUBLIC:
        return None
    if principal is None:
        return grpc.StatusCode.UNAUTHENTICATED, "this call needs a signed principal: go through the gateway"
    if access == Access.ACCESS_ACCOUNT:
        return None
    if access == Access.ACCESS_ADMIN and (principal.is_service or principal.admin):
        return None
    if principal.is_service:  # ACCESS_SERVICE, or undeclared
        return None
    return grpc.StatusCode.PERMISSION_DENIED, "this call is for services" + (
        " and admins" if access == Access.ACCESS_ADMIN else "")


def _with_behaviour(handler: grpc.RpcMethodHandler, wrap) -> grpc.RpcMethodHandler:
    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            return handler._replace(**{kind: wrap(behaviour)})
    return handler


class MeshIdentityInterceptor(grpc.ServerInterceptor):
    """Checks each call's principal token against its RPC's access; the servicer then reads
    the principal with caller()."""

    def __init__(self, signer: MeshSigner):
        self.signer = signer

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(EXEMPT_PREFIXES):
            return handler
        token = next((value for key, value in handler_call_details.invocation_metadata or ()
                      if key == PRINCIPAL_METADATA_KEY), None)
        try:
            principal = self.signer.verify(token) if token else None
            refused = refusal(access_of(method), principal)
        except PrincipalRefused as exc:
            principal, refused = None, (grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if refused is not None:
            log.info("refused %s: %s", method, refused[1])
            return _with_behaviour(handler, lambda _b: _refuse(*refused))
        return _with_behaviour(handler, lambda behaviour: _as_caller(principal or ANONYMOUS, behaviour))


def _refuse(code: grpc.StatusCode, message: str):
    def refuse(_request, context):
        context.abort(code, message)

    return refuse


def _as_caller(principal: MeshPrincipal, behaviour):
    def serve(request_or_iterator, context):
        reset = _caller.set(principal)
        try:
            return behaviour(request_or_iterator, context)
        finally:
            _caller.reset(reset)

    return serve


# -- the client side ----------------------------------------------------------------------

_acting_as: contextvars.ContextVar[MeshPrincipal | None] = contextvars.ContextVar("longtail_mesh_acting_as",
                                                                                   default=None)


class _Identity:
    signer: MeshSigner | None = None
    default: MeshPrincipal | None = None


_identity = _Identity()


def configure_client_identity(signer: MeshSigner, default: MeshPrincipal | None) -> None:
    """How this process signs its outgoing calls; `default` is sent when no `acting_as` is
    set (a service's own principal; None in the gateway: an anonymous request sends none)."""
    _identity.signer, _identity.default = signer, default


@contextlib.contextmanager
def acting_as(principal: MeshPrincipal | None):
    """Outgoing calls made in this context (and the tasks it starts) carry `principal`."""
    reset = _acting_as.set(principal)
    try:
        yield
    finally:
        _acting_as.reset(reset)


def set_acting_as(principal: MeshPrincipal | None) -> None:
    """Like `acting_as`, for the rest of the current context (the gateway's request task)."""
    _acting_as.set(principal)


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    principal = _acting_as.get() or _identity.default
    if principal is None or _identity.signer is None:
        return ()
    return ((PRINCIPAL_METADATA_KEY, _identity.signer.sign(principal)),)


class _CallDetails(collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                            "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    pass


class MeshClientInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                            grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds the principal to every call of a blocking channel."""

    @staticmethod
    def _details(details):
        extra = outgoing_metadata()
        if not extra:
            return details
        return _CallDetails(details.method, details.timeout, (*(details.metadata or ()), *extra),
                            details.credentials, getattr(details, "wait_for_ready", None),
                            getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def _aio_details(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    extra = outgoing_metadata()
    if not extra:
        return details
    metadata = grpc.aio.Metadata(*tuple(details.metadata or ()), *extra)
    return details._replace(metadata=metadata)


class _AioUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(_aio_details(client_call_details), request)


class _AioUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(_aio_details(client_call_details), request)


class _AioStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(_aio_details(client_call_details), request_iterator)


class _AioStreamStream(grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(_aio_details(client_call_details), request_iterator)


def aio_client_interceptors() -> list:
    """The principal on every call of an asyncio channel (one interceptor per call kind)."""
    return [_AioUnaryUnary(), _AioUnaryStream(), _AioStreamUnary(), _AioStreamStream()]
