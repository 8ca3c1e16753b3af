"""The full ``audit verify`` done by PostgreSQL: every hash recomputed in set-based SQL, in parallel.

Walking the chain row by row in Python costs about 20 µs a record (canonical JSON, two sha256,
decoding); a three-year log of a province holds tens of millions. PostgreSQL has ``sha256()``
built in, and each check is local to a row or to a row and its predecessor, so none needs a walk:

- **the chain's links**, over ranges of positions (window ``lag`` in position order): a position
  missing, a ``chain_hash`` that is not ``sha256(previous chain_hash || row_hash)``, a row sealed
  after a checkpoint yet dated before the time by which that checkpoint had sealed everything;
- **the rows**, over ranges of row ids, the chain entries joined to the log rows of the same ids
  (``FULL JOIN``): the row's canonical JSON, built in SQL byte for byte as
  :func:`app.audit.records.canonical_json` builds it, must hash to its ``row_hash``, which must be
  the one sealed into the chain, at the same ``logged_at``; an entry without its row must lie in
  an exported, detached partition; a row without an entry is not yet sealed (or was slipped in).

Ranges are spread over several connections sharing one exported snapshot, so the server's cores
hash in parallel; Python only gathers each range's few results.

This pass only *finds* the positions that may be wrong (``Scan.suspects``). The caller checks each
of them, lowest first, with the row-by-row walk of :mod:`app.audit.verify` on that one entry
(its predecessor is known good by then), so a problem is named with exactly the words, position
and counts a full walk would give; a suspect the walk finds sound (a value the SQL serialises
differently from Python, such as a float typed in by hand) is passed over. Nothing is written:
the canonical-JSON helper is a temporary function of the verifying session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise

import asyncpg

from app.audit.sealer import GENESIS

Archived = tuple[datetime, datetime, int, int]  # (from, until, first position, last position)

RANGE_SIZE = 1_000_000  # positions, or row ids, per query: seconds of work for one connection
SUSPECTS_PER_RANGE = 100  # more than that in one range, and the caller walks instead

# jsonb in the row hash's canonical form: keys sorted by code point (COLLATE "C" compares UTF-8
# bytes, which sort as code points do), no whitespace, strings escaped as orjson escapes them
# (PostgreSQL's JSON string escaping is the same: \" \\ \b \f \n \r \t, other control characters
# as \u00XX, everything else as it is). Per call it costs tens of µs, so the scan calls it only
# once per distinct value: a record's basis repeats with its decision's shape (Memoize).
_CANONICAL_FUNCTION = r"""
CREATE OR REPLACE FUNCTION pg_temp.childlink_canonical_json(j jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT COST 10000 AS $$
DECLARE
    out text;
    k text;
    v jsonb;
    first boolean := true;
BEGIN
    CASE jsonb_typeof(j)
    WHEN 'object' THEN
        out := '{';
        FOR k, v IN SELECT e.key, e.value FROM jsonb_each(j) AS e ORDER BY e.key COLLATE "C" LOOP
            IF NOT first THEN out := out || ','; END IF;
            first := false;
            out := out || to_json(k)::text || ':' || pg_temp.childlink_canonical_json(v);
        END LOOP;
        RETURN out || '}';
    WHEN 'array' THEN
        out := '[';
        FOR v IN SELECT e FROM jsonb_array_elements(j) AS e LOOP
            IF NOT first THEN out := out || ','; END IF;
            first := false;
            out := out || pg_temp.childlink_canonical_json(v);
        END LOOP;
        RETURN out || ']';
    ELSE
        RETURN j::text;
    END CASE;
END
$$
"""
# A record's content in the row hash's key order (app.audit.records: CONTENT_FIELDS and logged_at,
# sorted): row_to_json writes each field as orjson writes what asyncpg returns for the column
# (text escaped as above, uuid as its text, arrays as JSON arrays, booleans, null), compact and in
# this order, and a json field as it stands, which carries the canonical jsonb text.
_RECORD_TYPE = """
CREATE TYPE pg_temp.childlink_record AS (
    action text, agency text, basis json, break_glass boolean, categories_returned text[],
    categories_withheld text[], child_id uuid, child_ids uuid[], client_id text, decision text,
    investigation_ref text, logged_at text, purpose text, query json, reason text, request_id text
)
"""
_DROP = (
    "DROP FUNCTION IF EXISTS pg_temp.childlink_canonical_json(jsonb); "
    "DROP TYPE IF EXISTS pg_temp.childlink_record"
)

_CANONICAL = """row_to_json(ROW(
    l.action, l.agency, jb.basis, l.break_glass,
    COALESCE(l.categories_returned, '{}'), COALESCE(l.categories_withheld, '{}'),
    l.child_id, l.child_ids, l.client_id, l.decision, l.investigation_ref,
    to_char(l.logged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    l.purpose, jq.query, l.reason, l.request_id
)::pg_temp.childlink_record)::text"""

# Positions ($1, $2]; the entry at $1 only gives the first one its predecessor. $3 is the chain
# hash before position 1 (GENESIS) when $1 = 0, else NULL: a missing entry at $1 then fails the
# link check of the next, and the range before reports the gap itself.
_LINKS = """
SELECT max(c.position) AS last, max(c.watermark)::text AS watermark,
       (array_agg(c.suspect ORDER BY c.suspect) FILTER (WHERE c.suspect IS NOT NULL))[1:{limit}]
           AS suspects
FROM (
    SELECT position, watermark,
           CASE
               WHEN COALESCE(previous_position, $1) <> position - 1 THEN COALESCE(previous_position, $1) + 1
               WHEN row_hash IS NULL OR logged_at IS NULL
                 OR chain_hash IS DISTINCT FROM
                    encode(sha256(textsend(COALESCE(previous_hash, $3) || row_hash)), 'hex')
                 {forged}
                   THEN position
           END AS suspect
    FROM (
        SELECT position, watermark, row_hash, logged_at, chain_hash,
               lag(position) OVER w AS previous_position, lag(chain_hash) OVER w AS previous_hash
        FROM access_log_chain
        WHERE position >= $1 AND position <= $2
        WINDOW w AS (ORDER BY position)
    ) AS entry
) AS c
WHERE c.position > $1
"""
# $4: the positions of the signed checkpoints, ascending; $5: for each, the latest
# complete_before among it and those before it. A row is held to the one it follows.
_FORGED = """
                 OR (width_bucket(position - 1, $4::bigint[]) > 0
                     AND logged_at < ($5::timestamptz[])[width_bucket(position - 1, $4::bigint[])])
"""

_IN_ARCHIVE = """EXISTS (
    SELECT 1 FROM unnest($3::timestamptz[], $4::timestamptz[], $5::bigint[], $6::bigint[])
        AS a(range_from, range_until, first_position, last_position)
    WHERE c.logged_at >= a.range_from AND c.logged_at < a.range_until
      AND c.position BETWEEN a.first_position AND a.last_position)"""

# Row ids ($1, $2]. A log row whose id has no entry, or an entry of another time, is unsealed.
_ROWS = f"""
SELECT count(*) FILTER (WHERE r.archived) AS archived,
       (array_agg(r.position ORDER BY r.position) FILTER (WHERE r.suspect))[1:{{limit}}] AS suspects,
       array_agg(r.id ORDER BY r.id) FILTER (WHERE r.unsealed) AS unsealed_ids,
       array_agg(r.txid::text ORDER BY r.id) FILTER (WHERE r.unsealed) AS unsealed_txids
FROM (
    SELECT c.position, l.id, l.txid,
           CASE WHEN c.position IS NOT NULL AND l.id IS NULL THEN {_IN_ARCHIVE} ELSE false END
               AS archived,
           CASE
               WHEN c.position IS NULL THEN false
               WHEN l.id IS NULL THEN NOT {_IN_ARCHIVE}
               ELSE l.logged_at IS DISTINCT FROM c.logged_at
                 OR c.row_hash IS DISTINCT FROM l.row_hash
                 OR NOT l.intact
           END AS suspect,
           l.id IS NOT NULL AND (c.position IS NULL OR l.logged_at <> c.logged_at) AS unsealed
    FROM (
        SELECT position, row_id, logged_at, row_hash FROM access_log_chain
        WHERE row_id > $1 AND row_id <= $2
    ) AS c
    FULL JOIN (
        SELECT l.id, l.logged_at, l.txid,
               l.row_hash,
               encode(sha256(textsend({_CANONICAL})), 'hex') = l.row_hash AS intact
        FROM access_log AS l,
             LATERAL (SELECT pg_temp.childlink_canonical_json(l.basis)::json AS basis OFFSET 0) AS jb,
             LATERAL (SELECT pg_temp.childlink_canonical_json(l.query)::json AS query OFFSET 0) AS jq
        WHERE l.id > $1 AND l.id <= $2
    ) AS l ON l.id = c.row_id
) AS r
"""  # noqa: S608 (built from the constant fragments above, no input)

_BOUNDS = """
SELECT LEAST((SELECT min(id) FROM access_log), (SELECT min(row_id) FROM access_log_chain)) AS low,
       GREATEST((SELECT max(id) FROM access_log), (SELECT max(row_id) FROM access_log_chain)) AS high
"""
# Each partition's highest id: windows that end there read each partition whole, by one
# sequential scan (ids grow with time, so a month's ids hardly reach into the next month's).
_PARTITION_ENDS = """
SELECT p.relid::regclass::text AS name FROM pg_partition_tree('access_log') AS p WHERE p.isleaf
"""
# One connection per core already: no parallel workers on top. The rows pass hashes a window's
# chain entries and scans its log partition once (a merge join would walk both by index).
_SESSION = (
    "SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL enable_mergejoin = off; "
    "SET LOCAL work_mem = '256MB'"
)
_MARKED = "SELECT position, chain_hash FROM access_log_chain WHERE position = ANY($1::bigint[])"


@dataclass(slots=True)
class Scan:
    """What the set-based pass found over positions 1 to ``head``."""

    suspects: list[int] = field(default_factory=list)  # positions to check by walking, ascending
    complete: bool = True  # False: some range held more suspects than it returned
    watermark: int = 0  # the highest watermark of any entry
    archived: int = 0  # entries whose rows are in exported, detached partitions
    unsealed: list[tuple[int, int]] = field(default_factory=list)  # (row id, txid) without an entry


async def prepare(conn: asyncpg.Connection) -> bool:
    """Create the session's canonical-JSON helper, outside any transaction (a read-only one may not
    create it). False where this path cannot run: the role may not create temporary objects, or
    the database's text is not UTF-8 (the hash covers UTF-8 bytes, and ``textsend`` gives the
    database's own)."""
    if await conn.fetchval("SHOW server_encoding") != "UTF8":
        return False
    try:
        await conn.execute(_DROP)
        await conn.execute(_CANONICAL_FUNCTION)
        await conn.execute(_RECORD_TYPE)
    except (asyncpg.InsufficientPrivilegeError, asyncpg.ReadOnlySQLTransactionError):
        return False
    return True


async def release(conn: asyncpg.Connection) -> None:
    if not conn.is_closed():
        await conn.execute(_DROP)


async def scan(
    conn: asyncpg.Connection,
    *,
    head: int,
    marks: dict[int, str],
    floors: Sequence[tuple[int, datetime]],
    archived: Sequence[Archived],
    workers: int = 1,
    dsn: str | None = None,
    range_size: int | None = None,
) -> Scan:
    """Check positions 1 to ``head`` and every row of the log, inside ``conn``'s open REPEATABLE READ
    transaction (its snapshot is shared with the ``workers - 1`` further connections opened with
    ``dsn``; :func:`prepare` must have run on ``conn``).

    ``marks`` maps positions to the chain hash an anchor or a checkpoint holds for them;
    ``floors`` are the checkpoints' (position, complete_before), ascending by position."""
    range_size = range_size or RANGE_SIZE
    result = Scan()
    if marks:
        for row in await conn.fetch(_MARKED, [p for p in marks if p <= head]):
            if row["chain_hash"] != marks[row["position"]]:
                result.suspects.append(row["position"])
    tasks: list[tuple[str, int, int]] = [
        ("links", after, min(head, after + range_size)) for after in range(0, head, range_size)
    ]
    tasks += [("rows", after, until) for after, until in await _row_windows(conn, range_size)]
    # str.replace, not format: the canonical JSON's braces are part of the SQL.
    links_sql = _LINKS.replace("{forged}", _FORGED if floors else "").replace(
        "{limit}", str(SUSPECTS_PER_RANGE)
    )
    rows_sql = _ROWS.replace("{limit}", str(SUSPECTS_PER_RANGE))
    floor_positions, floor_times = _running_floors(floors)
    archive_args = [list(column) for column in zip(*archived, strict=True)] if archived else [[], [], [], []]

    async def run(connection: asyncpg.Connection) -> None:
        while tasks:
            kind, after, until = tasks.pop()
            if kind == "links":
                args: list[object] = [after, until, GENESIS if after == 0 else None]
                if floors:
                    args += [floor_positions, floor_times]
                row = await connection.fetchrow(links_sql, *args)
                last = row["last"] if row["last"] is not None else after
                if last < until:  # the range's tail is missing
                    result.suspects.append(last + 1)
                if row["watermark"] is not None:
                    result.watermark = max(result.watermark, int(row["watermark"]))
            else:
                row = await connection.fetchrow(rows_sql, after, until, *archive_args)
                result.archived += row["archived"]
                result.unsealed += [
                    (i, int(t))
                    for i, t in zip(row["unsealed_ids"] or (), row["unsealed_txids"] or (), strict=True)
                ]
            suspects = row["suspects"] or []
            result.suspects += suspects
            if len(suspects) >= SUSPECTS_PER_RANGE:
                result.complete = False

    await conn.execute(_SESSION)
    helpers = (
        await _helpers(conn, workers - 1, dsn) if workers > 1 and dsn is not None and len(tasks) > 1 else []
    )
    try:
        await asyncio.gather(run(conn), *(run(helper) for helper in helpers))
    finally:
        await asyncio.gather(*(helper.close() for helper in helpers), return_exceptions=True)
    result.suspects = sorted(set(result.suspects))
    result.unsealed.sort()
    return result


async def _row_windows(conn: asyncpg.Connection, size: int) -> list[tuple[int, int]]:
    """Row-id windows ``(after, until]`` covering every id in the log and the chain, cut at each
    partition's highest id and then into pieces of at most ``size`` ids."""
    bounds = await conn.fetchrow(_BOUNDS)
    if bounds["low"] is None:
        return []
    low, high = bounds["low"] - 1, bounds["high"]
    cuts = {low, high}
    for row in await conn.fetch(_PARTITION_ENDS):
        end = await conn.fetchval(f"SELECT max(id) FROM ONLY {row['name']}")  # noqa: S608 (catalog names)
        if end is not None:
            cuts.add(end)
    windows = []
    for after, until in pairwise(sorted(cuts)):
        pieces = -(-(until - after) // size)
        windows += [
            (after + (until - after) * i // pieces, after + (until - after) * (i + 1) // pieces)
            for i in range(pieces)
        ]
    return windows


def _running_floors(floors: Sequence[tuple[int, datetime]]) -> tuple[list[int], list[datetime]]:
    positions: list[int] = []
    times: list[datetime] = []
    for position, complete_before in sorted(floors, key=lambda f: f[0]):
        floor = max(complete_before, times[-1]) if times else complete_before
        if positions and positions[-1] == position:
            times[-1] = floor
        else:
            positions.append(position)
            times.append(floor)
    return positions, times


async def _helpers(conn: asyncpg.Connection, count: int, dsn: str) -> list[asyncpg.Connection]:
    """Connections inside ``conn``'s snapshot, each with the canonical-JSON helper."""
    snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
    helpers: list[asyncpg.Connection] = []
    try:
        for _ in range(count):
            helper = await asyncpg.connect(dsn)
            helpers.append(helper)
            if not await prepare(helper):
                raise RuntimeError("the verify connections differ in what they may do")
            await helper.execute(
                f"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{snapshot}'"
            )
            await helper.execute(_SESSION)
    except BaseException:
        await asyncio.gather(*(helper.close() for helper in helpers), return_exceptions=True)
        raise
    return helpers
