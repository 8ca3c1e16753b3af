"""SQLModel tables and API schemas, one module per domain.

Importing this package registers every table on ``SQLModel.metadata`` (used by Alembic).
"""

from app.models.agency import Agency, AgencyKind
from app.models.break_glass import BreakGlassReview, Investigation
from app.models.care import HomeVisit, MissingReport, OverdueNotice
from app.models.case import Case
from app.models.child import Child
from app.models.client import ApiClient, ClientStatus
from app.models.consent import Consent
from app.models.consultation import Action, Consultation
from app.models.guardianship import Guardianship
from app.models.outbox import OutboxEvent
from app.models.referral import DeadlineStep, Referral
from app.models.report import Report, ReportIdempotency, ReportOutcome, ReportSubject
from app.models.statistics import ChildHistory, ChildTally

__all__ = [
    "Action",
    "Agency",
    "AgencyKind",
    "ApiClient",
    "BreakGlassReview",
    "Case",
    "Child",
    "ChildHistory",
    "ChildTally",
    "ClientStatus",
    "Consent",
    "Consultation",
    "DeadlineStep",
    "Guardianship",
    "HomeVisit",
    "Investigation",
    "MissingReport",
    "OutboxEvent",
    "OverdueNotice",
    "Referral",
    "Report",
    "ReportIdempotency",
    "ReportOutcome",
    "ReportSubject",
]
