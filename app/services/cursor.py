"""Opaque keyset cursors: (timestamp, id) pairs encoded so clients treat them as tokens."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from app.errors import BadRequest


def encode(stamp: datetime, ident: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{stamp.isoformat()}|{ident}".encode()).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (timestamp, id) a cursor stands for; 400 for anything this API did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, ident = raw.partition("|")
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None or not 1900 <= when.year <= 2200:
            raise ValueError("not a timestamp this API issues")
        return when, uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise BadRequest("The cursor is not one this API issued.", code="invalid_cursor") from exc
