"""``childlink audit verify``: prove the access log is as written, or name the first bad row.

Verification first seals (:func:`~app.audit.sealer.seal_committed`), so every row committed
before it started is covered, then, in one REPEATABLE READ snapshot:

1. walks the chain in position order and, for each entry, recomputes the row's hash from its
   stored content and the chain hash from the previous one. It stops at the first of:

   - **deleted**: a position is missing (rows removed together with their chain entries), or an
     entry's row is gone;
   - **edited**: the row's content no longer matches its ``row_hash``, or the ``row_hash`` no
     longer matches the chain (the row and its hash were both rewritten);
   - **rewritten**: the chain disagrees with an anchor (a position and chain hash recorded
     earlier outside the database);

2. looks for **inserted** rows: a row without a chain entry whose transaction is older than the
   highest sealed watermark cannot be legitimate (the sealer had sealed everything below it),
   so it was slipped in behind the chain.

What no check here can catch without help: a row forged by someone able to write the database,
with a correct row hash, appended as if it were new (a fresh transaction) is sealed into the chain
like any other and is indistinguishable from a genuine one; so is a chain rewritten, with correct
hashes, from some position to its end. Only an **anchor** detects them: a chain head (position
and hash) that an earlier verify printed, kept where the database's administrators cannot edit
it, and passed back with ``--anchor``. Everything up to the anchor's position is then proved as it
was when the anchor was taken; rows after the newest anchor are only as trustworthy as the
database. :data:`ANCHOR_NOTE` says so to the operator.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from app.audit.records import content_from_row, row_hash
from app.audit.sealer import GENESIS, chain_hash, seal_committed

ANCHOR_NOTE = (
    "without --anchor this proves the chain consistent, not authentic: a forged row with a correct "
    "hash appended as if new, or a chain rewritten from some position to its end, is detected only "
    "against an anchor. Keep the chain head above outside the database (where its administrators "
    "cannot edit it) and pass it next time as --anchor POSITION:HASH."
)


def anchored_note(anchor: tuple[int, str]) -> str:
    return (
        f"anchored at position {anchor[0]}: the log up to it is as it was when that head was taken; "
        "rows after it are only as trustworthy as the database. Keep this run's head as the next anchor."
    )


_WALK = """
SELECT c.position, c.row_id, c.chain_hash, c.watermark::text AS watermark,
       a.id, a.logged_at, a.request_id, a.client_id, a.agency, a.action, a.child_id, a.child_ids,
       a.query, a.purpose, a.decision, a.reason, a.categories_returned, a.categories_withheld,
       a.basis, a.break_glass, a.investigation_ref, a.row_hash
FROM access_log_chain AS c
LEFT JOIN access_log AS a ON a.id = c.row_id
ORDER BY c.position
"""

_UNSEALED = """
SELECT a.id, a.txid >= $1::text::xid8 AS pending
FROM access_log AS a
WHERE NOT EXISTS (SELECT 1 FROM access_log_chain AS c WHERE c.row_id = a.id)
ORDER BY a.id
"""


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong; ``kind`` is deleted, edited, inserted or rewritten."""

    kind: str
    detail: str
    position: int | None = None
    row_id: int | None = None

    def describe(self) -> str:
        where = []
        if self.row_id is not None:
            where.append(f"row {self.row_id}")
        if self.position is not None:
            where.append(f"chain position {self.position}")
        return f"{self.kind} ({', '.join(where) or 'unknown row'}): {self.detail}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    verified: int  # chain entries whose row and hash checked out
    unsealed: int  # committed rows still waiting for the sealer (normal while writes run)
    head_position: int
    head_hash: str
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        if self.problem is not None:
            return (
                f"access log TAMPERED: {self.problem.describe()} ({self.verified} entries verified before it)"
            )
        return (
            f"access log intact: {self.verified} records verified, {self.unsealed} not yet sealed; "
            f"chain head {self.head_position}:{self.head_hash}"
        )


def parse_anchor(value: str) -> tuple[int, str]:
    """``POSITION:HASH`` as printed by verify."""
    position, sep, digest = value.partition(":")
    if not sep or not position.isdigit() or len(digest) != 64:
        raise ValueError("an anchor is POSITION:HASH, as printed by `audit verify`")
    return int(position), digest.lower()


async def verify(
    conn: asyncpg.Connection,
    *,
    anchor: tuple[int, str] | None = None,
    seal_first: bool = True,
    seal_within: float = 10.0,
) -> VerifyReport:
    """Check the whole log; see the module docstring for what is detected."""
    if seal_first:
        await seal_committed(conn, within=seal_within)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        problem: Problem | None = None
        expected, previous, watermark = 1, GENESIS, 0
        async for row in conn.cursor(_WALK, prefetch=2000):
            position = row["position"]
            problem = _check_entry(row, expected, previous, anchor)
            if problem is not None:
                break
            previous = row["chain_hash"]
            watermark = max(watermark, int(row["watermark"]))
            expected = position + 1
        verified = expected - 1
        if problem is None and anchor is not None and anchor[0] > verified:
            problem = Problem(
                "deleted",
                f"the chain ends at position {verified}, before the anchor at {anchor[0]}: "
                "its last entries were removed",
                position=verified + 1,
            )
        unsealed = 0
        for row in await conn.fetch(_UNSEALED, str(watermark)):
            if row["pending"]:
                unsealed += 1
            elif problem is None:
                problem = Problem(
                    "inserted",
                    "the row has no chain entry although its transaction is older than the sealed "
                    "watermark: it was added behind the chain's back",
                    row_id=row["id"],
                )
    return VerifyReport(verified, unsealed, verified, previous, problem)


def _check_entry(
    row: asyncpg.Record, expected: int, previous: str, anchor: tuple[int, str] | None
) -> Problem | None:
    position, row_id = row["position"], row["row_id"]
    if position != expected:
        missing = f"{expected}" if position == expected + 1 else f"{expected} to {position - 1}"
        return Problem(
            "deleted",
            f"chain position {missing} is missing: chain entries were deleted, with or without their rows",
            position=expected,
        )
    if row["id"] is None:
        return Problem("deleted", "the row sealed at this position is gone", position, row_id)
    if row_hash(content_from_row(row), row["logged_at"]) != row["row_hash"]:
        return Problem("edited", "the row's content does not match its row hash", position, row_id)
    if chain_hash(previous, row["row_hash"]) != row["chain_hash"]:
        return Problem(
            "edited",
            "the row hash does not match the chain: the row and its hash were rewritten",
            position,
            row_id,
        )
    if anchor is not None and position == anchor[0] and row["chain_hash"] != anchor[1]:
        return Problem(
            "rewritten", "the chain hash differs from the anchor recorded for this position", position, row_id
        )
    return None
