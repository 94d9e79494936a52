"""Signs and checks the tokens the watch call hands out: the media token inside stream
URLs (which video, until when, and for a private video which account), the playback id
view beacons must name (which video, region, until when, and a nonce of its own), and the
download token of one download file (the media grant's claims plus that file's key: a
stream URL's token never opens a download, which a video's owner may have disabled).

Both are itsdangerous URL-safe tokens, base64url(compact JSON) "." base64url(HMAC-SHA256),
each kind under its own salt (itsdangerous derives one key per salt from the secret), so
a playback id never passes as a media token or the reverse.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import math
import os
import pathlib
import time
from dataclasses import dataclass

import orjson
from itsdangerous import BadSignature, URLSafeSerializer

from longtail_common.config import Config
from longtail_common.mesh_identity import read_or_create_secret

MEDIA_SALT = "longtail.media"
PLAYBACK_SALT = "longtail.playback"
DOWNLOAD_SALT = "longtail.download"
SECRET_FILE = "playback.secret"
NONCE_BYTES = 9  # 12 base64 characters, no padding
NONCE_POOL_BYTES = 4096 - 4096 % NONCE_BYTES


class TokenRefused(Exception):
    """A token that does not grant what was asked; reason is a short metric label."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True)
class MediaGrant:
    """What a media token allows: GET every object under videos/<video_id>/ until expires."""

    video_id: str
    expires: int  # unix seconds
    # The viewer a private video's URLs were issued to; None for public videos, whose URLs
    # name nobody and so are one URL per object per window for every viewer (cacheable).
    account: str | None = None

    def claims(self) -> dict:
        claims = {"v": self.video_id, "e": self.expires}
        if self.account is not None:
            claims["a"] = self.account
        return claims


@dataclass(frozen=True)
class Playback:
    """One watch call's playback: beacons that name it count for this video and region only."""

    video_id: str
    region: str
    expires: int  # unix seconds
    nonce: str  # tells two playbacks of the same video and region apart


