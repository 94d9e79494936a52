"""gRPC AccountService: the `Accounts` rules, translated to and from protobuf and status codes;
an account caller acts on itself only (the RPCs' access options say who calls what)."""
from __future__ import annotations

import grpc
from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from longtail.accounts.v1 import account_pb2 as account_pb
from longtail.accounts.v1 import account_service_pb2 as pb
from longtail.accounts.v1 import account_service_pb2_grpc as pb_grpc
from longtail_common.mesh_identity import may_act_for
from longtail_common.ports import AccountRecord, AlreadyExistsError, ConflictError, NotFoundError, TokenRecord
from metadata_svc.accounts import Accounts, FailedPreconditionError, Principal

MAX_PAGE_SIZE = 500
UPDATABLE_FIELDS = {"email", "admin", "disabled"}
# One answer for every failed sign-in or token, so it tells nothing about which check failed.
UNAUTHENTICATED_MESSAGE = "wrong username or password, or the account is disabled"
BAD_TOKEN_MESSAGE = "the token is invalid, expired or revoked"
BAD_SESSION_MESSAGE = "the session has ended or expired"


def _timestamp(us: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(us)
    return ts


def account_message(record: AccountRecord) -> account_pb.Account:
    """The account as callers see it: never its password hash."""
    return account_pb.Account(
        id=record.account_id, username=record.username, email=record.email, admin=record.admin,
        disabled=record.disabled, password_set=bool(record.password_hash),
        create_time=_timestamp(record.create_time_us), update_time=_timestamp(record.update_time_us),
        etag=record.etag)


def token_message(record: TokenRecord) -> account_pb.ApiToken:
    token = account_pb.ApiToken(id=record.token_id, account_id=record.account_id,
                                display_name=record.display_name, create_time=_timestamp(record.create_time_us))
    if record.expire_time_us:
        token.expire_time.CopyFrom(_timestamp(record.expire_time_us))
    return token


def principal_message(principal: Principal) -> account_pb.Principal:
    return account_pb.Principal(account_id=principal.account_id, username=principal.username,
                                admin=principal.admin, token_id=principal.token_id)


def abort_for(context, exc: Exception):
    """The status code of an error the rules or the store raised (others propagate)."""
    for kind, code in ((NotFoundError, grpc.StatusCode.NOT_FOUND),
                       (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
                       (ConflictError, grpc.StatusCode.ABORTED),
                       (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
                       (ValueError, grpc.StatusCode.INVALID_ARGUMENT)):
        if isinstance(exc, kind):
            context.abort(code, str(exc))
    raise exc


class AccountServicer(pb_grpc.AccountServiceServicer):
    def __init__(self, accounts: Accounts):
        self.accounts = accounts

    def _call(self, context, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (NotFoundError, AlreadyExistsError, ConflictError, FailedPreconditionError, ValueError) as exc:
            abort_for(context, exc)

    def CreateAccount(self, request, context):
        account = request.account
        record = self._call(context, self.accounts.create, account.username, email=account.email,
                            admin=account.admin, password=request.password)
        return account_message(record)

    @staticmethod
    def _require_self(context, account_id: str) -> None:
        """An account acts on itself only (admins and services on anyone)."""
        if not may_act_for(account_id):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "an account may only act on itself")

    def GetAccount(self, request, context):
        if request.WhichOneof("key") == "username":
            record = self._call(context, self.accounts.by_username, request.username)
        else:
            record = self._call(context, self.accounts.get, request.id)
        self._require_self(context, record.account_id)
        return account_message(record)

    def ListAccounts(self, request, context):
        if request.page_size < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_size must be positive")
        page_size = min(request.page_size or 50, MAX_PAGE_SIZE)
        records, cursor = self._call(context, self.accounts.list_accounts, page_size, request.page_token or None)
        return pb.ListAccountsResponse(accounts=[account_message(r) for r in records], next_page_token=cursor or "")

    def UpdateAccount(self, request, context):
        paths = list(request.update_mask.paths)
        if not paths:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "update_mask must name the fields to update")
        bad = sorted(set(paths) - UPDATABLE_FIELDS)
        if bad:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"fields not updatable: {', '.join(bad)}")
        account = request.account
        changes = {path: getattr(account, path) for path in paths}
        record = self._call(context, self.accounts.update, account.id, expected_etag=account.etag, **changes)
        return account_message(record)

    def CreatePasswordLink(self, request, context):
        token, expire_us = self._call(context, self.accounts.create_password_link, request.account_id)
        return account_pb.PasswordLink(account_id=request.account_id, token=token, expire_time=_timestamp(expire_us))

    def SetPassword(self, request, context):
        return account_message(self._call(context, self.accounts.set_password, request.link_token, request.password))

    def VerifyPassword(self, request, context):
        principal = self.accounts.verify_password(request.username, request.password)
        if principal is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        return principal_message(principal)

    def CreateToken(self, request, context):
        self._require_self(context, request.account_id)
        expire_us = request.expire_time.ToMicroseconds() if request.HasField("expire_time") else 0
        record, secret = self._call(context, self.accounts.create_token, request.account_id,
                                    display_name=request.display_name, expire_time_us=expire_us)
        return pb.CreateTokenResponse(token=token_message(record), secret=secret)

    def ListTokens(self, request, context):
        self._require_self(context, request.account_id)
        records = self._call(context, self.accounts.list_tokens, request.account_id)
        return pb.ListTokensResponse(tokens=[token_message(r) for r in records])

    def RevokeToken(self, request, context):
        self._require_self(context, request.account_id)
        self._call(context, self.accounts.revoke_token, request.account_id, request.token_id)
        return empty_pb2.Empty()

    def CreateSession(self, request, context):
        secret, expire_us = self._call(context, self.accounts.create_session, request.account_id)
        return pb.CreateSessionResponse(secret=secret, expire_time=_timestamp(expire_us))

    def ResolveSession(self, request, context):
        principal = self.accounts.resolve_session(request.secret)
        if principal is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, BAD_SESSION_MESSAGE)
        return principal_message(principal)

    def DeleteSession(self, request, context):
        self.accounts.end_session(request.secret)
        return empty_pb2.Empty()

    def SignInExternal(self, request, context):
        principal = self._call(context, self.accounts.sign_in_external, request.issuer, request.subject,
                               request.preferred_username, request.email,
                               request.admin if request.HasField("admin") else None)
        if principal is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        return principal_message(principal)

    def ResolveToken(self, request, context):
        principal = self.accounts.resolve_token(request.token)
        if principal is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, BAD_TOKEN_MESSAGE)
        return principal_message(principal)
