"""What one ``audit:read`` reader may see of the access log and of break-glass uses.

Oversight is scoped like every other read (DESIGN §3, region scope):

- **Region.** A record is inside the reader's region when a child it names (``child_id``, or one
  of a list's ``child_ids``) is registered there now, i.e. its ``region_code`` starts with the
  token's region prefix. The log stores child ids, not regions, so the region comes from the
  registry at read time: an oversight body sees the history of the children it now covers. A
  record naming no registered child (a refused list query, a probe with an unknown id) is seen
  only by nationwide readers.
- **Agency.** A reader of the platform, or of an agency kind the access policy lists in
  ``oversight_agency_kinds``, sees every agency's records in its region. Any other reader sees the
  reads its own agency made, and the reads by others of the children its agency keeps (the
  record's ``owner_agency``: civil affairs for the registry).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Text, any_, column, exists, or_, select, table
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped

from app.models.agency import AgencyKind

Column = ColumnElement[Any] | Mapped[Any]
"""A record's column: of a table clause (the access log) or of an ORM model (break-glass uses)."""

# The registry columns oversight needs, as a table clause: this package reads them, it does not
# own the Child model.
_child = table(
    "child",
    column("id", PgUUID(as_uuid=True)),
    column("region_code", Text),
    column("owner_agency", Text),
)


@dataclass(frozen=True, slots=True)
class OversightScope:
    agency: str
    """The reader's agency code."""
    region: str
    """The token's region prefix; empty for the whole country."""
    all_agencies: bool
    """The platform or an oversight kind named by the policy: every agency's records."""

    @classmethod
    def of(
        cls, *, agency: str, agency_kind: str, region: str, oversight_kinds: Iterable[str]
    ) -> OversightScope:
        wide = agency_kind == AgencyKind.platform or agency_kind in set(oversight_kinds)
        return cls(agency=agency, region=region, all_agencies=wide)

    @property
    def unbounded(self) -> bool:
        return self.all_agencies and not self.region

    def visible(
        self,
        *,
        agency: Column,
        child_id: Column,
        child_ids: Column | None = None,
    ) -> ColumnElement[bool] | None:
        """The condition on a record's reading ``agency`` and children that keeps it inside this
        scope; None when nothing needs to be filtered out."""
        if self.unbounded:
            return None
        c = _child.c
        names = c.id == child_id if child_ids is None else or_(c.id == child_id, c.id == any_(child_ids))
        conditions: list[ColumnElement[bool]] = [names]
        if self.region:
            conditions.append(c.region_code.startswith(self.region, autoescape=True))
        if not self.all_agencies:
            conditions.append(or_(agency == self.agency, c.owner_agency == self.agency))
        condition: ColumnElement[bool] = exists().where(*conditions)
        if not self.region and not self.all_agencies:
            condition = or_(condition, agency == self.agency)  # its own reads, with or without a child
        return condition

    async def children_inside(self, session: AsyncSession, child_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Those of ``child_ids`` registered inside this scope's region (all of them nationwide)."""
        wanted = set(child_ids)
        if not self.region or not wanted:
            return wanted
        rows = await session.execute(
            select(_child.c.id).where(
                _child.c.id.in_(wanted),
                _child.c.region_code.startswith(self.region, autoescape=True),
            )
        )
        return set(rows.scalars().all())
