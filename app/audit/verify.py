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
     earlier outside the database) or with a signed checkpoint (:mod:`app.audit.checkpoints`);
   - **forged**: a row sealed after a checkpoint is dated before the time by which that
     checkpoint had sealed everything (written later, backdated);

   An entry whose row sits in a partition exported to a signed archive and detached
   (:mod:`app.audit.partitions`) is checked against the hash the chain keeps for it; the archive
   itself is checked by ``audit verify --archive``.

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
database. :data:`ANCHOR_NOTE` says so to the operator. Signed checkpoints are anchors the platform
publishes itself, every few minutes, and that agencies keep.

**Set-based.** A full verify does not walk in Python: :mod:`app.audit.bulk_verify` has PostgreSQL
recompute every row and chain hash in set-based SQL over ranges, on ``workers`` connections in one
exported snapshot, and returns only the positions that may be wrong; each of those is then walked
here from its predecessor, lowest first, so the report (kind, position, words, counts) is the one
the walk from the start gives. A verify from a checkpoint (``since``), or a database that refuses
the session's temporary helpers, walks: with ``workers`` > 1 the chain is cut into position
ranges walked by that many processes, each from the stored chain hash before it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

import asyncpg

from app.audit import bulk_verify
from app.audit.checkpoints import Checkpoint
from app.audit.records import content_from_row, format_logged_at, row_hash
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
       c.row_hash AS sealed_hash, c.logged_at AS sealed_at,
       a.id, a.logged_at, a.request_id, a.client_id, a.agency, a.action, a.child_id, a.child_ids,
       a.query, a.purpose, a.decision, a.reason, a.categories_returned, a.categories_withheld,
       a.basis, a.break_glass, a.investigation_ref, a.row_hash
FROM access_log_chain AS c
LEFT JOIN access_log AS a ON a.id = c.row_id AND a.logged_at = c.logged_at
WHERE c.position > $1 AND c.position <= $2
ORDER BY c.position
"""
# Entries sealed before migration 0014 carry no time of their own: their row is found by id.
_WALK_OLD_ENTRY = "SELECT * FROM access_log WHERE id = $1"

_ENTRY = "SELECT row_id, chain_hash, watermark::text AS watermark FROM access_log_chain WHERE position = $1"
_HEAD_POSITION = "SELECT COALESCE(max(position), 0) FROM access_log_chain"
_ARCHIVED = """
SELECT range_from, range_until, first_position, last_position FROM access_log_archive
WHERE first_position IS NOT NULL
"""

_UNSEALED = """
SELECT a.id, a.txid >= $1::text::xid8 AS pending
FROM access_log AS a
WHERE NOT EXISTS (SELECT 1 FROM access_log_chain AS c WHERE c.row_id = a.id)
ORDER BY a.id
"""

RANGES_PER_WORKER = 4


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong; ``kind`` is deleted, edited, inserted, rewritten or forged."""

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
    archived: int = 0  # of the verified, entries whose rows are in exported, detached partitions

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        if self.problem is not None:
            return (
                f"access log TAMPERED: {self.problem.describe()} ({self.verified} entries verified before it)"
            )
        return (
            f"access log intact: {self.verified} records verified"
            + (f" ({self.archived} of them archived)" if self.archived else "")
            + f", {self.unsealed} not yet sealed; "
            f"chain head {self.head_position}:{self.head_hash}"
        )


def parse_anchor(value: str) -> tuple[int, str]:
    """``POSITION:HASH`` as printed by verify."""
    position, sep, digest = value.partition(":")
    if not sep or not position.isdigit() or len(digest) != 64:
        raise ValueError("an anchor is POSITION:HASH, as printed by `audit verify`")
    return int(position), digest.lower()


Archived = tuple[datetime, datetime, int, int]  # (from, until, first position, last position)


@dataclass(frozen=True, slots=True)
class _RangeResult:
    last: int  # the last position checked (the one before the problem, if any)
    last_hash: str
    watermark: int
    archived: int
    problem: Problem | None


async def _walk(
    conn: asyncpg.Connection,
    *,
    after: int,
    until: int,
    previous: str,
    marks: _Marks,
    archived: Sequence[Archived],
) -> _RangeResult:
    """Check the entries at positions ``after`` < p <= ``until``, linking from ``previous`` (the
    chain hash at ``after``), inside the caller's snapshot."""
    expected, watermark, archived_count = after + 1, 0, 0
    problem: Problem | None = None
    async for row in conn.cursor(_WALK, after, until, prefetch=5000):
        if row["id"] is None and row["sealed_at"] is None and row["position"] == expected:
            old = await conn.fetchrow(_WALK_OLD_ENTRY, row["row_id"])
            if old is not None:
                row = {**dict(old), **{k: row[k] for k in ("position", "row_id", "chain_hash", "watermark")}}
                row["sealed_hash"] = row["sealed_at"] = None
        problem = _check_entry(row, expected, previous, archived) or marks.check(row)
        if problem is not None:
            break
        if row["id"] is None:
            archived_count += 1
        previous = row["chain_hash"]
        watermark = max(watermark, int(row["watermark"]))
        expected = row["position"] + 1
    if problem is None and expected <= until:
        problem = Problem(
            "deleted",
            f"chain position {expected} is missing: chain entries were deleted, with or without their rows",
            position=expected,
        )
    return _RangeResult(expected - 1, previous, watermark, archived_count, problem)


