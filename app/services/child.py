"""The child registry: register, correct, exit, list and look up children.

Civil affairs writes; every read goes through the access layer's door (``app.access.door``),
which decides it and records it before anything is rendered.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import and_, func, literal_column, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.access.decision import Decision
from app.access.door import Door
from app.access.reading import Reader, Subject
from app.errors import BadRequest, Conflict, Forbidden, PreconditionFailed, PreconditionRequired
from app.models import resident_id
from app.models.agency import AgencyKind
from app.models.child import (
    CATEGORY_DATA,
    CHILD_CATEGORIES,
    FIELD_CATEGORIES,
    AccessSummary,
    Child,
    ChildCategory,
    ChildCreate,
    ChildExit,
    ChildPublic,
    ChildStatus,
    ChildUpdate,
    child_base_fields,
)
from app.models.common import utcnow
from app.services import cursor as cursor_codec
from app.services import outbox

MAX_PAGE = 200
# A county's and a township's code widths: a list of exactly one of them reads its own index in
# page order (migration 0019); a province, a city or a village reads by the prefix.
DIVISION_WIDTHS = (6, 9)


def etag(child: Child) -> str:
    return f'"{child.version}"'


def access_document(decision: Decision) -> dict[str, Any]:
    """What the access layer released and withheld, and on what grounds, in the JSON shape of
    :class:`AccessSummary` (for responses serialised without building models). Shared: never
    change it."""
    return decision.document


def access_summary(decision: Decision) -> AccessSummary:
    return AccessSummary.model_validate(access_document(decision))


def render(child: Child, decision: Decision) -> ChildPublic:
    """The record as this reader may see it: fields of withheld categories are left out."""
    data: dict[str, Any] = child_base_fields(child)
    for field, category in FIELD_CATEGORIES.items():
        if decision.allows(category):
            data[field] = getattr(child, field)
    visible = [c for c in child.categories if decision.allows(CATEGORY_DATA[ChildCategory(c)])]
    data["categories"] = visible or None
    data["access"] = access_summary(decision)
    return ChildPublic(**data)


def subject(child: Child) -> Subject:
    return Subject(child_id=child.id, owner_agency=child.owner_agency, region_code=child.region_code)


async def _released(
    session: AsyncSession, door: Door, reader: Reader, child: Child
) -> tuple[Child, ChildPublic]:
    """The record as this reader may see it, decided (and, across agencies, logged) by the door."""
    decision = await door.admit(
        session, reader, action="child.read", subject=subject(child), categories=CHILD_CATEGORIES
    )
    return child, render(child, decision)


async def _load_owned(
    session: AsyncSession, door: Door, reader: Reader, child_id: uuid.UUID, action: str
) -> Child:
    """The child, locked for change, if the reader's agency keeps its record."""
    _require_registrar(reader)
    child = await _load_visible(session, door, reader, child_id, action, for_update=True)
    if child.owner_agency != reader.principal.agency:
        raise Forbidden("Only the agency that keeps this record may change it.", code="not_record_owner")
    return child


def _require_registrar(reader: Reader) -> None:
    if reader.agency_kind != AgencyKind.civil_affairs:
        raise Forbidden("Only civil affairs keeps the child registry.", code="registry_write_not_allowed")


def _require_region(reader: Reader, region_code: str) -> None:
    if not reader.principal.covers_region(region_code):
        raise Forbidden("The region code lies outside the caller's region.", code="outside_region")


async def _duplicate(
    session: AsyncSession, door: Door, reader: Reader, number: str, exclude: uuid.UUID | None = None
) -> None:
    """409 for a number already registered; the existing record is named only when the caller
    may see it. The 409 itself says a record exists elsewhere, so that case is put on record."""
    query = select(col(Child.id), col(Child.region_code)).where(col(Child.resident_id) == number)
    if exclude is not None:
        query = query.where(col(Child.id) != exclude)
    row = (await session.execute(query)).first()
    if row is None:
        return
    visible = reader.principal.covers_region(row.region_code)
    if not visible:
        await door.record_refusal(reader, action="child.register", reason="duplicate_outside_region")
    extra = {"existing_id": str(row.id)} if visible else {}
    raise _duplicate_number(extra)


