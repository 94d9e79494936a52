"""Signed-in clients for tests: accounts, passwords and API tokens written straight to a
platform's account store (as `longtail users` / `longtail tokens` do, also while it runs),
and the signed service principal a test needs to call a service port directly."""
from __future__ import annotations

import collections

import grpc

from longtail_common.adapters import make_account_store
from longtail_common.config import Config
from longtail_common.grpc_server import dial
from longtail_common.mesh_identity import PRINCIPAL_METADATA_KEY, MeshPrincipal, make_mesh_signer
from longtail_common.ports import NotFoundError
from metadata_svc.accounts import Accounts


def _account(accounts: Accounts, username: str, admin: bool):
    try:
        return accounts.by_username(username)
    except NotFoundError:
        return accounts.create(username, email=f"{username}@example.org", admin=admin)


def api_token(cfg: Config, username: str, admin: bool = False, expire_time_us: int = 0, clock=None) -> str:
    """A new personal API token of `username` (the account is made if absent)."""
    store = make_account_store(cfg)
    try:
        accounts = Accounts(store, cfg.auth, **({"clock": clock} if clock else {}))
        return accounts.create_token(_account(accounts, username, admin).account_id, expire_time_us=expire_time_us)[1]
    finally:
        store.close()


def bearer(cfg: Config, username: str, admin: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token(cfg, username, admin)}"}


def with_password(cfg: Config, username: str, password: str) -> str:
    """Makes `username` (if absent) with this password; returns its account id."""
    store = make_account_store(cfg)
    try:
        accounts = Accounts(store, cfg.auth)
        record = _account(accounts, username, False)
        link, _expiry = accounts.create_password_link(record.account_id)
        accounts.set_password(link, password)
        return record.account_id
    finally:
        store.close()


def service_metadata(cfg: Config, service: str = "tests") -> tuple[tuple[str, str]]:
    """gRPC metadata that makes a direct call a service's (signed with the data dir's mesh key)."""
    return ((PRINCIPAL_METADATA_KEY, make_mesh_signer(cfg).sign(MeshPrincipal(service=service))),)


class _CallDetails(collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                            "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    pass


class _SignedAsService(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):
    """Adds a service principal to every call of a channel."""

    def __init__(self, metadata: tuple[tuple[str, str]]):
        self._metadata = metadata

    def _details(self, details):
        return _CallDetails(details.method, details.timeout, (*(details.metadata or ()), *self._metadata),
                            details.credentials, getattr(details, "wait_for_ready", None),
                            getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def service_channel(cfg: Config, service: str) -> grpc.Channel:
    """A channel to `service` ("metadata", ...; the mesh's TLS as `cfg` says) whose calls are a
    service's (tests that stand in for one)."""
    return grpc.intercept_channel(dial(getattr(cfg.services, service), cfg, service),
                                  _SignedAsService(service_metadata(cfg)))