def _walk_in_process(
    dsn: str,
    snapshot: str,
    after: int,
    until: int,
    marks: _Marks,
    archived: Sequence[Archived],
) -> _RangeResult:
    """One range, in a worker process, inside the coordinator's exported snapshot."""

    async def run() -> _RangeResult:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                previous = (
                    await conn.fetchval("SELECT chain_hash FROM access_log_chain WHERE position = $1", after)
                    if after > 0
                    else GENESIS
                )
                if previous is None:  # the range before reports the gap
                    return _RangeResult(after, GENESIS, 0, 0, None)
                return await _walk(
                    conn, after=after, until=until, previous=previous, marks=marks, archived=archived
                )
        finally:
            await conn.close()

    return asyncio.run(run())


async def verify(
    conn: asyncpg.Connection,
    *,
    anchor: tuple[int, str] | None = None,
    checkpoints: Sequence[Checkpoint] = (),
    since: Checkpoint | None = None,
    seal_first: bool = True,
    seal_within: float = 10.0,
    workers: int = 1,
    dsn: str | None = None,
    set_based: bool | None = None,
) -> VerifyReport:
    """Check the log; see the module docstring for what is detected.

    ``checkpoints`` (verified signatures: a kept list, or the database's own) are held against the
    chain like anchors, and each one's ``complete_before`` against every row sealed after it.
    With ``since`` (one of them, trusted) the walk starts at its position and checks only what
    follows: quick, but a row edited before it in place, chain untouched, waits for a full run.
    ``workers`` > 1 (with ``dsn`` to connect them) checks ranges on that many connections (the
    set-based check) or in that many processes (the walk). ``set_based``: None lets a full verify
    use :mod:`app.audit.bulk_verify` where the database allows it; True insists (and refuses a
    ``since`` walk or a database that does not allow it); False walks row by row."""
    if seal_first:
        await seal_committed(conn, within=seal_within)
    marks = _Marks(anchor, checkpoints if since is None else [*checkpoints, since])
    # A full verify lets PostgreSQL recompute every hash (bulk_verify); from a checkpoint the walk
    # covers only what follows it, which Python does as fast as the set-up would cost.
    if set_based and since is not None:
        raise ValueError("a verify from a checkpoint walks what follows it; it is not set-based")
    wanted = set_based
    set_based = since is None and set_based is not False and await bulk_verify.prepare(conn)
    if wanted and not set_based:
        raise RuntimeError("this database does not allow the set-based verify (temporary objects, UTF-8)")
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            problem: Problem | None = None
            first, previous, watermark = 1, GENESIS, 0
            if since is not None:
                start = await conn.fetchrow(_ENTRY, since.position)
                if start is None:
                    problem = Problem(
                        "deleted",
                        f"the chain has no position {since.position}, which the checkpoint signed at "
                        f"{format_logged_at(since.signed_at)} holds: its entries were removed",
                        position=since.position,
                    )
                elif start["chain_hash"] != since.chain_hash:
                    problem = Problem(
                        "rewritten",
                        "the chain hash differs from the signed checkpoint for this position",
                        since.position,
                        start["row_id"],
                    )
                else:
                    first, previous = since.position + 1, since.chain_hash
                    watermark = int(start["watermark"])
            head = await conn.fetchval(_HEAD_POSITION)
            archived = [(r[0], r[1], r[2], r[3]) for r in await conn.fetch(_ARCHIVED)]
            last, archived_count = first - 1, 0
            outcome = (
                await _verify_set_based(
                    conn,
                    head=head,
                    anchor=anchor,
                    checkpoints=checkpoints,
                    archived=archived,
                    workers=workers,
                    dsn=dsn,
                )
                if set_based
                else None
            )
            unsealed_txids: list[tuple[int, int]] | None = None
            if outcome is not None:
                last, previous, watermark, archived_count, problem, unsealed_txids = outcome
            elif problem is None:
                results = await _walk_ranges(
                    conn,
                    first=first,
                    head=head,
                    previous=previous,
                    marks=marks,
                    archived=archived,
                    workers=workers,
                    dsn=dsn,
                )
                for result in results:
                    last, previous = result.last, result.last_hash
                    watermark = max(watermark, result.watermark)
                    archived_count += result.archived
                    if result.problem is not None:
                        problem = result.problem
                        break
            if problem is None:
                problem = marks.beyond(last)
            if unsealed_txids is None:
                unsealed_rows = [(r["id"], r["pending"]) for r in await conn.fetch(_UNSEALED, str(watermark))]
            else:
                unsealed_rows = [(row_id, txid >= watermark) for row_id, txid in unsealed_txids]
            unsealed = 0
            for row_id, pending in unsealed_rows:
                if pending:
                    unsealed += 1
                elif problem is None:
                    problem = Problem(
                        "inserted",
                        "the row has no chain entry although its transaction is older than the sealed "
                        "watermark: it was added behind the chain's back",
                        row_id=row_id,
                    )
    finally:
        if set_based:
            await bulk_verify.release(conn)
    return VerifyReport(last - first + 1, unsealed, last, previous, problem, archived_count)