def _duplicate_number(extra: dict[str, str] | None = None) -> Conflict:
    return Conflict(
        "A child with this resident ID number is already registered.",
        code="duplicate_resident_id",
        extra=extra,
    )


async def _save(session: AsyncSession, child: Child, *, new: bool = False) -> None:
    """Flush the record (a new version unless ``new``); a concurrent registration of the same
    number surfaces here, through the unique index, as the same 409 as the checked case."""
    if not new:
        child.version += 1
        child.updated_at = utcnow()
    session.add(child)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _duplicate_number() from exc


async def _emit(
    session: AsyncSession, reader: Reader, child: Child, change: str, data: dict[str, Any]
) -> None:
    """Record a registry change (``child.registered`` …) in the outbox, in the caller's transaction."""
    await outbox.emit(
        session,
        reader.principal,
        type=f"cn.gov.childlink.civil-affairs.{change}.v1",
        subject=child.id,
        region_code=child.region_code,
        data=data,
    )


def _identity(child: Child) -> dict[str, str]:
    """Who entered or left the registry, for the agencies it is told to (the door releases each
    field to each subscriber under its own rules)."""
    return {"name": child.name, "sex": str(child.sex), "birth_date": child.birth_date.isoformat()}


async def register(
    session: AsyncSession, door: Door, reader: Reader, *, data: ChildCreate
) -> tuple[Child, ChildPublic]:
    """Add a child to the registry; emits ``child.registered`` in the caller's transaction."""
    _require_registrar(reader)
    _require_region(reader, data.region_code)
    if data.resident_id:
        await _duplicate(session, door, reader, data.resident_id)
    child = Child(
        name=data.name,
        sex=data.sex,
        birth_date=data.birth_date,
        ethnicity=data.ethnicity,
        resident_id=data.resident_id,
        region_code=data.region_code,
        address=data.address,
        school=data.school,
        categories=[str(c) for c in data.categories],
        care_arrangement=str(data.care_arrangement) if data.care_arrangement else None,
        owner_agency=reader.principal.agency,
    )
    await _save(session, child, new=True)
    await _emit(
        session,
        reader,
        child,
        "child.registered",
        {
            "child_id": str(child.id),
            "region_code": child.region_code,
            "categories": child.categories,
            **_identity(child),
        },
    )
    return await _released(session, door, reader, child)


async def _load_visible(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    child_id: uuid.UUID,
    action: str,
    *,
    for_update: bool = False,
) -> Child:
    query = select(Child).where(col(Child.id) == child_id)
    if for_update:
        query = query.with_for_update()
    child = (await session.execute(query)).scalar_one_or_none()
    if child is None or not reader.principal.covers_region(child.region_code):
        await door.refuse_unseen(reader, action=action, child_id=child_id)
    assert child is not None
    return child


async def get(
    session: AsyncSession, door: Door, reader: Reader, child_id: uuid.UUID
) -> tuple[Child, ChildPublic]:
    """One child, as this reader may see it; the read is decided and recorded by the door."""
    child = await _load_visible(session, door, reader, child_id, "child.read")
    return await _released(session, door, reader, child)


async def lookup(session: AsyncSession, door: Door, reader: Reader, *, number: str) -> ChildPublic:
    """Find a child by resident ID number (sent in a body, never a URL); 404 when absent or
    outside the reader's region."""
    child = (
        await session.execute(select(Child).where(col(Child.resident_id) == number))
    ).scalar_one_or_none()
    if child is None or not reader.principal.covers_region(child.region_code):
        await door.refuse_unseen(reader, action="child.lookup", child_id=None)
    assert child is not None
    decision = await door.admit(
        session, reader, action="child.lookup", subject=subject(child), categories=CHILD_CATEGORIES
    )
    return render(child, decision)


