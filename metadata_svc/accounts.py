"""Account rules over the AccountStore port: usernames, Argon2id passwords, one-time
password links, personal API tokens, browser sessions, accounts made at a first OIDC
sign-in, and the principal a password, token or session stands for.

Both the AccountService servicer and the `longtail users` / `longtail tokens` commands go
through `Accounts`, so they apply the same rules. Passwords and secrets are never logged.

Passwords are hashed with Argon2id (argon2-cffi's RFC 9106 low-memory profile): a person's
password has little entropy, so each guess must be expensive. API tokens and link tokens
(and session secrets) are 256 random bits: no guess can succeed however fast the hash, so they are stored as
SHA-256 digests, which keeps resolving a token (on every API request) cheap instead of
handing an attacker a 64 MiB Argon2 computation per request.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass, replace
from typing import Callable

import argon2
from zxcvbn import zxcvbn

from longtail_common.config import AuthConfig
from longtail_common.ports import (
    AccountRecord,
    AccountStore,
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    SessionRecord,
    TokenRecord,
    is_valid_id,
)

log = logging.getLogger("metadata_svc.accounts")

# Lower case only, so "Ada" and "ada" cannot be two people; fullmatch, so no trailing "\n".
USERNAME_RE = re.compile(r"[a-z][a-z0-9_-]{1,31}")
# Words the REST API and pages use in paths where a username could stand.
RESERVED_USERNAMES = frozenset({"me", "new", "anonymous", "system"})
EMAIL_RE = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
MAX_EMAIL = 254
MAX_PASSWORD = 256
ZXCVBN_MAX = 72  # zxcvbn refuses longer input; the first 72 characters decide
MAX_DISPLAY_NAME = 64
MAX_TOKENS_PER_ACCOUNT = 100
TOKEN_PREFIX = "lt_"
TOKEN_RE = re.compile(r"lt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_US_PER_DAY = 86_400_000_000
_CAS_ATTEMPTS = 3


class InvalidInputError(ValueError):
    """A username, email, password, expiry or label the rules refuse."""


class FailedPreconditionError(Exception):
    """The request is well formed but the account's state refuses it (disabled, too many tokens)."""


@dataclass(frozen=True)
class Principal:
    """Who a verified caller is."""

    account_id: str
    username: str
    admin: bool
    token_id: str = ""  # the API token used; "" after a password sign-in


def validate_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username) or username in RESERVED_USERNAMES:
        raise InvalidInputError(
            f"invalid username {username!r}: use 2-32 lower-case letters, digits, '-' or '_', starting with a "
            f"letter (not one of {', '.join(sorted(RESERVED_USERNAMES))})")
    return username


def validate_email(email: str) -> str:
    if email and (len(email) > MAX_EMAIL or not EMAIL_RE.fullmatch(email)):
        raise InvalidInputError(f"invalid email address {email!r}")
    return email


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_etag() -> str:
    return uuid.uuid4().hex[:16]