async def _walk_ranges(
    conn: asyncpg.Connection,
    *,
    first: int,
    head: int,
    previous: str,
    marks: _Marks,
    archived: Sequence[Archived],
    workers: int,
    dsn: str | None,
) -> list[_RangeResult]:
    """The walk from ``first`` to ``head``, in order of position: one range here, or many in
    worker processes sharing this transaction's snapshot."""
    span = head - first + 1
    if workers <= 1 or dsn is None or span < 10_000 * workers:
        return [
            await _walk(conn, after=first - 1, until=head, previous=previous, marks=marks, archived=archived)
        ]
    snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
    count = workers * RANGES_PER_WORKER
    bounds = [first - 1 + span * i // count for i in range(count + 1)]
    loop = asyncio.get_running_loop()
    # spawn, not fork: the parent holds an event loop and open connections.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [
            loop.run_in_executor(pool, _walk_in_process, dsn, snapshot, after, until, marks, archived)
            for after, until in pairwise(bounds)
        ]
        return list(await asyncio.gather(*futures))


_CHAIN_HASH = "SELECT chain_hash FROM access_log_chain WHERE position = $1"
_NEXT_POSITION = "SELECT min(position) FROM access_log_chain WHERE position >= $1"
_WATERMARK_UNTIL = "SELECT max(watermark)::text FROM access_log_chain WHERE position <= $1"
_ARCHIVED_UNTIL = """
SELECT count(*) FROM access_log_chain AS c
WHERE c.position <= $1
  AND EXISTS (SELECT 1 FROM unnest($2::timestamptz[], $3::timestamptz[], $4::bigint[], $5::bigint[])
                  AS a(range_from, range_until, first_position, last_position)
              WHERE c.logged_at >= a.range_from AND c.logged_at < a.range_until
                AND c.position BETWEEN a.first_position AND a.last_position)
  AND NOT EXISTS (SELECT 1 FROM access_log AS l WHERE l.id = c.row_id AND l.logged_at = c.logged_at)
"""

SetBasedOutcome = tuple[int, str, int, int, "Problem | None", list[tuple[int, int]]]


async def _verify_set_based(
    conn: asyncpg.Connection,
    *,
    head: int,
    anchor: tuple[int, str] | None,
    checkpoints: Sequence[Checkpoint],
    archived: Sequence[Archived],
    workers: int,
    dsn: str | None,
) -> SetBasedOutcome | None:
    """The full verify by :mod:`app.audit.bulk_verify`, then each suspect position walked as the
    row-by-row verify would walk it, lowest first: ``(last, its chain hash, watermark, archived,
    problem, unsealed (row id, txid))``, or None when the scan could not narrow the suspects down
    and the caller must walk the whole chain."""
    marks = _Marks(anchor, checkpoints)
    found = await bulk_verify.scan(
        conn,
        head=head,
        marks={position: digest for position, (digest, _) in marks.hashes.items()},
        floors=[(c.position, c.complete_before) for c in checkpoints],
        archived=archived,
        workers=workers,
        dsn=dsn,
    )
    if not found.complete:
        # A range held more suspects than it returned: one it left out may lie below every one
        # it returned, so confirming those could name a later problem than the walk's first.
        return None
    for position in found.suspects:
        result = await _confirm(
            conn, position, head=head, anchor=anchor, checkpoints=checkpoints, archived=archived
        )
        if result.problem is not None:
            last = result.last
            watermark = int(await conn.fetchval(_WATERMARK_UNTIL, last) or 0)
            archived_count = (
                await conn.fetchval(_ARCHIVED_UNTIL, last, *[list(c) for c in zip(*archived, strict=True)])
                if archived
                else 0
            )
            return last, result.last_hash, watermark, archived_count, result.problem, found.unsealed
    previous = await conn.fetchval(_CHAIN_HASH, head) if head else GENESIS
    return head, previous, found.watermark, found.archived, None, found.unsealed


