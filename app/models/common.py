"""Column helpers shared by the models."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, func


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp_column(*, nullable: bool = False, default_now: bool = True, **kw: Any) -> Any:
    return Column(
        DateTime(timezone=True),
        nullable=nullable,
        server_default=func.now() if default_now else None,
        **kw,
    )


BIGINT_MAX = 2**63 - 1
"""The largest PostgreSQL ``bigint``: a sequence number or row id beyond it names nothing, and
sending it to the database would fail as an overflow instead of a plain "no such row"."""

JSON_INT_MIN, JSON_INT_MAX = -(2**63), 2**63 - 1
JSON_MAX_DEPTH = 32


def storable_json(value: Any, *, _depth: int = 0) -> Any:
    """``value`` unchanged when it can be stored as ``jsonb`` and serialized back; ValueError
    naming the first fault otherwise.

    JSON itself bounds none of these, but the service cannot keep them: integers beyond 64 bits
    (the response serializer refuses them), strings or keys with a lone UTF-16 surrogate such as
    ``"\\ud800"`` (not UTF-8, so PostgreSQL refuses them), NUL characters (``jsonb`` refuses
    ``\\u0000``), NaN and Infinity (Python's parser accepts them; JSON has no such numbers) and
    nesting deeper than :data:`JSON_MAX_DEPTH`.
    """
    if _depth > JSON_MAX_DEPTH:
        raise ValueError(f"nested deeper than {JSON_MAX_DEPTH} levels")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if not JSON_INT_MIN <= value <= JSON_INT_MAX:
            raise ValueError("integers must lie between -2^63 and 2^63-1")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
        return value
    if isinstance(value, str):
        _storable_text(value)
        return value
    if isinstance(value, dict):
        for key, item in value.items():
            _storable_text(key)
            storable_json(item, _depth=_depth + 1)
        return value
    if isinstance(value, list):
        for item in value:
            storable_json(item, _depth=_depth + 1)
        return value
    raise ValueError("not a JSON value")


def _storable_text(text: str) -> None:
    if "\x00" in text:
        raise ValueError("text may not contain NUL (U+0000) characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text may not contain lone UTF-16 surrogates (e.g. \\ud800)") from None
