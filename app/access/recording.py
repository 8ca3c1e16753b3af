"""The access-log record of one decision: who read which child, for what, what was released and
withheld, and on which grounds. Built here, written by the door through the audit writer.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from app.access.decision import Decision, Grant
from app.access.reading import Reader, known_purpose
from app.audit.records import AccessRecord, Basis
from app.models.vocabulary import DataCategory

_NO_BASIS = Basis({})


def _basis(decision: Decision) -> Basis:
    return _basis_of(tuple(decision.granted.items()))


@functools.lru_cache(maxsize=4096)
def _basis_of(granted: tuple[tuple[DataCategory, Grant], ...]) -> Basis:
    """The access-log basis of one decision shape, built and checked once: statute reads repeat
    a handful of shapes; consent grants add one per consent, hence the bound."""
    return Basis(
        {
            str(category): {"ground": str(grant.ground), "ref": grant.ref, "citation": grant.citation}
            for category, grant in granted
        }
    )


def withheld_extra(decision: Decision) -> dict[str, Any]:
    return {"withheld": [{"category": str(c), "reason": r} for c, r in decision.withheld.items()]}


def access_record(
    reader: Reader,
    *,
    action: str,
    decision: Decision | None,
    child_id: uuid.UUID | None = None,
    child_ids: Sequence[uuid.UUID] | None = None,
    query: Mapping[str, Any] | None = None,
    reason: str | None = None,
    withheld: Sequence[str] = (),
    investigation_ref: str | None = None,
) -> AccessRecord:
    """The record of one read (``decision``) or refusal (None: denied, ``withheld`` named)."""
    principal = reader.principal
    return AccessRecord(
        request_id=reader.request_id,
        client_id=principal.client_id,
        agency=principal.agency,
        action=action,
        child_id=child_id,
        child_ids=tuple(child_ids) if child_ids is not None else None,
        query=dict(query) if query is not None else None,
        purpose=str(decision.purpose) if decision and decision.purpose else known_purpose(reader),
        decision=str(decision.outcome) if decision else "deny",
        reason=reason or (decision.reason if decision else None),
        categories_returned=tuple(str(c) for c in decision.granted) if decision else (),
        categories_withheld=tuple(str(c) for c in decision.withheld) if decision else tuple(withheld),
        basis=_basis(decision) if decision else _NO_BASIS,
        break_glass=bool(decision and decision.break_glass_used),
        investigation_ref=investigation_ref,
    )
