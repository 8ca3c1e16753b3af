"""Events addressed to one agency (``outbox_event.audience``, CloudEvents ``childlinkaudience``).

Most events go to every subscription whose filters match. An *addressed* event is for one agency
alone: an operational notice about its own subscriptions (``platform.delivery.dead-lettered``,
``platform.subscription.disabled``) or a notice that another agency read one of its children
(``platform.access.recorded``). The rule, in one place for every path that reads events:

* **Fan-out and replay** queue it only for subscriptions of its audience whose *types* match and
  whose reading region covers the event's region, never for the subscription it is about
  (``about_subscription``). A subscription's region and category filters select among the
  children it follows; an addressed event is about the agency's own business, so they do not
  apply to it. An agency that wants these notices subscribes to their types
  (``cn.gov.childlink.platform.delivery.*`` ...), on its feed or on another webhook.
* **The pull feed** shows it only to its audience; **``GET /v1/events/{id}``** and the child's
  timeline are 404 / absent for everyone else.
* **The door** (:meth:`app.access.door.Door.admit_addressed`) decides every read: the audience
  reads it as its own record; any other agency is refused as if it did not exist, on record.

**No loops.** An operational event reports a delivery or a subscription; when the delivery of an
operational event itself is dead-lettered, nothing further is emitted (:func:`is_operational`):
otherwise a receiver that rejects operational events would be told so by more of them, without
end. A subscription disabled while delivering operational events is still reported (once per
disabling: it must be re-enabled by hand before it can be disabled again), so the chain is bounded
by the agency's number of subscriptions.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.access.decision import Decision
from app.access.door import Door
from app.access.reading import Reader
from app.db import OnDemandSession
from app.events.envelope import StoredEvent
from app.events.spec import PREFIX

OPERATIONAL_PREFIXES = (f"{PREFIX}platform.delivery.", f"{PREFIX}platform.subscription.")
"""Types that report on the delivery machinery itself (see "No loops" above)."""


def is_operational(event_type: str) -> bool:
    return event_type.startswith(OPERATIONAL_PREFIXES)


def match_sql(*, subscription: str, agency: str, region: str, reader_region: str, categories: str) -> str:
    """The SQL condition under which event ``e`` goes to a subscription (its type patterns are
    checked apart). The arguments are SQL expressions for the subscription's id, agency, region
    prefix, reading region and categories."""
    return f"""(CASE WHEN e.audience IS NULL THEN
        e.region_code LIKE {region} || '%'
        AND (cardinality({categories}) = 0 OR e.data_categories && {categories})
    ELSE
        e.audience = {agency} AND e.region_code LIKE {reader_region} || '%'
        AND e.about_subscription IS DISTINCT FROM {subscription}
    END)"""


async def admit_event(
    door: Door,
    session: AsyncSession | OnDemandSession,
    reader: Reader,
    event: StoredEvent,
    *,
    action: str,
) -> Decision:
    """The door's decision on one read of ``event`` (raises as the door does)."""
    if event.audience is not None:
        return await door.admit_addressed(
            session,
            reader,
            action=action,
            audience=event.audience,
            region_code=event.region_code,
            subject=event.subject_for_door() if event.subject is not None else None,
            categories=event.data_categories,
            case_id=event.case_id,
        )
    return await door.admit(
        session,
        reader,
        action=action,
        subject=event.subject_for_door(),
        categories=event.data_categories,
        case_id=event.case_id,
    )


def addressed_to(event: StoredEvent, agency: str) -> bool:
    return event.audience is None or event.audience == agency
