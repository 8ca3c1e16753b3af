"""The one door: every read of child-level data is admitted here, or refused here, and recorded.

Services load the rows they need (scoped to the reader's region) and hand them to :class:`Door`
before rendering anything. The door decides each read on its three grounds (statute, consent,
break-glass), writes the access-log record durably (the group-committed audit writer) and only
then returns the decision; if the record cannot be written the read fails with 503 and nothing
is served.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, NoReturn

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.access.decision import (
    BreakGlass,
    ConsentGrant,
    Decision,
    Ground,
    Outcome,
    ReferralGrant,
    decide,
)
from app.access.policy import Policy
from app.access.reading import (
    INVESTIGATION_HEADER,
    INVESTIGATION_REF,
    PURPOSE_HEADER,
    AccessDenied,
    AuditSink,
    BreakGlassLimit,
    BreakGlassNotAllowed,
    InvalidBreakGlass,
    InvestigationNotAllowed,
    InvestigationRefRequired,
    PurposeRequired,
    Reader,
    Subject,
    UnknownPurpose,
    parse_break_glass,
    stated_purpose,
)
from app.access.recording import access_record, withheld_extra
from app.audit.records import AccessRecord
from app.auth.scopes import Scope
from app.batching import BatchedLookup
from app.db import OnDemandSession, opened
from app.errors import NotFound
from app.models.agency import AgencyKind
from app.models.break_glass import BreakGlassReason, BreakGlassReview, Investigation
from app.models.common import utcnow
from app.models.vocabulary import DataCategory, PurposeOfUse

_DECISION_CACHE_SIZE = 4096
# (reader agency, reader kind, owner agency, categories, purpose)
_DecisionKey = tuple[str, str, str, tuple[DataCategory, ...], PurposeOfUse | None]


ACTIVE_CONSENTS_SQL = """
SELECT child_id, id, categories, purposes, receiving_agency
FROM consent
WHERE child_id = ANY($1::uuid[]) AND revoked_at IS NULL AND valid_from <= now() AND valid_until > now()
"""
"""Active consents of a set of children, for :class:`app.batching.BatchedLookup`: concurrent
decisions (redacted reads, event deliveries) share one query instead of one each."""


OPEN_REFERRALS_SQL = """
SELECT r.id, r.case_id, r.categories FROM referral AS r JOIN "case" AS c ON c.id = r.case_id
WHERE r.case_id = ANY(:case_ids) AND r.to_agency = :agency AND r.status IN ('requested', 'accepted')
  AND c.status = 'open' AND starts_with(r.target_region, :region)