def _check_if_match(child: Child, if_match: str | None) -> None:
    if if_match is None:
        raise PreconditionRequired("Send `If-Match` with the ETag from your last read.")
    tags = [t.strip().removeprefix("W/") for t in if_match.split(",")]
    if "*" not in tags and etag(child) not in tags:
        raise PreconditionFailed(
            "The record changed since you read it; read it again and reapply your change.",
            extra={"current_etag": etag(child)},
        )


async def update_child(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    child_id: uuid.UUID,
    *,
    data: ChildUpdate,
    if_match: str | None,
) -> tuple[Child, ChildPublic]:
    """Apply a partial update guarded by ``If-Match``; emits ``child.updated`` naming the changed
    fields (not their values)."""
    child = await _load_owned(session, door, reader, child_id, "child.update")
    _check_if_match(child, if_match)
    if child.status == ChildStatus.exited:
        raise Conflict("An exited record is read-only.", code="child_exited")
    changes = data.model_dump(exclude_unset=True)
    if any(changes.get(k, "x") is None for k in ("name", "sex", "birth_date", "region_code", "categories")):
        raise BadRequest(
            "name, sex, birth_date, region_code and categories cannot be cleared.", code="required_field"
        )
    if "region_code" in changes:
        _require_region(reader, changes["region_code"])
    current = {
        "birth_date": child.birth_date,
        "sex": child.sex,
        "resident_id": child.resident_id,
        "categories": child.categories,
        "care_arrangement": child.care_arrangement,
    }
    merged = {**current, **changes}
    number = merged.get("resident_id")
    if number:
        number = resident_id.normalize(number)
        try:
            birth, sex = resident_id.parse(number)
        except ValueError as exc:
            raise BadRequest(str(exc), code="invalid_resident_id") from exc
        if birth != merged["birth_date"] or sex != merged["sex"]:
            raise BadRequest(
                "The resident ID number does not agree with birth_date and sex.", code="invalid_resident_id"
            )
        if "resident_id" in changes:
            changes["resident_id"] = number
            await _duplicate(session, door, reader, number, exclude=child.id)
    categories = merged["categories"]
    if merged.get("care_arrangement") and ChildCategory.left_behind not in categories:
        raise BadRequest(
            "care_arrangement applies to left-behind children only.", code="invalid_care_arrangement"
        )
    for key, value in changes.items():
        if key == "categories":
            value = [str(c) for c in dict.fromkeys(value)]
        elif key in ("sex", "care_arrangement") and value is not None:
            value = str(value)
        setattr(child, key, value)
    await _save(session, child)
    await _emit(
        session,
        reader,
        child,
        "child.updated",
        {"child_id": str(child.id), "changed": sorted(changes), "version": child.version},
    )
    return await _released(session, door, reader, child)


async def exit_registry(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    child_id: uuid.UUID,
    *,
    data: ChildExit,
    if_match: str | None,
) -> tuple[Child, ChildPublic]:
    """Move a child out of the registry (退出). The record is kept, read-only; emits
    ``child.exited``."""
    child = await _load_owned(session, door, reader, child_id, "child.exit")
    if if_match is not None:
        _check_if_match(child, if_match)
    if child.status == ChildStatus.exited:
        raise Conflict("The child has already exited the registry.", code="child_exited")
    if data.exit_date > date.today():
        raise BadRequest("exit_date lies in the future.", code="invalid_exit_date")
    if data.exit_date < child.birth_date:
        raise BadRequest("exit_date is before the birth date.", code="invalid_exit_date")
    child.status = ChildStatus.exited
    child.exit_reason = str(data.reason)
    child.exit_date = data.exit_date
    child.exit_note = data.note
    await _save(session, child)
    await _emit(
        session,
        reader,
        child,
        "child.exited",
        {
            "child_id": str(child.id),
            "reason": str(data.reason),
            "exit_date": data.exit_date.isoformat(),
            "region_code": child.region_code,
            **_identity(child),
        },
    )
    return await _released(session, door, reader, child)


def _years_ago(years: int, today: date) -> date:
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