async def _confirm(
    conn: asyncpg.Connection,
    position: int,
    *,
    head: int,
    anchor: tuple[int, str] | None,
    checkpoints: Sequence[Checkpoint],
    archived: Sequence[Archived],
) -> _RangeResult:
    """Walk the one entry at ``position`` (through the next existing one, if it is missing) from
    its predecessor's stored chain hash: every position before it has passed, so this names the
    problem exactly as a walk from the start would."""
    previous = await conn.fetchval(_CHAIN_HASH, position - 1) if position > 1 else GENESIS
    until = max(position, min(head, await conn.fetchval(_NEXT_POSITION, position) or position))
    return await _walk(
        conn,
        after=position - 1,
        until=until,
        previous=previous or GENESIS,
        marks=_Marks(anchor, checkpoints),
        archived=archived,
    )


class _Marks:
    """Chain heads recorded outside the walk: the anchor and the signed checkpoints."""

    def __init__(self, anchor: tuple[int, str] | None, checkpoints: Sequence[Checkpoint]) -> None:
        self.hashes: dict[int, tuple[str, str]] = {}
        for checkpoint in checkpoints:
            self.hashes[checkpoint.position] = (
                checkpoint.chain_hash,
                f"the signed checkpoint of {format_logged_at(checkpoint.signed_at)}",
            )
        if anchor is not None:
            self.hashes.setdefault(anchor[0], (anchor[1], "the anchor recorded"))
        # complete_before only rises with position; a row past a checkpoint is held to the
        # latest one below it, found by walking these in order alongside the chain.
        self._floors = sorted((c.position, c.complete_before, c.signed_at) for c in checkpoints)
        self._next = 0
        self._floor: tuple[int, datetime, datetime] | None = None

    def check(self, row: Mapping[str, Any]) -> Problem | None:
        position, row_id = row["position"], row["row_id"]
        while self._next < len(self._floors) and self._floors[self._next][0] < position:
            candidate = self._floors[self._next]
            if self._floor is None or candidate[1] > self._floor[1]:
                self._floor = candidate
            self._next += 1
        mark = self.hashes.get(position)
        if mark is not None and row["chain_hash"] != mark[0]:
            return Problem(
                "rewritten", f"the chain hash differs from {mark[1]} for this position", position, row_id
            )
        if self._floor is not None and row["logged_at"] < self._floor[1]:
            return Problem(
                "forged",
                f"sealed after the checkpoint at position {self._floor[0]} (signed "
                f"{format_logged_at(self._floor[2])}) yet dated {format_logged_at(row['logged_at'])}, "
                f"before {format_logged_at(self._floor[1])}, by which that checkpoint had sealed "
                "everything: the row was written afterwards and backdated",
                position,
                row_id,
            )
        return None

    def beyond(self, last: int) -> Problem | None:
        """The chain ends at ``last``: a mark past it means its tail was removed."""
        past = [position for position in self.hashes if position > last]
        if not past:
            return None
        return Problem(
            "deleted",
            f"the chain ends at position {last}, before {self.hashes[max(past)][1]} at position "
            f"{max(past)}: its last entries were removed",
            position=last + 1,
        )


def _in_archive(row: Mapping[str, Any], archived: Sequence[Archived]) -> bool:
    at, position = row["sealed_at"], row["position"]
    return at is not None and any(
        since <= at < until and first <= position <= last for since, until, first, last in archived
    )


def _check_entry(
    row: Mapping[str, Any], expected: int, previous: str, archived: Sequence[Archived]
) -> Problem | None:
    position, row_id = row["position"], row["row_id"]
    if position != expected:
        missing = f"{expected}" if position == expected + 1 else f"{expected} to {position - 1}"
        return Problem(
            "deleted",
            f"chain position {missing} is missing: chain entries were deleted, with or without their rows",
            position=expected,
        )
    sealed_hash = row["sealed_hash"]
    if row["id"] is None:
        if not _in_archive(row, archived):
            return Problem("deleted", "the row sealed at this position is gone", position, row_id)
    elif row_hash(content_from_row(row), row["logged_at"]) != row["row_hash"]:
        return Problem("edited", "the row's content does not match its row hash", position, row_id)
    elif sealed_hash is not None and sealed_hash != row["row_hash"]:
        return Problem(
            "edited",
            "the row hash differs from the one sealed into the chain: both were rewritten",
            position,
            row_id,
        )
    if chain_hash(previous, sealed_hash or row["row_hash"]) != row["chain_hash"]:
        return Problem(
            "edited",
            "the row hash does not match the chain: the row and its hash were rewritten",
            position,
            row_id,
        )
    return None
