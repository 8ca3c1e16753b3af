"""Deciding a page of case reads at once (a referral inbox, a case list).

Each case is decided as :meth:`Door.admit` would decide it (statute, consent, the case's open
referrals to the reader), but the page is recorded like :meth:`Door.admit_many`: one access-log
record per group of children read on the same grounds, refusals included, written before the
page is returned. One durable write per page instead of one per case: awaiting fifty group
commits one after the other was most of an inbox page's latency (bench/README.md).

Kept beside the door rather than in it: ``app/access/door.py`` is past the size of one sitting.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.access.decision import Decision, Outcome, ReferralGrant
from app.access.door import Door
from app.access.reading import Reader, Subject
from app.models.vocabulary import DataCategory, PurposeOfUse


@dataclass(frozen=True, slots=True)
class CaseRead:
    subject: Subject
    categories: tuple[DataCategory, ...]
    case_id: uuid.UUID


async def admit_case_reads(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    *,
    action: str,
    reads: Sequence[CaseRead],
    query: Mapping[str, Any],
) -> list[Decision | None]:
    """The decision on each read, in order; None for a read the door releases nothing of (it is
    on record as denied). A missing or unknown purpose on a cross-agency page is refused, on
    record, before anything is decided."""
    principal = reader.principal
    foreign = [r for r in reads if r.subject.owner_agency != principal.agency]
    purpose: PurposeOfUse | None = None
    if foreign:
        purpose = await door._stated_purpose(reader, action=action, child_id=None, categories=(), query=query)
    decisions = [door._decide(reader, r.subject, r.categories, purpose) for r in reads]
    needing = [i for i, d in enumerate(decisions) if d.withheld and d.cross_agency and purpose is not None]
    if needing:
        consents = await asyncio.gather(*(door._consents(reader, reads[i].subject.child_id) for i in needing))
        referrals: Mapping[uuid.UUID, Sequence[ReferralGrant]] = {}
        if purpose in door.referral_purposes:
            referrals = await door._referrals_of(session, reader, [reads[i].case_id for i in needing])
        for i, found in zip(needing, consents, strict=True):
            decisions[i] = door._decide_now(
                reader,
                reads[i].subject,
                reads[i].categories,
                purpose,
                found,
                None,
                referrals.get(reads[i].case_id, ()),
            )
    groups: dict[tuple[str, tuple[tuple[str, str, str], ...]], list[int]] = {}
    for i, decision in enumerate(decisions):
        if not decision.cross_agency:
            continue
        shape = tuple(sorted((str(c), str(g.ground), g.ref) for c, g in decision.granted.items()))
        groups.setdefault((str(decision.outcome), shape), []).append(i)
    if groups:
        await door.audit.record_many(
            [
                door._record(
                    reader,
                    action=action,
                    decision=decisions[members[0]],
                    child_ids=list(dict.fromkeys(reads[i].subject.child_id for i in members)),
                    query=query,
                )
                for members in groups.values()
            ]
        )
    return [d if d.outcome is not Outcome.deny else None for d in decisions]