class Accounts:
    def __init__(self, store: AccountStore, auth: AuthConfig, clock: Callable[[], float] = time.time):
        self.store = store
        self.auth = auth
        self._clock = clock
        self._hasher = argon2.PasswordHasher()  # Argon2id, RFC 9106 low-memory parameters

    @functools.cached_property
    def _dummy_hash(self) -> str:
        """Verified against when the account is unknown, so that answer takes as long as a
        wrong password. Made on first use: a hash costs as much as a sign-in."""
        return self._hasher.hash(secrets.token_urlsafe(16))

    def now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    # -- accounts -------------------------------------------------------------------------

    def create(self, username: str, email: str = "", admin: bool = False, password: str = "") -> AccountRecord:
        """A new account; AlreadyExistsError if the username is taken."""
        validate_username(username)
        validate_email(email)
        now = self.now_us()
        record = AccountRecord(account_id=uuid.uuid4().hex, username=username, email=email,
                               password_hash=self._hash_password(password, (username, email)) if password else "",
                               admin=admin,
                               disabled=False, create_time_us=now, update_time_us=now, etag=_new_etag())
        self.store.create_account(record)
        log.info("created account %s (%s)%s", username, record.account_id, " as admin" if admin else "")
        return record

    def get(self, account_id: str) -> AccountRecord:
        record = self.store.get_account(account_id) if is_valid_id(account_id) else None
        if record is None:
            raise NotFoundError(f"account {account_id} not found")
        return record

    def by_username(self, username: str) -> AccountRecord:
        record = self.store.get_account_by_username(username) if USERNAME_RE.fullmatch(username or "") else None
        if record is None:
            raise NotFoundError(f"no account named {username!r}")
        return record

    def list_accounts(self, page_size: int, cursor: str | None) -> tuple[list[AccountRecord], str | None]:
        return self.store.list_accounts(page_size, cursor)

    def update(self, account_id: str, *, email: str | None = None, admin: bool | None = None,
               disabled: bool | None = None, expected_etag: str = "") -> AccountRecord:
        """Writes the given fields. With `expected_etag` the write only happens at that
        version (ConflictError otherwise); without it, a concurrent write is retried."""
        if email is not None:
            validate_email(email)
        changes = {k: v for k, v in (("email", email), ("admin", admin), ("disabled", disabled)) if v is not None}
        updated = self._write(account_id, lambda current: replace(current, **changes), expected_etag)
        log.info("updated account %s: %s", updated.username, ", ".join(f"{k}={v}" for k, v in changes.items()))
        return updated

    def _write(self, account_id: str, change: Callable[[AccountRecord], AccountRecord],
               expected_etag: str = "") -> AccountRecord:
        for attempt in range(_CAS_ATTEMPTS):
            current = self.get(account_id)
            if expected_etag and current.etag != expected_etag:
                raise ConflictError(f"account {account_id} changed since it was read (etag mismatch)")
            updated = replace(change(current), update_time_us=self.now_us(), etag=_new_etag())
            try:
                self.store.replace_account(updated, expected_etag=current.etag)
                return updated
            except ConflictError:
                if expected_etag or attempt == _CAS_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    # -- passwords ------------------------------------------------------------------------

    def check_password(self, password: str, user_inputs: tuple[str, ...] = ()) -> None:
        """InvalidInputError, saying why, for a password the policy refuses: its length, and
        (NIST SP 800-63B's blocklist) a guessability score under `auth.min_password_strength`
        by zxcvbn (common passwords, words, names, dates, keyboard walks, the username)."""
        if not isinstance(password, str) or not self.auth.min_password_length <= len(password) <= MAX_PASSWORD:
            raise InvalidInputError(
                f"a password needs {self.auth.min_password_length} to {MAX_PASSWORD} characters")
        if self.auth.min_password_strength > 0:
            result = zxcvbn(password[:ZXCVBN_MAX], user_inputs=[u for u in user_inputs if u])
            if result["score"] < self.auth.min_password_strength:
                feedback = result["feedback"]
                why = " ".join([feedback.get("warning") or "It is easy to guess.", *feedback.get("suggestions", [])])
                raise InvalidInputError(f"this password is too weak. {why}")

    def _hash_password(self, password: str, user_inputs: tuple[str, ...] = ()) -> str:
        self.check_password(password, user_inputs)
        return self._hasher.hash(password)

    def create_password_link(self, account_id: str) -> tuple[str, int]:
        """(link token, expiry in µs): the token is shown once; only its hash is stored."""
        account = self.get(account_id)
        token = secrets.token_urlsafe(32)
        expire_us = self.now_us() + self.auth.password_link_ttl_s * 1_000_000
        self.store.put_password_link(_sha256(token), account.account_id, expire_us)
        return token, expire_us

    def set_password(self, link_token: str, password: str) -> AccountRecord:
        """Sets the link's account's password and consumes the link. A refused password
        keeps the link; NotFoundError for an unknown, used or expired link."""
        password_hash = self._hash_password(password)
        account_id = self.store.consume_password_link(_sha256(link_token or ""), self.now_us())
        if account_id is None:
            raise NotFoundError("unknown, used or expired password link")
        updated = self._write(account_id, lambda current: replace(current, password_hash=password_hash))
        log.info("password set for account %s", updated.username)
        return updated

    def verify_password(self, username: str, password: str) -> Principal | None:
        """The principal, or None alike for an unknown or disabled account, no password
        yet, or a wrong one (an unknown account still costs one Argon2 verification)."""
        record = self.store.get_account_by_username(username) if USERNAME_RE.fullmatch(username or "") else None
        stored = record.password_hash if record is not None and record.password_hash else self._dummy_hash
        try:
            matches = self._hasher.verify(stored, password or "")
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            matches = False
        if not matches or record is None or not record.password_hash or record.disabled:
            return None
        if self._hasher.check_needs_rehash(stored):  # the parameters were raised since: upgrade it
            try:
                self._write(record.account_id, lambda current: replace(current, password_hash=self._hasher.hash(password)))
            except ConflictError:
                pass  # another write won; the old hash still verifies
        return Principal(record.account_id, record.username, record.admin)

    # -- API tokens -----------------------------------------------------------------------

    def _token_expiry(self, expire_time_us: int) -> int:
        now = self.now_us()
        if expire_time_us and expire_time_us <= now:
            raise InvalidInputError("a token's expiry must be in the future")
        if self.auth.token_max_expiry_days > 0:
            limit = now + self.auth.token_max_expiry_days * _US_PER_DAY
            if expire_time_us > limit:
                raise InvalidInputError(f"a token may live at most {self.auth.token_max_expiry_days} days here")
            return expire_time_us or limit
        return expire_time_us

    def create_token(self, account_id: str, display_name: str = "", expire_time_us: int = 0) -> tuple[TokenRecord, str]:
        """(the token as listed, the token string): the string is shown once."""
        if len(display_name) > MAX_DISPLAY_NAME or not display_name.isprintable():
            raise InvalidInputError(f"a token's label has at most {MAX_DISPLAY_NAME} printable characters")
        account = self.get(account_id)
        if account.disabled:
            raise FailedPreconditionError(f"account {account.username} is disabled")
        if len(self.store.list_tokens(account_id)) >= MAX_TOKENS_PER_ACCOUNT:
            raise FailedPreconditionError(f"account {account.username} has {MAX_TOKENS_PER_ACCOUNT} tokens: "
                                          "revoke one first")
        secret = secrets.token_urlsafe(32)
        record = TokenRecord(token_id=secrets.token_hex(8), account_id=account_id, secret_hash=_sha256(secret),
                             display_name=display_name, create_time_us=self.now_us(),
                             expire_time_us=self._token_expiry(expire_time_us))
        self.store.create_token(record)
        log.info("created API token %s for account %s", record.token_id, account.username)
        return record, f"{TOKEN_PREFIX}{record.token_id}_{secret}"

    def list_tokens(self, account_id: str) -> list[TokenRecord]:
        return self.store.list_tokens(self.get(account_id).account_id)

    def revoke_token(self, account_id: str, token_id: str) -> None:
        if not is_valid_id(account_id) or not is_valid_id(token_id) or not self.store.delete_token(account_id, token_id):
            raise NotFoundError(f"account {account_id} has no token {token_id}")
        log.info("revoked API token %s of account %s", token_id, account_id)

    def resolve_token(self, token: str) -> Principal | None:
        """The principal, or None alike for a malformed, unknown, revoked or expired token
        or a disabled account."""
        match = TOKEN_RE.fullmatch(token or "")
        if match is None:
            return None
        token_id, secret = match.groups()
        record = self.store.get_token(token_id)
        if record is None or not hmac.compare_digest(record.secret_hash, _sha256(secret)):
            return None
        if record.expire_time_us and record.expire_time_us <= self.now_us():
            return None
        account = self.store.get_account(record.account_id)
        if account is None or account.disabled:
            return None
        return Principal(account.account_id, account.username, account.admin, token_id=token_id)

    # -- browser sessions -----------------------------------------------------------------

    def create_session(self, account_id: str) -> tuple[str, int]:
        """(the session secret, its expiry in µs): the secret is shown once."""
        account = self.get(account_id)
        if account.disabled:
            raise FailedPreconditionError(f"account {account.username} is disabled")
        secret = secrets.token_urlsafe(32)
        now = self.now_us()
        record = SessionRecord(_sha256(secret), account_id, now, now + self.auth.session_ttl_s * 1_000_000)
        self.store.create_session(record)
        return secret, record.expire_time_us

    def resolve_session(self, secret: str) -> Principal | None:
        """The principal, or None alike for an unknown, ended or expired session or a
        disabled account."""
        record = self.store.get_session(_sha256(secret)) if secret else None
        if record is None or record.expire_time_us <= self.now_us():
            return None
        account = self.store.get_account(record.account_id)
        if account is None or account.disabled:
            return None
        return Principal(account.account_id, account.username, account.admin)

    def end_session(self, secret: str) -> None:
        if secret:
            self.store.delete_session(_sha256(secret))

    # -- external (OIDC) identities ---------------------------------------------------------

    def sign_in_external(self, issuer: str, subject: str, preferred_username: str = "",
                         email: str = "", admin: bool | None = None) -> Principal | None:
        """The principal of the account linked to (issuer, subject), made and linked at the
        first sign-in, its admin flag as the provider says; None if that account is disabled."""
        if not issuer or not subject:
            raise InvalidInputError("an external identity needs an issuer and a subject")
        account_id = self.store.get_identity(issuer, subject)
        if account_id is None:
            made = self._create_external_account(preferred_username, email)
            account_id = self.store.link_identity(issuer, subject, made.account_id)
            if account_id != made.account_id:  # a concurrent first sign-in linked its own: retire ours
                self.update(made.account_id, disabled=True)
            else:
                log.info("linked %s (%s) to new account %s", subject, issuer, made.username)
        account = self.store.get_account(account_id)
        if account is None or account.disabled:
            return None
        if admin is not None and account.admin != admin:
            account = self.update(account.account_id, admin=admin)
        return Principal(account.account_id, account.username, account.admin)

    def _create_external_account(self, preferred_username: str, email: str) -> AccountRecord:
        """A password-less account named after the provider's suggestion, made unique."""
        base = re.sub(r"[^a-z0-9_-]+", "-", (preferred_username or "").lower().split("@")[0]).strip("-_")
        base = (base if base[:1].isalpha() else f"u{base}")[:24] or "user"
        try:
            email = validate_email(email)
        except InvalidInputError:
            email = ""  # the provider's address is optional here: never a reason to refuse a sign-in
        candidates = [base, *(f"{base}-{n}" for n in range(2, 10)), f"{base}-{secrets.token_hex(3)}"]
        for candidate in candidates:
            if len(candidate) < 2 or candidate in RESERVED_USERNAMES:
                continue
            try:
                return self.create(candidate, email=email)
            except AlreadyExistsError:
                continue
        return self.create(f"user-{secrets.token_hex(6)}", email=email)
