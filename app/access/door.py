"""The one door: every read of child-level data is admitted here, or refused here, and recorded.

Services load the rows they need (scoped to the reader's region) and hand them to :class:`Door`
before rendering anything. The door decides each read, writes the access-log record durably
(the group-committed audit writer) and only then returns the decision; if the record cannot be
written the read fails with 503 and nothing is served.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.access.decision import BreakGlass, ConsentGrant, Decision, Outcome, decide
from app.access.policy import Policy
from app.audit.records import AccessRecord
from app.auth.principal import Principal
from app.errors import BadRequest, Forbidden, NotFound
from app.models.vocabulary import DataCategory, PurposeOfUse

PURPOSE_HEADER = "X-Purpose-Of-Use"


class AuditSink(Protocol):
    async def record(self, record: AccessRecord) -> int: ...


class PurposeRequired(BadRequest):
    code, title = "purpose_required", "A purpose of use is required"


class UnknownPurpose(BadRequest):
    code, title = "unknown_purpose", "Unknown purpose of use"


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


@dataclass(frozen=True, slots=True)
class Subject:
    """The child being read, as much as the door needs to decide."""

    child_id: uuid.UUID
    owner_agency: str
    region_code: str


def _basis(decision: Decision) -> dict[str, Any]:
    return {
        str(category): {"ground": str(grant.ground), "ref": grant.ref, "citation": grant.citation}
        for category, grant in decision.granted.items()
    }


class Door:
    def __init__(self, policy: Policy, audit: AuditSink) -> None:
        self.policy = policy
        self.audit = audit

    def _purpose(self, reader: Reader) -> PurposeOfUse | None:
        if reader.purpose_raw is None or not reader.purpose_raw.strip():
            return None
        try:
            return PurposeOfUse(reader.purpose_raw.strip())
        except ValueError:
            raise UnknownPurpose(
                f"`{PURPOSE_HEADER}` must be one of: " + ", ".join(p.value for p in PurposeOfUse) + "."
            ) from None

    async def _log(
        self,
        reader: Reader,
        *,
        action: str,
        decision: Decision | None,
        child_id: uuid.UUID | None = None,
        child_ids: Sequence[uuid.UUID] | None = None,
        query: Mapping[str, Any] | None = None,
        outcome: str | None = None,
        reason: str | None = None,
        withheld: Sequence[str] = (),
    ) -> None:
        principal = reader.principal
        await self.audit.record(
            AccessRecord(
                request_id=reader.request_id,
                client_id=principal.client_id,
                agency=principal.agency,
                action=action,
                child_id=child_id,
                child_ids=tuple(child_ids) if child_ids is not None else None,
                query=dict(query) if query is not None else None,
                purpose=str(decision.purpose) if decision and decision.purpose else reader.purpose_raw,
                decision=outcome or (str(decision.outcome) if decision else "deny"),
                reason=reason or (decision.reason if decision else None),
                categories_returned=tuple(str(c) for c in decision.granted) if decision else (),
                categories_withheld=tuple(str(c) for c in decision.withheld) if decision else tuple(withheld),
                basis=_basis(decision) if decision else {},
                break_glass=bool(decision and decision.break_glass_used),
                investigation_ref=None,
            )
        )

    async def _refuse_purpose(
        self,
        reader: Reader,
        *,
        action: str,
        child_id: uuid.UUID | None,
        categories: Sequence[DataCategory],
        query: Mapping[str, Any] | None = None,
    ) -> PurposeOfUse:
        try:
            purpose = self._purpose(reader)
        except UnknownPurpose:
            await self._log(
                reader,
                action=action,
                decision=None,
                child_id=child_id,
                query=query,
                reason="unknown_purpose",
                withheld=[str(c) for c in categories],
            )
            raise
        if purpose is None:
            await self._log(
                reader,
                action=action,
                decision=None,
                child_id=child_id,
                query=query,
                reason="purpose_required",
                withheld=[str(c) for c in categories],
            )
            raise PurposeRequired(f"A cross-agency read must state `{PURPOSE_HEADER}`.")
        return purpose

    async def refuse_unseen(self, reader: Reader, *, action: str, child_id: uuid.UUID | None) -> NoReturn:
        """A child that does not exist or lies outside the reader's region: 404, the same body
        either way, and the attempt is on record."""
        await self._log(reader, action=action, decision=None, child_id=child_id, reason="not_found")
        raise NotFound("No child with this id.", code="child_not_found")

    def _consents(self, subject: Subject) -> Sequence[ConsentGrant]:
        return ()

    def _break_glass(self, reader: Reader) -> BreakGlass | None:
        return None

    async def admit(
        self,
        session: AsyncSession,
        reader: Reader,
        *,
        action: str,
        subject: Subject,
        categories: Sequence[DataCategory],
    ) -> Decision:
        """Decide a read of one child and record it. Raises 404 outside the reader's region,
        400 for a missing or unknown purpose, 403 when no category may be released."""
        principal = reader.principal
        if not principal.covers_region(subject.region_code):
            await self.refuse_unseen(reader, action=action, child_id=subject.child_id)
        purpose: PurposeOfUse | None = None
        if principal.agency != subject.owner_agency:
            purpose = await self._refuse_purpose(
                reader, action=action, child_id=subject.child_id, categories=categories
            )
        decision = decide(
            self.policy,
            reader_agency=principal.agency,
            reader_kind=reader.agency_kind,
            owner_agency=subject.owner_agency,
            categories=categories,
            purpose=purpose,
            consents=self._consents(subject),
            break_glass=self._break_glass(reader),
        )
        if decision.cross_agency or decision.outcome is Outcome.deny:
            await self._log(reader, action=action, decision=decision, child_id=subject.child_id)
        if decision.outcome is Outcome.deny:
            raise AccessDenied(
                "No statute, consent or emergency allows this agency to read any of the requested "
                "data for this purpose.",
                extra={"withheld": [{"category": str(c), "reason": r} for c, r in decision.withheld.items()]},
            )
        return decision

    async def admit_many(
        self,
        session: AsyncSession,
        reader: Reader,
        *,
        action: str,
        subjects: Sequence[Subject],
        categories: Sequence[DataCategory],
        query: Mapping[str, Any],
        required: DataCategory | None = None,
    ) -> dict[uuid.UUID, Decision]:
        """Decide a list read (the subjects are already confined to the reader's region). One
        access-log record names the query and every cross-agency child returned.

        ``required`` is a category the query itself reveals (filtering by a registry category
        discloses it): a reader who may not see it is refused, on record.
        """
        principal = reader.principal
        foreign = [s for s in subjects if s.owner_agency != principal.agency]
        purpose: PurposeOfUse | None = None
        if foreign or (not subjects and reader.purpose_raw is not None):
            purpose = await self._refuse_purpose(
                reader, action=action, child_id=None, categories=categories, query=query
            )
        decisions: dict[uuid.UUID, Decision] = {}
        for subject in subjects:
            decisions[subject.child_id] = decide(
                self.policy,
                reader_agency=principal.agency,
                reader_kind=reader.agency_kind,
                owner_agency=subject.owner_agency,
                categories=categories,
                purpose=purpose,
                consents=self._consents(subject),
                break_glass=None,
            )
        if foreign:
            sample = decisions[foreign[0].child_id]
            if required is not None and not sample.allows(required):
                await self._log(
                    reader,
                    action=action,
                    decision=None,
                    query=query,
                    reason="filter_not_allowed",
                    withheld=[str(required)],
                )
                raise AccessDenied(
                    f"The filter reveals {required} data, which this reader may not see for this purpose.",
                    code="filter_not_allowed",
                )
            denied = sample.outcome is Outcome.deny
            await self._log(
                reader,
                action=action,
                decision=sample,
                child_ids=[] if denied else [s.child_id for s in foreign],
                query=query,
            )
            if denied:
                raise AccessDenied(
                    "No statute, consent or emergency allows this agency to read children's data "
                    "for this purpose.",
                    extra={
                        "withheld": [{"category": str(c), "reason": r} for c, r in sample.withheld.items()]
                    },
                )
        return decisions
