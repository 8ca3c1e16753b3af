"""The demo's mandatory reports, with fixed ids so the documentation's examples
(app/openapi_report_examples.py) can name them: one for the police to acknowledge, one the
police acknowledged and can record an outcome of, and one about a child not in the registry for
civil affairs to link. They are filed and acknowledged through app/services/report.py, so
routing, the cases, the receivers' referrals and their events are what real requests make; the
clocks start at loading."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.access.door import Door, consent_lookup
from app.access.policy import load_policy
from app.access.reading import Reader
from app.audit.records import AccessRecord
from app.auth.principal import Principal
from app.models.agency import AgencyKind
from app.models.report import (
    ReportConcern,
    ReportCreate,
    ReporterIn,
    ReportSubjectIn,
    ReportUrgency,
)
from app.services import report as report_service

DEMO_REPORT_TO_ACKNOWLEDGE_ID = uuid.UUID("7a1c4e2b-9d3f-4b6a-8c5e-1f2a3b4c5d61")
"""Education reports neglect of a registered demo child; police and civil affairs have not acknowledged."""
DEMO_REPORT_ACKNOWLEDGED_ID = uuid.UUID("8b2d5f3c-0e4a-4c7b-9d6f-2a3b4c5d6e72")
"""Education reports injuries of a registered demo child; the police acknowledged (受理) it."""
DEMO_REPORT_ABOUT_SUBJECT_ID = uuid.UUID("9c3e6a4d-1f5b-4d8c-ae7a-3b4c5d6e7f83")
"""Health reports a child not in the registry, met in a township; civil affairs links it."""

_REGION = "51"


class _NoAccessLog:
    """Loading the demo makes no cross-agency read: filing decides none, and the police
    acknowledge as the lead of the report's case, reading their own record (never logged). So
    it writes no access-log record; anything that tries is a mistake in this module."""

    async def record(self, record: AccessRecord) -> int:
        raise RuntimeError("loading the demo reports makes no cross-agency read")

    async def record_many(self, records: Sequence[AccessRecord]) -> list[int]:
        raise RuntimeError("loading the demo reports makes no cross-agency read")


def _reader(agency: str, kind: AgencyKind, purpose: str | None = None) -> Reader:
    principal = Principal(
        client_id=f"demo-{agency}",
        agency=agency,
        scopes=frozenset(),
        region=_REGION,
        token_id="demo-load",  # noqa: S106 - an identifier, not a secret
        issuer="demo",
    )
    return Reader(
        principal=principal, agency_kind=str(kind), purpose_raw=purpose, break_glass_raw=None, request_id=None
    )


async def add_reports(
    session: AsyncSession, *, to_acknowledge: uuid.UUID, acknowledged: uuid.UUID, subject_region: str
) -> None:
    """File the demo reports about the given registered children and a subject met in
    ``subject_region`` (a township code); called once, after the demo agencies and children."""
    door = Door(load_policy(), _NoAccessLog(), consents=consent_lookup(""))
    now = datetime.now(UTC)
    teacher = ReporterIn(role="班主任 (class teacher)", name="王老师", phone="13800000000")
    education = _reader("education", AgencyKind.education)
    filings = [
        (
            DEMO_REPORT_TO_ACKNOWLEDGE_ID,
            education,
            ReportCreate(
                child_id=to_acknowledge,
                concern=ReportConcern.neglect,
                urgency=ReportUrgency.urgent,
                observed="Comes to school hungry and in the same clothes for a week; says nobody is at "
                "home at night (demo).",
                observed_at=now - timedelta(hours=3),
                reporter=teacher,
            ),
        ),
        (
            DEMO_REPORT_ACKNOWLEDGED_ID,
            education,
            ReportCreate(
                child_id=acknowledged,
                concern=ReportConcern.physical_abuse,
                urgency=ReportUrgency.urgent,
                observed="Bruises on both forearms, seen in the PE lesson (demo).",
                observed_at=now - timedelta(days=1),
                reporter=teacher,
            ),
        ),
        (
            DEMO_REPORT_ABOUT_SUBJECT_ID,
            _reader("health", AgencyKind.health),
            ReportCreate(
                subject=ReportSubjectIn(
                    sex="female",
                    approximate_age=9,
                    region_code=subject_region,
                    location_note="Brought to the township health centre alone (demo).",
                ),
                concern=ReportConcern.no_guardian,
                urgency=ReportUrgency.routine,
                observed="Says her grandmother went to hospital in the city and nobody looks after her "
                "(demo).",
                observed_at=now - timedelta(hours=5),
                reporter=ReporterIn(
                    role="乡镇卫生院医生 (township doctor)", name="刘医生", phone="13900000000"
                ),
            ),
        ),
    ]
    for report_id, reader, data in filings:
        await report_service.file(
            session, door, reader, data=data, idempotency_key=f"demo-{report_id}", report_id=report_id
        )
    # The police acknowledged (受理) the second report through the acknowledge service: their
    # referral is accepted (``platform.referral.accepted``), its clock now the completion deadline.
    police = _reader("police", AgencyKind.police, purpose="child_protection")
    await report_service.acknowledge(session, door, police, DEMO_REPORT_ACKNOWLEDGED_ID)
