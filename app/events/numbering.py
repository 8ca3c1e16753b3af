"""Numbering events after their transaction commits (migration 0020).

A transaction only inserts its events; ``outbox_event_number()`` gives every committed
unnumbered event its sequence number in one pass, one pass at a time, so numbers become visible
in order and without holes while publishers commit side by side instead of one disk flush after
another. Whoever wrote events numbers them right after committing: :func:`after_commit` for a
session that called :func:`app.services.outbox.emit` (or ``emit_many``), :func:`number` with the
event's id for a publish, whose receipt carries the number. The delivery worker numbers before
each fan-out, which covers a process that died between its commit and its pass, and the pull
feed before it reads the head. A pass with nothing to number takes no lock and writes nothing.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

logger = logging.getLogger(__name__)

NUMBER = "SELECT outbox_event_number(CAST(:own AS uuid))"
"""Own's number when ``own`` is given (NULL: no such event), else the head (0 before any event)."""
NUMBER_SQL = text(NUMBER)

EMITTED = "childlink.outbox_emitted"
"""``session.info`` key: the session wrote events that its commit leaves to be numbered."""


def mark_emitted(session: AsyncSession) -> None:
    session.info[EMITTED] = True


async def number(conn: AsyncConnection, own: uuid.UUID | None = None) -> int | None:
    """One numbering pass on ``conn`` (give it an autocommit connection: in a transaction the
    pass's lock is held to its end); returns own's number, or the head when ``own`` is None."""
    value = (await conn.execute(NUMBER_SQL, {"own": own})).scalar_one()
    return None if value is None else int(value)


async def head(conn: AsyncConnection) -> int:
    """Number what has committed, then the highest number given."""
    value = await number(conn)
    return value or 0


async def after_commit(session: AsyncSession) -> None:
    """Number the events a just-committed session wrote. A failure is only logged: the change
    is committed, and the delivery worker numbers whatever is left at its next round."""
    if not session.info.pop(EMITTED, False):
        return
    try:
        conn = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        await number(conn)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:  # a pool timeout is SQLAlchemy's own
        logger.warning(
            "numbering events after commit failed (%s); the worker numbers them", type(exc).__name__
        )
