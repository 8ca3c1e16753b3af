"""Admitting aggregate reads (statistics): counts, never a child's record.

A statistics read names no child, so it is decided on the reader's agency kind alone: the
policy's ``statistics.rules`` (never the record rules) must grant every data category the
query's dimensions and filters reveal (counting by sex reveals identity data, by custody status
custody data). Each read, allowed or refused, is one access-log record of its own with the query
and no child ids, written before anything is computed, so it appears in no guardian's access
report and whether the answer is empty never depends on what exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from app.access.door import Door
from app.access.reading import BREAK_GLASS_HEADER, PURPOSE_HEADER, AccessDenied, InvalidBreakGlass, Reader
from app.audit.records import AccessRecord, Basis
from app.errors import BadRequest
from app.models.vocabulary import DataCategory, PurposeOfUse


class StatisticsPurposeRequired(BadRequest):
    code, title = "statistics_purpose_required", "Statistics are read for the purpose `statistics`"


def _record(
    reader: Reader,
    *,
    action: str,
    query: Mapping[str, Any],
    decision: str,
    reason: str | None,
    returned: Sequence[str],
    withheld: Sequence[str],
    basis: Mapping[str, Any],
) -> AccessRecord:
    principal = reader.principal
    return AccessRecord(
        request_id=reader.request_id,
        client_id=principal.client_id,
        agency=principal.agency,
        action=action,
        query=dict(query),
        purpose=str(PurposeOfUse.statistics),
        decision=decision,
        reason=reason,
        categories_returned=tuple(returned),
        categories_withheld=tuple(withheld),
        basis=Basis(basis),
    )


async def _refuse(
    door: Door,
    reader: Reader,
    error: Exception,
    *,
    action: str,
    query: Mapping[str, Any],
    reason: str,
    categories: Sequence[DataCategory],
) -> NoReturn:
    await door.audit.record(
        _record(
            reader,
            action=action,
            query=query,
            decision="deny",
            reason=reason,
            returned=(),
            withheld=[str(c) for c in categories],
            basis={},
        )
    )
    raise error


async def admit_aggregate(
    door: Door,
    reader: Reader,
    *,
    action: str,
    query: Mapping[str, Any],
    categories: Sequence[DataCategory],
) -> None:
    """Decide and record one statistics read. The purpose is ``statistics`` (stated, or implied
    when the header is absent); any other purpose is a 400, a category no rule grants a 403
    (``access_denied``), both on record. ``query`` holds codes and numbers only."""
    wanted = sorted(set(categories))
    stated = (reader.purpose_raw or "").strip()
    if stated and stated != PurposeOfUse.statistics:
        await _refuse(
            door,
            reader,
            StatisticsPurposeRequired(f"Send `{PURPOSE_HEADER}: statistics` (or leave it out)."),
            action=action,
            query=query,
            reason="statistics_purpose_required",
            categories=wanted,
        )
    if reader.break_glass_raw is not None:
        await _refuse(
            door,
            reader,
            InvalidBreakGlass(f"`{BREAK_GLASS_HEADER}` opens one child's record, never a count."),
            action=action,
            query=query,
            reason="invalid_break_glass",
            categories=wanted,
        )
    basis: dict[str, Any] = {}
    missing = []
    for category in wanted:
        rule = door.policy.statistics.grant(reader.agency_kind, category)
        if rule is None:
            missing.append(category)
        else:
            basis[str(category)] = {"ground": "statute", "ref": rule.id, "citation": rule.citation}
    if missing:
        await _refuse(
            door,
            reader,
            AccessDenied(
                "No rule of the policy lets this agency count by "
                + ", ".join(str(c) for c in missing)
                + " data.",
                extra={"withheld": [{"category": str(c), "reason": "no_legal_basis"} for c in missing]},
            ),
            action=action,
            query=query,
            reason="no_legal_basis",
            categories=wanted,
        )
    await door.audit.record(
        _record(
            reader,
            action=action,
            query=query,
            decision="allow",
            reason=None,
            returned=[str(c) for c in wanted],
            withheld=(),
            basis=basis,
        )
    )
