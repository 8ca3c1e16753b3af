"""An outbox row as the access layer sees it (a :class:`Subject` and its categories) and as a
receiver sees it (a CloudEvents envelope, redacted to what the decision allows)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.access.reading import Subject
from app.events import catalog
from app.models.vocabulary import DataCategory

EVENT_COLUMNS = (
    "id, seq, type, source, subject, time, data, data_categories, region_code, "
    "publisher_agency, publisher_event_id, case_id, audience"
)
"""The outbox columns :meth:`StoredEvent.from_row` needs, for SELECTs that load events."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: uuid.UUID
    seq: int
    type: str
    source: str
    subject: uuid.UUID | None
    time: datetime
    data: dict[str, Any]
    data_categories: tuple[DataCategory, ...]
    region_code: str
    publisher_agency: str
    publisher_event_id: str | None
    case_id: uuid.UUID | None = None
    """The case the event belongs to (``childlinkcase``)."""
    audience: str | None = None
    """The one agency the event is addressed to (``childlinkaudience``), read by it as its own."""

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> StoredEvent:
        return cls(
            id=row["id"],
            seq=int(row["seq"]),
            type=row["type"],
            source=row["source"],
            subject=row["subject"],
            time=row["time"],
            data=dict(row["data"]),
            data_categories=tuple(DataCategory(c) for c in row["data_categories"]),
            region_code=row["region_code"] or "",
            publisher_agency=row["publisher_agency"],
            publisher_event_id=row["publisher_event_id"],
            case_id=row.get("case_id"),
            audience=row.get("audience"),
        )

    def subject_for_door(self) -> Subject:
        """The publishing agency owns what it published: it reads its own events in full, every
        other agency reads them as a cross-agency read. An addressed event is its audience's own
        (the door lets nobody else read it)."""
        assert self.subject is not None
        return Subject(
            child_id=self.subject,
            owner_agency=self.audience or self.publisher_agency,
            region_code=self.region_code,
        )


def redact(
    event: StoredEvent, allowed: Collection[DataCategory]
) -> tuple[dict[str, Any], list[DataCategory]]:
    event_type = catalog.get(event.type)
    if event_type is None:
        # Not in the catalog (an old type since removed): all or nothing on its stored categories.
        if all(c in allowed for c in event.data_categories):
            return dict(event.data), []
        return {}, [c for c in event.data_categories if c not in allowed]
    return event_type.redact(event.data, allowed)


def envelope(event: StoredEvent, allowed: Collection[DataCategory]) -> dict[str, Any]:
    """The CloudEvents 1.0 structured-JSON body a receiver gets, JSON-ready."""
    data, withheld = redact(event, allowed)
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event.id),
        "source": event.source,
        "type": event.type,
        "subject": str(event.subject) if event.subject else None,
        "time": event.time.isoformat(),
        "datacontenttype": "application/json",
        "data": data,
        "childlinkseq": event.seq,
        "childlinkagency": event.publisher_agency,
        "childlinkregion": event.region_code or None,
    }
    if withheld:
        body["childlinkwithheld"] = ",".join(str(c) for c in withheld)
    if event.publisher_event_id:
        body["childlinkpublisherid"] = event.publisher_event_id
    if event.case_id:
        body["childlinkcase"] = str(event.case_id)
    if event.audience:
        body["childlinkaudience"] = event.audience
    return body
