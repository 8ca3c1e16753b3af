"""Column helpers shared by the models."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator
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


_ISO_DATE_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_text(value: Any) -> Any:
    """A date or time given as ISO 8601 text, as the spec says (``format: date``/``date-time``).

    Pydantic would also take a number, or a string of digits, as seconds since 1970: ``0`` became
    1970-01-01 and ``?until=0.5`` a time in 1970, which the spec calls invalid and a caller
    never means."""
    if isinstance(value, date):  # datetime too; from the service's own code
        return value
    if isinstance(value, str) and _ISO_DATE_PREFIX.match(value):
        return value
    raise ValueError("give an ISO 8601 date (YYYY-MM-DD) or date-time text")


IsoDate = Annotated[date, BeforeValidator(iso_text)]
IsoDateTime = Annotated[datetime, BeforeValidator(iso_text)]
IsoAwareDateTime = Annotated[AwareDatetime, BeforeValidator(iso_text)]