"""
"""Open referrals of the given cases to this reader's agency, addressed to a division the reader's
region covers. Read in the request's transaction: a referral counts from the moment it commits
and stops counting the moment it is answered or withdrawn."""


def consent_lookup(dsn: str, *, pooled: bool = False) -> BatchedLookup:
    return BatchedLookup(dsn, ACTIVE_CONSENTS_SQL, "child_id", pooled=pooled)


class Door:
    def __init__(
        self,
        policy: Policy,
        audit: AuditSink,
        *,
        consents: BatchedLookup,
        break_glass_daily_limit: int = 5,
    ) -> None:
        self.policy = policy
        self.audit = audit
        self.consents = consents
        self.break_glass_daily_limit = break_glass_daily_limit
        self._decisions: dict[_DecisionKey, Decision] = {}

    # -- the request's statements (parsed in app/access/reading.py) -------------------------

    def _purpose(self, reader: Reader) -> PurposeOfUse | None:
        return stated_purpose(reader)

    def _parse_break_glass(self, raw: str) -> BreakGlass:
        return parse_break_glass(raw, self.policy.break_glass)

    # -- the access log --------------------------------------------------------------------

    async def _log(self, reader: Reader, **fields: Any) -> int:
        """Write the access-log record of a read or refusal durably; its ``access_log.id``.
        ``fields`` are :func:`app.access.recording.access_record`'s."""
        return await self.audit.record(access_record(reader, **fields))

    def _record(self, reader: Reader, **fields: Any) -> AccessRecord:
        """The access-log record of a read or refusal (app/access/recording.py)."""
        return access_record(reader, **fields)

    async def _refuse(
        self,
        reader: Reader,
        error: Exception,
        *,
        action: str,
        child_id: uuid.UUID | None,
        categories: Sequence[DataCategory],
        reason: str,
        query: Mapping[str, Any] | None = None,
    ) -> NoReturn:
        await self._log(
            reader,
            action=action,
            decision=None,
            child_id=child_id,
            query=query,
            reason=reason,
            withheld=[str(c) for c in categories],
        )
        raise error

    async def _stated_purpose(
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
        except UnknownPurpose as exc:
            await self._refuse(
                reader,
                exc,
                action=action,
                child_id=child_id,
                categories=categories,
                reason="unknown_purpose",
                query=query,
            )
        if purpose is None:
            await self._refuse(
                reader,
                PurposeRequired(f"A cross-agency read must state `{PURPOSE_HEADER}`."),
                action=action,
                child_id=child_id,
                categories=categories,
                reason="purpose_required",
                query=query,
            )
        return purpose

    async def _investigation(
        self,
        session: AsyncSession | OnDemandSession,
        reader: Reader,
        purpose: PurposeOfUse,
        *,
        action: str,
        child_id: uuid.UUID | None,
        categories: Sequence[DataCategory],
    ) -> str | None:
        """A read for a police investigation names its case; the case stays open (and its reads
        out of the guardian's report) until the investigating agency closes it."""
        if purpose not in self.policy.investigation_purposes:
            return None
        # Only agencies the policy lets investigate may hide reads from the guardian's report,
        # and only under their own case references.
        if reader.agency_kind not in self.policy.investigating_kinds:
            await self._refuse(
                reader,
                InvestigationNotAllowed("Only investigating agencies may read for an investigation."),
                action=action,
                child_id=child_id,
                categories=categories,
                reason="investigation_not_allowed",
            )
        ref = (reader.investigation_raw or "").strip()
        if not INVESTIGATION_REF.match(ref):
            await self._refuse(
                reader,
                InvestigationRefRequired(
                    f"A read for an investigation must send `{INVESTIGATION_HEADER}` "
                    "(the case reference: letters, digits, . _ -)."
                ),
                action=action,
                child_id=child_id,
                categories=categories,
                reason="investigation_ref_required",
            )
        region = reader.principal.region
        opened_region = (
            await opened(session).execute(
                insert(Investigation)
                .values(agency=reader.principal.agency, ref=ref, opened_region=region, opened_at=utcnow())
                # A no-op update, so RETURNING also answers for an existing case.
                .on_conflict_do_update(index_elements=["agency", "ref"], set_={"ref": ref})
                .returning(col(Investigation.opened_region))
            )
        ).scalar_one()
        # References are per agency, so another agency's identical string is another case. Within
        # the agency a case is shared along one line of regions (a province and its counties), not
        # between sibling regions, whose reads would otherwise hide under a case they cannot close.
        if not (region.startswith(opened_region) or opened_region.startswith(region)):
            await self._refuse(
                reader,
                InvestigationNotAllowed("This case reference belongs to another region of your agency."),
                action=action,
                child_id=child_id,
                categories=categories,
                reason="investigation_not_allowed",
            )
        return ref

    async def _break_glass(
        self,
        session: AsyncSession | OnDemandSession,
        reader: Reader,
        *,
        action: str,
        child_id: uuid.UUID,
        categories: Sequence[DataCategory],
    ) -> BreakGlass | None:
        raw = reader.break_glass_raw
        if raw is None:
            return None
        principal = reader.principal
        if (
            Scope.break_glass not in principal.scopes
            or reader.agency_kind not in self.policy.break_glass.agency_kinds
        ):
            await self._refuse(
                reader,
                BreakGlassNotAllowed("Only clients granted `break-glass` by an allowed agency may use it."),
                action=action,
                child_id=child_id,
                categories=categories,
                reason="break_glass_not_allowed",
            )
        try:
            return self._parse_break_glass(raw)
        except InvalidBreakGlass as exc:
            await self._refuse(
                reader,
                exc,
                action=action,
                child_id=child_id,
                categories=categories,
                reason="invalid_break_glass",
            )

    async def _within_daily_limit(
        self,
        session: AsyncSession | OnDemandSession,
        reader: Reader,
        *,
        action: str,
        child_id: uuid.UUID,
        categories: Sequence[DataCategory],
    ) -> None:
        # Serialise this client's break-glass decisions until the request commits its review row,
        # so concurrent requests cannot all slip under the limit.
        session = opened(session)
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('break-glass:' || :client))"),
            {"client": reader.principal.client_id},
        )
        since = utcnow() - timedelta(days=1)
        used = (
            await session.execute(
                select(func.count())
                .select_from(BreakGlassReview)
                .where(
                    col(BreakGlassReview.client_id) == reader.principal.client_id,
                    col(BreakGlassReview.used_at) >= since,
                )
            )
        ).scalar_one()
        if used >= self.break_glass_daily_limit:
            await self._refuse(
                reader,
                BreakGlassLimit(
                    f"This client has used break-glass {used} times in 24 hours; the limit is "
                    f"{self.break_glass_daily_limit}.",
                    headers={"Retry-After": "3600"},
                ),
                action=action,
                child_id=child_id,
                categories=categories,
                reason="break_glass_limit",
            )

    async def _consents(self, reader: Reader, child_id: uuid.UUID) -> Sequence[ConsentGrant]:
        """Active consents for this child that name this reader's agency (or any). Read on every
        decision that needs them, never cached: a revocation counts from the very next read. The
        query is shared with concurrent decisions (``ACTIVE_CONSENTS_SQL``), outside the request's
        transaction: a consent is recorded and used by different requests."""
        agency = reader.principal.agency
        return [
            ConsentGrant(
                consent_id=str(row["id"]),
                categories=frozenset(DataCategory(c) for c in row["categories"]),
                purposes=frozenset(PurposeOfUse(p) for p in row["purposes"]),
            )
            for row in await self.consents.get_all(child_id)
            if row["receiving_agency"] is None or row["receiving_agency"] == agency
        ]

    @functools.cached_property
    def referral_purposes(self) -> frozenset[PurposeOfUse]:
        """Purposes for which a referral releases its categories (policy ``cases``)."""
        cases = self.policy.document.get("cases", {})
        return frozenset(PurposeOfUse(p) for p in cases.get("referral_purposes", ["child_protection"]))

    async def _referrals(
        self, session: AsyncSession | OnDemandSession, reader: Reader, case_id: uuid.UUID
    ) -> Sequence[ReferralGrant]:
        return (await self._referrals_of(session, reader, [case_id])).get(case_id, ())

    async def _referrals_of(
        self, session: AsyncSession | OnDemandSession, reader: Reader, case_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[ReferralGrant]]:
        """The open referrals to the reader of each case, in one query (a page of cases)."""
        rows = await opened(session).execute(
            text(OPEN_REFERRALS_SQL),
            {
                "case_ids": list(case_ids),
                "agency": reader.principal.agency,
                "region": reader.principal.region,
            },
        )
        found: dict[uuid.UUID, list[ReferralGrant]] = {}
        for row in rows:
            found.setdefault(row.case_id, []).append(
                ReferralGrant(
                    referral_id=str(row.id), categories=frozenset(DataCategory(c) for c in row.categories)
                )
            )
        return found

    # -- the door --------------------------------------------------------------------------

    async def record_refusal(self, reader: Reader, *, action: str, reason: str) -> None:
        """Put a refusal the door did not decide on record (e.g. a conflict that reveals that a
        record exists outside the reader's region)."""
        await self._log(reader, action=action, decision=None, reason=reason)

    async def refuse_unseen(self, reader: Reader, *, action: str, child_id: uuid.UUID | None) -> NoReturn:
        """A child that does not exist or lies outside the reader's region: 404, the same body
        either way, and the attempt is on record."""
        await self._log(reader, action=action, decision=None, child_id=child_id, reason="not_found")
        raise NotFound("No child with this id.", code="child_not_found")

    async def admit(
        self,
        session: AsyncSession | OnDemandSession,
        reader: Reader,
        *,
        action: str,
        subject: Subject,
        categories: Sequence[DataCategory],
        case_id: uuid.UUID | None = None,
    ) -> Decision:
        """Decide a read of one child and record it. Raises 404 outside the reader's region,
        400 for a missing or unknown purpose or a malformed break-glass, 403 when nothing may be
        released or break-glass is not allowed, 429 past the daily break-glass limit.

        ``case_id`` names the case the read belongs to (a case, its referrals, an event linked to
        it): the case's open referrals to the reader then release their categories (ground
        ``referral``), for this read only."""
        principal = reader.principal
        if not principal.covers_region(subject.region_code):
            await self.refuse_unseen(reader, action=action, child_id=subject.child_id)
        owner = principal.agency == subject.owner_agency
        purpose: PurposeOfUse | None = None
        glass: BreakGlass | None = None
        investigation_ref: str | None = None
        if not owner:
            purpose = await self._stated_purpose(
                reader, action=action, child_id=subject.child_id, categories=categories
            )
            glass = await self._break_glass(
                session, reader, action=action, child_id=subject.child_id, categories=categories
            )
            investigation_ref = await self._investigation(
                session, reader, purpose, action=action, child_id=subject.child_id, categories=categories
            )
        decision = self._decide(reader, subject, categories, purpose)
        # Statute alone settles most reads (the custody check among them); consents and
        # break-glass are consulted only for what it leaves withheld, keeping the hot path short.
        if decision.withheld and decision.cross_agency and purpose is not None:
            consents = await self._consents(reader, subject.child_id)
            decision = self._decide(reader, subject, categories, purpose, consents=consents)
            referrals: Sequence[ReferralGrant] = ()
            if decision.withheld and case_id is not None and purpose in self.referral_purposes:
                referrals = await self._referrals(session, reader, case_id)
                if referrals:
                    decision = self._decide_now(
                        reader, subject, categories, purpose, consents, None, referrals
                    )
            if decision.withheld and glass is not None:
                await self._within_daily_limit(
                    session, reader, action=action, child_id=subject.child_id, categories=categories
                )
                decision = self._decide_now(reader, subject, categories, purpose, consents, glass, referrals)
        log_id: int | None = None
        if decision.cross_agency or decision.outcome is Outcome.deny:
            log_id = await self._log(
                reader,
                action=action,
                decision=decision,
                child_id=subject.child_id,
                investigation_ref=investigation_ref,
            )
        if decision.break_glass_used and glass is not None:
            writer = opened(session)
            writer.add(
                BreakGlassReview(
                    access_log_id=log_id,
                    request_id=reader.request_id,
                    client_id=principal.client_id,
                    agency=principal.agency,
                    child_id=subject.child_id,
                    action=action,
                    reason_code=BreakGlassReason(glass.reason_code),
                    justification=glass.justification,
                    categories=[
                        str(c) for c, g in decision.granted.items() if g.ground is Ground.break_glass
                    ],
                )
            )
            await writer.flush()
        if decision.outcome is Outcome.deny:
            raise AccessDenied(
                "No statute, consent or emergency allows this agency to read any of the requested "
                "data for this purpose.",
                extra=withheld_extra(decision),
            )
        return decision

    async def admit_addressed(
        self,
        session: AsyncSession | OnDemandSession,
        reader: Reader,
        *,
        action: str,
        audience: str,
        region_code: str,
        subject: Subject | None,
        categories: Sequence[DataCategory],
        case_id: uuid.UUID | None = None,
    ) -> Decision:
        """Decide a read of an event addressed to one agency (the policy's ``addressed_events``):
        its audience reads it as its own record, inside the reader's region; anyone else finds
        nothing (404, on record, the same body as for an event that does not exist). An event
        about a child goes on through :meth:`admit` with the audience as the owner; one about no
        child (an operational notice: ids of the audience's own subscriptions and deliveries)
        carries no personal data, and nothing is logged for it."""
        child_id = subject.child_id if subject is not None else None
        if reader.principal.agency != audience or not reader.principal.covers_region(region_code):
            await self._log(reader, action=action, decision=None, child_id=child_id, reason="not_addressed")
            raise NotFound("No event with this id.", code="event_not_found")
        if subject is not None:
            own = Subject(child_id=subject.child_id, owner_agency=audience, region_code=subject.region_code)
            return await self.admit(
                session, reader, action=action, subject=own, categories=categories, case_id=case_id
            )
        return Decision(outcome=Outcome.allow, purpose=None, granted={}, withheld={}, cross_agency=False)

    def _decide(
        self,
        reader: Reader,
        subject: Subject,
        categories: Sequence[DataCategory],
        purpose: PurposeOfUse | None,
        *,
        consents: Sequence[ConsentGrant] = (),
        glass: BreakGlass | None = None,
    ) -> Decision:
        if consents or glass is not None:
            return self._decide_now(reader, subject, categories, purpose, consents, glass)
        # Without consents or break-glass a decision depends only on who reads whose record, for
        # what and which categories: a handful of shapes, each decided once (decisions are never
        # changed after they are made). The bound only guards against an unforeseen variety.
        key = (reader.principal.agency, reader.agency_kind, subject.owner_agency, tuple(categories), purpose)
        decision = self._decisions.get(key)
        if decision is None:
            if len(self._decisions) >= _DECISION_CACHE_SIZE:
                self._decisions.clear()
            decision = self._decisions[key] = self._decide_now(reader, subject, categories, purpose, (), None)
        return decision

    def _decide_now(
        self,
        reader: Reader,
        subject: Subject,
        categories: Sequence[DataCategory],
        purpose: PurposeOfUse | None,
        consents: Sequence[ConsentGrant],
        glass: BreakGlass | None,
        referrals: Sequence[ReferralGrant] = (),
    ) -> Decision:
        return decide(
            self.policy,
            reader_agency=reader.principal.agency,
            reader_kind=reader.agency_kind,
            owner_agency=subject.owner_agency,
            categories=categories,
            purpose=purpose,
            consents=consents,
            break_glass=glass,
            referrals=referrals,
        )

    async def admit_list_query(
        self,
        reader: Reader,
        *,
        action: str,
        query: Mapping[str, Any],
        required: DataCategory | None,
    ) -> None:
        """Check a list query before it runs. A reader outside civil affairs (which keeps the
        registry) states a valid purpose, and a filter that reveals a category (e.g. a registry
        category) needs a statute for it: refused on record otherwise, whatever would match."""
        wanted = [required] if required is not None else []
        if reader.break_glass_raw is not None:
            await self._refuse(
                reader,
                InvalidBreakGlass("Break-glass opens one child's record at a time, never a list."),
                action=action,
                child_id=None,
                categories=wanted,
                reason="invalid_break_glass",
                query=query,
            )
        if reader.agency_kind == AgencyKind.civil_affairs:
            return
        purpose = await self._stated_purpose(
            reader, action=action, child_id=None, categories=wanted, query=query
        )
        if required is not None and self.policy.statute(reader.agency_kind, required, purpose) is None:
            await self._refuse(
                reader,
                AccessDenied(
                    f"The filter reveals {required} data, which this reader may not see for this purpose.",
                    code="filter_not_allowed",
                ),
                action=action,
                child_id=None,
                categories=wanted,
                reason="filter_not_allowed",
                query=query,
            )

    async def admit_many(
        self,
        session: AsyncSession | OnDemandSession,
        reader: Reader,
        *,
        action: str,
        subjects: Sequence[Subject],
        categories: Sequence[DataCategory],
        query: Mapping[str, Any],
        required: DataCategory | None = None,
    ) -> dict[uuid.UUID, Decision]:
        """Decide a list read (the subjects are already confined to the reader's region). One
        access-log record names the query and every cross-agency child returned, with the
        categories released for any of them.

        Lists are decided on statute and consent only: break-glass is for one child at a time.
        ``required`` is a category the query itself reveals (filtering by a registry category
        discloses it): a reader who may not see it by statute is refused, on record.
        """
        principal = reader.principal
        foreign = [s for s in subjects if s.owner_agency != principal.agency]
        purpose: PurposeOfUse | None = None
        if foreign or (not subjects and reader.purpose_raw is not None):
            purpose = await self._stated_purpose(
                reader, action=action, child_id=None, categories=categories, query=query
            )
        investigation_ref = None
        if foreign and purpose is not None:
            investigation_ref = await self._investigation(
                session, reader, purpose, action=action, child_id=None, categories=categories
            )
        decisions = {s.child_id: self._decide(reader, s, categories, purpose) for s in subjects}
        needing = [
            s for s in subjects if decisions[s.child_id].withheld and decisions[s.child_id].cross_agency
        ]
        if needing and purpose is not None:
            # Concurrently, so the whole page's consents come back in one batched query.
            found = await asyncio.gather(*(self._consents(reader, s.child_id) for s in needing))
            for s, consents in zip(needing, found, strict=True):
                decisions[s.child_id] = self._decide(reader, s, categories, purpose, consents=consents)
        if not foreign:
            return decisions
        statute = self._decide(reader, foreign[0], categories, purpose)
        if required is not None and not statute.allows(required):
            await self._refuse(
                reader,
                AccessDenied(
                    f"The filter reveals {required} data, which this reader may not see for this purpose.",
                    code="filter_not_allowed",
                ),
                action=action,
                child_id=None,
                categories=[required],
                reason="filter_not_allowed",
                query=query,
            )
        released = [s for s in foreign if decisions[s.child_id].outcome is not Outcome.deny]
        if not released:
            await self._log(
                reader,
                action=action,
                decision=statute,
                child_ids=[],
                query=query,
                investigation_ref=investigation_ref,
            )
            raise AccessDenied(
                "No statute, consent or emergency allows this agency to read children's data "
                "for this purpose.",
                extra=withheld_extra(statute),
            )
        # One record per group of children released on the same grounds (usually one for the
        # page): each child's entry in the guardian's report names exactly what was read of it.
        groups: dict[tuple[tuple[str, str, str], ...], list[Subject]] = {}
        for s in released:
            granted = decisions[s.child_id].granted
            key = tuple(sorted((str(c), str(g.ground), g.ref) for c, g in granted.items()))
            groups.setdefault(key, []).append(s)
        await self.audit.record_many(
            [
                self._record(
                    reader,
                    action=action,
                    decision=decisions[members[0].child_id],
                    child_ids=[m.child_id for m in members],
                    query=query,
                    investigation_ref=investigation_ref,
                )
                for members in groups.values()
            ]
        )
        return {cid: d for cid, d in decisions.items() if d.outcome is not Outcome.deny}
