"""Who reads, what they read, and what a request states about its read: the reader and the child
as the door sees them, the headers a read is stated in, and the door's refusals.

The parsing here is pure (a reader and the policy in, a purpose or a break-glass claim out);
the door (:mod:`app.access.door`) decides, and puts every refusal on record before raising it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

from app.access.decision import BreakGlass
from app.access.policy import BreakGlassPolicy
from app.audit.records import AccessRecord
from app.auth.principal import Principal
from app.errors import BadRequest, Forbidden, TooManyRequests
from app.models.break_glass import BreakGlassReason
from app.models.vocabulary import PurposeOfUse

PURPOSE_HEADER = "X-Purpose-Of-Use"
BREAK_GLASS_HEADER = "X-Break-Glass"
INVESTIGATION_HEADER = "X-Investigation-Ref"
INVESTIGATION_REF = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
"""Case references travel in a URL when the case is closed: no slashes."""


class AuditSink(Protocol):
    async def record(self, record: AccessRecord) -> int: ...

    async def record_many(self, records: Sequence[AccessRecord]) -> list[int]: ...


class PurposeRequired(BadRequest):
    code, title = "purpose_required", "A purpose of use is required"


class UnknownPurpose(BadRequest):
    code, title = "unknown_purpose", "Unknown purpose of use"


class InvalidBreakGlass(BadRequest):
    code, title = "invalid_break_glass", "Malformed break-glass justification"


class InvestigationRefRequired(BadRequest):
    code, title = "investigation_ref_required", "An investigation reference is required"


class InvestigationNotAllowed(Forbidden):
    code, title = "investigation_not_allowed", "This reader may not read for this investigation"


class BreakGlassNotAllowed(Forbidden):
    code, title = "break_glass_not_allowed", "This client may not use break-glass"


class BreakGlassLimit(TooManyRequests):
    code, title = "break_glass_limit", "Daily break-glass limit reached"


class AccessDenied(Forbidden):
    code, title = "access_denied", "No legal basis for this read"


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads and why, as stated on the request."""

    principal: Principal
    agency_kind: str
    purpose_raw: str | None
    break_glass_raw: str | None
    request_id: str | None
    investigation_raw: str | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    """The child being read, as much as the door needs to decide."""

    child_id: uuid.UUID
    owner_agency: str
    region_code: str


def stated_purpose(reader: Reader) -> PurposeOfUse | None:
    """The purpose the request states (``X-Purpose-Of-Use``), None when it states none; 400
    ``unknown_purpose`` for one that is not ours."""
    if reader.purpose_raw is None or not reader.purpose_raw.strip():
        return None
    try:
        return PurposeOfUse(reader.purpose_raw.strip())
    except ValueError:
        raise UnknownPurpose(
            f"`{PURPOSE_HEADER}` must be one of: " + ", ".join(p.value for p in PurposeOfUse) + "."
        ) from None


def known_purpose(reader: Reader) -> str | None:
    """The stated purpose if it is one of ours; free text from a header is never logged."""
    raw = (reader.purpose_raw or "").strip()
    return raw if raw in PurposeOfUse.__members__ else None


def parse_break_glass(raw: str, rules: BreakGlassPolicy) -> BreakGlass:
    """``<reason_code>; <justification>``; the justification may be percent-encoded (UTF-8)
    so it can be written in Chinese in an HTTP header."""
    code, sep, text = raw.partition(";")
    code = code.strip()
    justification = unquote(text).strip()
    if not sep or code not in rules.reason_codes:
        raise InvalidBreakGlass(
            f"Send `{BREAK_GLASS_HEADER}: <reason_code>; <justification>` with a reason code from: "
            + ", ".join(sorted(rules.reason_codes))
            + "."
        )
    if len(justification) < rules.min_justification_length:
        raise InvalidBreakGlass(
            f"The justification must be at least {rules.min_justification_length} characters."
        )
    return BreakGlass(reason_code=BreakGlassReason(code), justification=justification[:1000])
