"""Webhook signing secrets at rest: encrypted with a key kept beside the token-signing keys.

A Standard Webhooks secret is symmetric: the platform must be able to read it to sign, so it
cannot be hashed like a client secret. It is stored encrypted (AES-256-GCM, the subscription id
as associated data, so a ciphertext copied onto another subscription does not decrypt) under a
key in the key folder (``webhook-secrets.key``, mode 0600). A database dump alone therefore
does not let anyone forge deliveries. In development the key is created on first use; in
production it must be provisioned with the signing keys, or the service refuses to start.
"""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.events.signing import SECRET_BYTES, SECRET_PREFIX

KEY_FILE = "webhook-secrets.key"
_VERSION = "v1:"
_AAD = b"childlink webhook secret "


OPENED_CACHE = 4096
"""Stored secrets a box remembers opened (the worker opens each claimed delivery's secrets; the API
opens one subscription's for a test ping). They stay in that process's memory until the box
forgets them all at this many, as the signing secrets of the deliveries in flight do anyway."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the webhook secret key is 32 bytes")
        self._aead = AESGCM(key)
        self._opened: dict[tuple[uuid.UUID, str], str] = {}

    def seal(self, subscription_id: uuid.UUID, secret: str) -> str:
        """``whsec_...`` -> what the database stores."""
        raw = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, raw, _AAD + subscription_id.bytes)
        return _VERSION + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, subscription_id: uuid.UUID, stored: str) -> str:
        """What the database stores -> ``whsec_...``. Remembered per stored value (each sealing
        has its own nonce, so a rotated secret is a new value): a busy worker opens the same few
        secrets for every delivery, and only ever in this process, which signs with them anyway."""
        opened = self._opened.get((subscription_id, stored))
        if opened is None:
            opened = self._open(subscription_id, stored)
            if len(self._opened) >= OPENED_CACHE:
                self._opened.clear()
            self._opened[(subscription_id, stored)] = opened
        return opened

    def _open(self, subscription_id: uuid.UUID, stored: str) -> str:
        if stored.startswith(SECRET_PREFIX):
            return stored  # written before secrets were sealed; still usable
        if not stored.startswith(_VERSION):
            raise ValueError("unknown webhook secret format")
        blob = base64.b64decode(stored[len(_VERSION) :])
        raw = self._aead.decrypt(blob[:12], blob[12:], _AAD + subscription_id.bytes)
        if len(raw) != SECRET_BYTES:
            raise ValueError("unexpected webhook secret length")
        return SECRET_PREFIX + base64.b64encode(raw).decode("ascii")


def load(key_dir: Path, *, create_if_missing: bool) -> SecretBox:
    path = key_dir / KEY_FILE
    if not path.exists():
        if not create_if_missing:
            raise RuntimeError(
                f"no {KEY_FILE} in {key_dir}: provision 32 random bytes, base64-encoded, mode 0600"
            )
        key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = key_dir / f".{KEY_FILE}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64encode(secrets.token_bytes(32)))
        try:
            # Never replace a key another process wrote first: every process must agree on it.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return SecretBox(base64.b64decode(path.read_bytes().strip()))


def valid_retired(retired: list[dict[str, str]] | None, now: datetime) -> list[str]:
    """The sealed secrets retired by rotation whose own overlap has not ended, newest first."""
    found = [
        (datetime.fromisoformat(entry["expires_at"]), entry["secret"])
        for entry in retired or []
        if datetime.fromisoformat(entry["expires_at"]) > now
    ]
    return [secret for _, secret in sorted(found, reverse=True)]