async def list_children(
    session: AsyncSession,
    door: Door,
    reader: Reader,
    *,
    region: str | None,
    category: ChildCategory | None,
    status: ChildStatus | None,
    min_age: int | None,
    max_age: int | None,
    updated_since: datetime | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[ChildPublic], str | None]:
    """Children in the reader's region matching the filters, oldest change first (so
    ``updated_since`` plus the cursor works as a sync feed). One access-log record for the page."""
    if min_age is not None and max_age is not None and min_age > max_age:
        raise BadRequest("min_age is greater than max_age.", code="invalid_age_range")
    if updated_since is not None and not 1900 <= updated_since.year <= 2200:
        raise BadRequest("updated_since is out of range.", code="invalid_updated_since")
    filters = {
        k: (str(v) if v is not None else None)
        for k, v in {
            "region": region,
            "category": category,
            "status": status,
            "min_age": min_age,
            "max_age": max_age,
            "updated_since": updated_since,
            "limit": limit,
        }.items()
        if v is not None
    }
    # Before anything is queried, so that whether the answer is empty never depends on what exists.
    await door.admit_list_query(
        reader, action="child.list", query=filters, required=CATEGORY_DATA[category] if category else None
    )
    scope = reader.principal.region
    prefix = scope
    if region:
        if region.startswith(scope):
            prefix = region
        elif not scope.startswith(region):
            return [], None  # a region disjoint from the caller's: nothing to see
    query = select(Child)
    if len(prefix) in DIVISION_WIDTHS:
        # The same children as the prefix (a code starts with it exactly when its first 6 or 9
        # digits are it), stated as the index has it: the width a literal, so that a prepared
        # statement's generic plan matches too, and without the LIKE beside it, whose estimate
        # the planner would multiply in as if the two were independent (a township's 20,000
        # children at 10,000,000 came out as 43 rows, and the plan sorted them all).
        division = func.left(col(Child.region_code), literal_column(str(len(prefix))))
        query = query.where(division == prefix)
    elif prefix:
        query = query.where(col(Child.region_code).startswith(prefix, autoescape=True))
    if category is not None:
        query = query.where(col(Child.categories).contains([str(category)]))
    if status is not None:
        query = query.where(col(Child.status) == status)
    today = date.today()
    if min_age is not None:
        query = query.where(col(Child.birth_date) <= _years_ago(min_age, today))
    if max_age is not None:
        query = query.where(col(Child.birth_date) > _years_ago(max_age + 1, today))
    if updated_since is not None:
        if updated_since.tzinfo is None:
            updated_since = updated_since.replace(tzinfo=UTC)
        query = query.where(col(Child.updated_at) >= updated_since)
    if cursor:
        stamp, ident = cursor_codec.decode(cursor)
        query = query.where(
            or_(col(Child.updated_at) > stamp, and_(col(Child.updated_at) == stamp, col(Child.id) > ident))
        )
    query = query.order_by(col(Child.updated_at), col(Child.id)).limit(limit + 1)
    rows: Sequence[Child] = (await session.execute(query)).scalars().all()
    page = list(rows[:limit])
    categories = list(CHILD_CATEGORIES)
    decisions = await door.admit_many(
        session,
        reader,
        action="child.list",
        subjects=[subject(c) for c in page],
        categories=categories,
        query=filters,
        required=CATEGORY_DATA[category] if category is not None else None,
    )
    items = [render(c, decisions[c.id]) for c in page if c.id in decisions]
    next_cursor = cursor_codec.encode(page[-1].updated_at, page[-1].id) if len(rows) > limit else None
    return items, next_cursor


async def mark_updated(session: AsyncSession, child_id: uuid.UUID) -> None:
    """Touch ``updated_at`` (a guardianship change is a change of the child's record)."""
    await session.execute(update(Child).where(col(Child.id) == child_id).values(updated_at=utcnow()))


async def require_child(
    session: AsyncSession, door: Door, reader: Reader, child_id: uuid.UUID, action: str
) -> Child:
    return await _load_visible(session, door, reader, child_id, action)
