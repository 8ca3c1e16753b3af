"""What one access-log record holds, and the canonical hash that makes it tamper-evident.

An :class:`AccessRecord` is built by the access layer for every cross-agency read and every
denial. It carries ids and codes only: child UUIDs, never names or ID numbers, and list filters
(``query``) without any personal value.

**The row hash.** ``row_hash = sha256(canonical JSON of the record's content + logged_at)``, hex:

- the object has exactly the keys of :data:`CONTENT_FIELDS` plus ``logged_at``, sorted by code
  point, no whitespace (``{"action":"custody.read","agency":"police",...}``), UTF-8, non-ASCII
  text unescaped;
- ``logged_at`` is UTC with microseconds: ``2026-11-28T09:30:00.123456Z``;
- UUIDs are lower-case hyphenated strings; arrays keep their order; an absent value is ``null``;
- ``query`` and ``basis`` hold only objects, arrays, strings, integers, booleans and null.
  Floats are refused: PostgreSQL's ``jsonb`` may print them differently from Python, and the
  hash must be recomputable from what the database returns.

``audit verify`` recomputes this from the stored columns (:func:`content_from_row`), so the
same function serves the writer and the verifier and the two can never drift apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import orjson

# Actions the access layer records; others may be added without touching this package.
KNOWN_ACTIONS = (
    "child.read",
    "child.list",
    "child.lookup",
    "custody.read",
    "guardianship.read",
    "event.deliver",
    "event.feed",
)

CONTENT_FIELDS = (
    "request_id",
    "client_id",
    "agency",
    "action",
    "child_id",
    "child_ids",
    "query",
    "purpose",
    "decision",
    "reason",
    "categories_returned",
    "categories_withheld",
    "basis",
    "break_glass",
    "investigation_ref",
)


class Decision(StrEnum):
    """The access layer's answer to one read."""

    allow = "allow"
    allow_redacted = "allow_redacted"  # served with some categories withheld
    deny = "deny"


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"access record {name} must be a string")
    # PostgreSQL text and jsonb refuse NUL; one bad record would otherwise fail a whole batch.
    if "\x00" in value:
        raise ValueError(f"access record {name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"access record {name} is not valid Unicode") from exc


def _check_json(name: str, value: object, depth: int = 0) -> None:
    if depth > 16:
        raise ValueError(f"access record {name} is nested too deeply")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"access record {name} holds an integer out of range")
        return
    if isinstance(value, str):
        _check_text(name, value)
        return
    if isinstance(value, float):
        raise TypeError(f"access record {name} may not hold floats (the row hash must be exact)")
    if isinstance(value, list | tuple):
        for item in value:
            _check_json(name, item, depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_text(f"{name} key", key)
            _check_json(name, item, depth + 1)
        return
    raise TypeError(f"access record {name} holds a {type(value).__name__}; use JSON types")


class _Frozen(dict[str, Any]):
    """A dict that refuses changes once built (``orjson`` and ``json`` serialise it as a dict)."""

    __slots__ = ()

    def _refuse(self, *_: object, **__: object) -> None:
        raise TypeError("a checked basis cannot be changed")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle rebuild it whole, never item by item
        return (type(self), (dict(self),))


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _Frozen({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


class Basis(_Frozen):
    """A record's ``basis``, checked once and frozen. The access layer builds one per decision
    shape and hands the same object to every record of that shape, so records do not walk and
    copy it again each time (bench/README.md); any other mapping is checked and frozen by
    :class:`AccessRecord` itself."""

    __slots__ = ()

    def __init__(self, value: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        value = value if isinstance(value, Mapping) else dict(value)  # pairs, as dataclasses.asdict gives
        _check_json("basis", value)
        super().__init__({key: _freeze(item) for key, item in value.items()})


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRecord:
    """One cross-agency read or denial, as the access layer decided it.

    Construction validates everything the database would refuse, so a bad record fails its
    own caller at once instead of failing the batch it would have been written with.
    ``basis`` maps each category to its legal basis, e.g.
    ``{"custody": {"ground": "statute", "ref": "police-custody", "citation": "..."}}``; this
    package stores it as given.
    """

    action: str
    decision: Decision | str
    request_id: str | None = None
    client_id: str | None = None
    agency: str | None = None
    child_id: UUID | None = None
    child_ids: tuple[UUID, ...] | None = None
    query: Mapping[str, Any] | None = None
    purpose: str | None = None
    reason: str | None = None
    categories_returned: tuple[str, ...] = ()
    categories_withheld: tuple[str, ...] = ()
    basis: Mapping[str, Any] = field(default_factory=dict)
    break_glass: bool = False
    investigation_ref: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise in place once, here
        set_(self, "decision", Decision(self.decision))
        _check_text("action", self.action)
        if not self.action:
            raise ValueError("access record action is empty")
        for name in ("request_id", "client_id", "agency", "purpose", "reason", "investigation_ref"):
            value = getattr(self, name)
            if value is not None:
                _check_text(name, value)
        if self.child_id is not None:
            set_(self, "child_id", _uuid(self.child_id))
        if self.child_ids is not None:
            set_(self, "child_ids", tuple(_uuid(v) for v in self.child_ids))
        for name in ("categories_returned", "categories_withheld"):
            values = tuple(getattr(self, name))
            for value in values:
                _check_text(name, value)
            set_(self, name, values)
        if self.query is not None:
            if not isinstance(self.query, Mapping):
                raise TypeError("access record query must be a mapping")
            _check_json("query", self.query)
            set_(self, "query", dict(self.query))
        if not isinstance(self.basis, Basis):  # a Basis was checked when it was built
            if not isinstance(self.basis, Mapping):
                raise TypeError("access record basis must be a mapping")
            set_(self, "basis", Basis(self.basis))
        if not isinstance(self.break_glass, bool):
            raise TypeError("access record break_glass must be a bool")

    def content(self) -> dict[str, Any]:
        """The hashed content, in the JSON shape described in the module docstring."""
        return {
            "request_id": self.request_id,
            "client_id": self.client_id,
            "agency": self.agency,
            "action": self.action,
            "child_id": str(self.child_id) if self.child_id is not None else None,
            "child_ids": [str(v) for v in self.child_ids] if self.child_ids is not None else None,
            "query": self.query,
            "purpose": self.purpose,
            "decision": str(self.decision),
            "reason": self.reason,
            "categories_returned": list(self.categories_returned),
            "categories_withheld": list(self.categories_withheld),
            "basis": self.basis,
            "break_glass": self.break_glass,
            "investigation_ref": self.investigation_ref,
        }


def format_logged_at(logged_at: datetime) -> str:
    """UTC, microseconds, ``Z``: PostgreSQL's ``timestamptz`` keeps exactly this precision."""
    if logged_at.tzinfo is None:
        raise ValueError("logged_at must be timezone-aware")
    # isoformat, not strftime: the same text at a fraction of the cost, on every record written.
    return logged_at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical_json(content: Mapping[str, Any], logged_at: datetime) -> bytes:
    """The exact bytes the row hash covers (sorted keys, compact, UTF-8)."""
    document = dict(content)
    document["logged_at"] = format_logged_at(logged_at)
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def row_hash(content: Mapping[str, Any], logged_at: datetime) -> str:
    """``sha256`` (hex) of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(content, logged_at)).hexdigest()


def _json_column(value: Any) -> Any:
    # asyncpg returns json/jsonb as text unless a codec is set; accept either.
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _uuids(values: Iterable[Any] | None) -> list[str] | None:
    return [str(v) for v in values] if values is not None else None


def content_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed content rebuilt from a stored ``access_log`` row (for verification)."""
    child_id = row["child_id"]
    return {
        "request_id": row["request_id"],
        "client_id": row["client_id"],
        "agency": row["agency"],
        "action": row["action"],
        "child_id": str(child_id) if child_id is not None else None,
        "child_ids": _uuids(row["child_ids"]),
        "query": _json_column(row["query"]),
        "purpose": row["purpose"],
        "decision": row["decision"],
        "reason": row["reason"],
        "categories_returned": list(row["categories_returned"] or []),
        "categories_withheld": list(row["categories_withheld"] or []),
        "basis": _json_column(row["basis"]),
        "break_glass": row["break_glass"],
        "investigation_ref": row["investigation_ref"],
    }
