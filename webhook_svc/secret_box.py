"""Endpoints' signing secrets: made, and encrypted at rest.

A signing secret must be recoverable to sign (HMAC), so it cannot be stored hashed as API
tokens are. It is stored encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from
`cryptography`) under keys the store never sees: `webhooks.encryption_keys` (the first
encrypts, every one decrypts, so keys rotate), else one derived from DATA_DIR/webhook.key,
made (0600) at the first start and shared by the machine's processes. A copy of the database
or keyspace alone yields no secret.
"""
from __future__ import annotations

import base64
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from longtail_common.config import Config
from longtail_common.mesh_identity import read_or_create_secret

KEY_FILE = "webhook.key"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks: 24 to 64 random bytes


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


class SecretBox:
    def __init__(self, keys: list[bytes]):
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    @classmethod
    def from_config(cls, cfg: Config) -> "SecretBox":
        if cfg.webhooks.encryption_keys:
            return cls([k.encode() for k in cfg.webhooks.encryption_keys])
        material = read_or_create_secret(cfg.data_path / KEY_FILE)
        derived = hashlib.sha256(b"longtail.webhooks.secret-box" + material).digest()
        return cls([base64.urlsafe_b64encode(derived)])

    def seal(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def open(self, ciphertext: bytes) -> str:
        """The secret; ValueError if no configured key opens it (a lost or rotated-out key)."""
        try:
            return self._fernet.decrypt(ciphertext).decode()
        except InvalidToken:
            raise ValueError("no configured webhooks.encryption_keys opens this secret") from None