class PlaybackSigner:
    def __init__(self, secret: bytes, ttl_s: int, window_s: int):
        if ttl_s <= 0 or window_s <= 0:
            raise ValueError("playback.ttl_s and playback.window_s must be positive")
        self.ttl_s, self.window_s = ttl_s, window_s
        sha256 = {"digest_method": hashlib.sha256}
        self._media = URLSafeSerializer(secret, salt=MEDIA_SALT, signer_kwargs=sha256)
        self._playback = URLSafeSerializer(secret, salt=PLAYBACK_SALT, signer_kwargs=sha256)
        self._download = URLSafeSerializer(secret, salt=DOWNLOAD_SALT, signer_kwargs=sha256)
        self.download_token = functools.lru_cache(maxsize=4096)(self._sign_download)
        # The HMAC keyed with itsdangerous's derived key for the playback salt, copied per id.
        self._random, self._random_at = b"", 0
        self._playback_mac = hmac.new(self._playback.make_signer().derive_key(), digestmod=hashlib.sha256)
        # One signature per grant: a watch payload's URLs and every viewer of a public video
        # in the same window share it.
        self.media_token = functools.lru_cache(maxsize=4096)(self._sign_media)
        # Every segment request of every viewer of a public video in a window carries the same
        # token: its signature is checked once (refusals raise, so they are never cached).
        self._verified_media = functools.lru_cache(maxsize=65536)(self._check_media_signature)

    def media_grant(self, video_id: str, account: str | None = None, now: float | None = None) -> MediaGrant:
        """The grant for a watch call now: valid for at least ttl_s, expiry rounded up to the window."""
        now = time.time() if now is None else now
        expires = math.ceil((now + self.ttl_s) / self.window_s) * self.window_s
        return MediaGrant(video_id, int(expires), account)

    def _sign_media(self, grant: MediaGrant) -> str:
        return self._media.dumps(grant.claims())

    def media_grant_of(self, token: str) -> MediaGrant:
        """The grant a genuine token carries (TokenRefused if it is not), before any check of
        key, time or account: whom to ask for is read from it."""
        return self._verified_media(token)

    def check_media(self, token: str, key: str, account: str | None = None, now: float | None = None) -> MediaGrant:
        """The grant the token carries, if it covers `key` for `account` now; else TokenRefused."""
        grant = self._verified_media(token)
        if (time.time() if now is None else now) >= grant.expires:
            raise TokenRefused("expired", "the stream URL has expired; ask the watch call for a new one")
        if not key.startswith(f"videos/{grant.video_id}/"):
            raise TokenRefused("wrong_video", "the stream URL's signature is for another video")
        if is_download_key(key):
            raise TokenRefused("wrong_kind", "download files take their own URL, from the watch call")
        if grant.account is not None and grant.account != account:
            raise TokenRefused("wrong_account", "the stream URL was issued to another account")
        return grant

    def _check_media_signature(self, token: str) -> MediaGrant:
        claims = self._load(self._media, token)
        video_id, expires, owner = claims.get("v"), claims.get("e"), claims.get("a")
        if not isinstance(video_id, str) or not isinstance(expires, int) or not isinstance(owner, (str, type(None))):
            raise TokenRefused("invalid", "malformed media token")
        return MediaGrant(video_id, expires, owner)

    def _sign_download(self, grant: MediaGrant, key: str) -> str:
        return self._download.dumps({**grant.claims(), "k": key})

    def check_download(self, token: str, key: str, account: str | None = None, now: float | None = None) -> MediaGrant:
        """The grant of a download URL, if it was signed for exactly `key`, for `account`,
        and has not expired; else TokenRefused."""
        claims = self._load(self._download, token)
        video_id, expires, owner, signed_key = claims.get("v"), claims.get("e"), claims.get("a"), claims.get("k")
        if not isinstance(video_id, str) or not isinstance(expires, int) or not isinstance(owner, (str, type(None))):
            raise TokenRefused("invalid", "malformed download token")
        if signed_key != key:
            raise TokenRefused("wrong_key", "the download URL's signature is for another file")
        if (time.time() if now is None else now) >= expires:
            raise TokenRefused("expired", "the download URL has expired; ask the watch call for a new one")
        if owner is not None and owner != account:
            raise TokenRefused("wrong_account", "the download URL was issued to another account")
        return MediaGrant(video_id, expires, owner)

    def issue_playback(self, video_id: str, region: str, now: float | None = None) -> tuple[str, Playback]:
        """A new playback id (and what it says) for one watch call."""
        now = time.time() if now is None else now
        playback = Playback(video_id, region, int(now + self.ttl_s), self._nonce())
        claims = {"v": video_id, "r": region, "e": playback.expires, "n": playback.nonce}
        return self._sign_playback(orjson.dumps(claims)), playback

    def _nonce(self) -> str:
        """12 URL-safe characters of 9 random bytes, as secrets.token_urlsafe(9) makes them,
        cut from a pool the OS refills 4 kB at a time (one getrandom per ~450 ids, not per id)."""
        at = self._random_at
        if at + NONCE_BYTES > len(self._random):
            self._random, at = os.urandom(NONCE_POOL_BYTES), 0
        self._random_at = at + NONCE_BYTES
        return base64.urlsafe_b64encode(self._random[at:at + NONCE_BYTES]).decode("ascii")

    def _sign_playback(self, payload: bytes) -> str:
        """What self._playback.dumps() makes of these compact JSON claims, made directly (one
        per watch call): itsdangerous would also try zlib on them, which never shortens a
        payload this small (its loads() reads both forms)."""
        body = base64.urlsafe_b64encode(payload).rstrip(b"=")
        mac = self._playback_mac.copy()
        mac.update(body)
        return (body + b"." + base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")).decode("ascii")

    def check_playback(self, token: str, now: float | None = None) -> Playback:
        """What a playback id says, if it is genuine and not expired; else TokenRefused."""
        claims = self._load(self._playback, token)
        try:
            playback = Playback(str(claims["v"]), str(claims["r"]), int(claims["e"]), str(claims["n"]))
        except (KeyError, TypeError, ValueError):
            raise TokenRefused("invalid", "malformed playback id") from None
        if (time.time() if now is None else now) >= playback.expires:
            raise TokenRefused("expired", "the playback has expired")
        return playback

    @staticmethod
    def _load(serializer: URLSafeSerializer, token: str) -> dict:
        if not token:
            raise TokenRefused("missing", "no signature")
        try:
            claims = serializer.loads(token)
        except BadSignature:
            raise TokenRefused("invalid", "bad signature") from None
        if not isinstance(claims, dict):
            raise TokenRefused("invalid", "malformed token")
        return claims


def is_download_key(key: str) -> bool:
    """Whether `key` is a download file's: videos/<id>/downloads/..."""
    parts = key.split("/", 3)
    return len(parts) == 4 and parts[0] == "videos" and parts[2] == "downloads"


def playback_secret(cfg: Config) -> bytes:
    """The configured secret, else the secret file's (playback.secret_file, by default this
    data dir's): read, or made once (0600) if absent, as the mesh secret is
    (read_or_create_secret: gateways starting together all end up with one secret)."""
    if cfg.playback.secret:
        if len(cfg.playback.secret) < 32:
            raise ValueError("playback.secret must be at least 32 characters")
        return cfg.playback.secret.encode()
    path = pathlib.Path(cfg.playback.secret_file) if cfg.playback.secret_file else cfg.data_path / SECRET_FILE
    return read_or_create_secret(path)


def make_signer(cfg: Config) -> PlaybackSigner:
    return PlaybackSigner(playback_secret(cfg), cfg.playback.ttl_s, cfg.playback.window_s)
