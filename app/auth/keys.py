"""Signing keys: ES256 key pairs kept as PEM files in the key folder.

Every worker and instance reads the same folder, so ``serve --workers N`` and several hosts on a
shared volume sign and verify with the same keys. ``childlink keys rotate`` adds a key; the newest
key signs, and older keys keep verifying until tokens they signed have expired, after which the
next rotation removes them. A worker that meets an unknown ``kid`` whose key file exists rereads the
folder, so a rotation takes effect everywhere without a restart.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwk
from jose.backends.base import Key

from app.config import MAX_TOKEN_LIFETIME_SECONDS

ALGORITHM = "ES256"
KID_PATTERN = re.compile(r"^k-(\d{14})-([0-9a-f]{8})$")
"""Our kids are ``k-<UTC yyyymmddHHMMSS>-<random>``; anything else is not ours."""

RETENTION_SECONDS = 2 * MAX_TOKEN_LIFETIME_SECONDS + 120
"""A superseded key is kept this long after its successor appears: longer than any token it
could have signed is valid."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    created_at: datetime
    private_pem: bytes
    public_key: Key
    public_jwk: dict[str, Any]


def _created_at(kid: str) -> datetime:
    match = KID_PATTERN.match(kid)
    if not match:
        raise ValueError("not a key id")
    return datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _load(path: Path) -> SigningKey:
    kid = path.stem
    pem = path.read_bytes()
    private = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
        raise ValueError(f"key {kid} is not a P-256 key")
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_key = jwk.construct(public_pem, ALGORITHM)
    public_jwk = dict(public_key.to_dict())
    public_jwk.update({"kid": kid, "use": "sig", "alg": ALGORITHM})
    return SigningKey(kid, _created_at(kid), pem, public_key, public_jwk)


def generate_key(key_dir: Path, *, now: datetime | None = None) -> str:
    """Write a new P-256 key (mode 0600) and return its kid."""
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    newest = max(_kids(key_dir), default=None)
    if newest is not None and _created_at(newest) >= now:
        # The newest kid signs, and kids order by their timestamp; a second key made within the
        # same second would otherwise sort by its random suffix and might never sign.
        now = _created_at(newest) + timedelta(seconds=1)
    kid = f"k-{now:%Y%m%d%H%M%S}-{secrets.token_hex(4)}"
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = key_dir / f".{kid}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    # Atomic rename: a reader never sees a half-written key.
    tmp.rename(key_dir / f"{kid}.pem")
    return kid


def rotate(key_dir: Path, *, now: datetime | None = None) -> tuple[str, list[str]]:
    """Add a signing key and delete keys superseded longer ago than any token lives.

    Returns the new kid and the kids removed.
    """
    now = now or datetime.now(UTC)
    new_kid = generate_key(key_dir, now=now)
    keys = sorted(_kids(key_dir))
    removed = []
    for older, successor in pairwise(keys):
        if (now - _created_at(successor)).total_seconds() > RETENTION_SECONDS:
            (key_dir / f"{older}.pem").unlink(missing_ok=True)
            removed.append(older)
    return new_kid, removed


def _kids(key_dir: Path) -> list[str]:
    if not key_dir.is_dir():
        return []
    return [p.stem for p in key_dir.glob("k-*.pem") if KID_PATTERN.match(p.stem)]


class KeyRing:
    """The signing keys of this service, reloaded from the folder when it changes."""

    def __init__(self, key_dir: Path, *, create_if_empty: bool) -> None:
        self.key_dir = key_dir
        self._keys: dict[str, SigningKey] = {}
        self._lock = threading.Lock()
        self._last_reload = 0.0
        if create_if_empty and not _kids(key_dir):
            generate_key(key_dir)
        self.reload()
        if not self._keys:
            raise RuntimeError(f"no signing keys in {key_dir}; run `childlink keys rotate` to create one")

    def reload(self) -> None:
        with self._lock:
            kids = set(_kids(self.key_dir))
            keys = {kid: key for kid, key in self._keys.items() if kid in kids}
            for kid in kids - keys.keys():
                keys[kid] = _load(self.key_dir / f"{kid}.pem")
            if keys:
                self._keys = keys
            self._last_reload = time.monotonic()

    def maybe_reload(self, min_interval: float = 1.0) -> None:
        if time.monotonic() - self._last_reload >= min_interval:
            self.reload()

    @property
    def current(self) -> SigningKey:
        # Signing picks up a rotation within a few seconds on every worker.
        self.maybe_reload(5.0)
        return self._keys[max(self._keys)]

    def get(self, kid: str) -> SigningKey | None:
        key = self._keys.get(kid)
        # A kid of our shape names exactly one file (the pattern admits no path), so asking
        # whether it exists costs a stat; reread the folder only when it does, so a fresh key
        # verifies at once on every worker and made-up kids never trigger a reload.
        if key is None and KID_PATTERN.match(kid) and (self.key_dir / f"{kid}.pem").is_file():
            self.reload()
            key = self._keys.get(kid)
        return key

    def jwks(self) -> dict[str, Any]:
        self.maybe_reload(5.0)
        return {"keys": [self._keys[kid].public_jwk for kid in sorted(self._keys, reverse=True)]}
