"""The access log's monthly partitions: created ahead, and past retention exported to a signed
archive, verified, then detached (never silently dropped).

Partitions are ``access_log_yYYYYmMM`` (UTC months, migration 0014). The worker's scheduler keeps
this month's and :data:`MONTHS_AHEAD` more in place through ``access_log_create_partitions``, a
SECURITY DEFINER function the service's role may call (it may not create tables itself).

**The archive** of one partition is two files in the output folder:

- ``<partition>.jsonl.gz``: one JSON line per chain position from the partition's first sealed
  position to its last, ``{"position", "chain_hash", "row_hash", "row"}``, where ``row`` is the full
  record (the hashed content plus ``id``, ``logged_at`` and ``txid``), or null for a position whose
  record belongs to another month (a record sealed late can sit among the next month's); its row
  hash is kept so every link of the range can be recomputed;
- ``<partition>.manifest.json``: ``{"manifest": {...}, "signature": "<JWS>"}`` where the manifest
  names the partition and its range, the row count, first and last positions, the chain hash
  before the first (``previous_hash``) and at the last (``chain_head``), and the data file's
  sha256, and the signature is an ES256 JWS (``typ`` :data:`ARCHIVE_TYPE`) over exactly that
  manifest, by the platform's key.

:func:`verify_archive` checks the signature against a JWKS, the data file against its digest, every
record against its row hash and every link of the chain; ``chain_head`` can be compared with a kept
checkpoint or with the live chain. Export and detach need the tables' owner (``childlink audit
export`` connects as ``CHILDLINK_MIGRATION_DATABASE_URL``). The detached table stays in the
database, outside the log, until an operator who holds the archive drops it.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from jose import jws
from jose.exceptions import JOSEError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.records import content_from_row, format_logged_at, row_hash
from app.audit.sealer import GENESIS, chain_hash
from app.auth.keys import ALGORITHM, KeyRing

MONTHS_AHEAD = 3
ARCHIVE_TYPE = "childlink-archive+jws"
PARTITION_PREFIX = "access_log_y"
CREATE_PARTITIONS_EVERY_SECONDS = 3600.0


class ArchiveError(ValueError):
    """An archive that cannot be made, or one that does not verify."""


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    range_from: datetime
    range_until: datetime


async def create_ahead(session: AsyncSession, now: datetime, *, months_ahead: int = MONTHS_AHEAD) -> int:
    """Create this month's and the next ``months_ahead`` months' partitions that are missing;
    returns how many were made. Safe in several workers at once (a name taken by another fails
    nothing: the function skips existing ones, and creation conflicts are retried next hour)."""
    result = await session.execute(
        text("SELECT access_log_create_partitions(:ahead, :at)"), {"ahead": months_ahead, "at": now}
    )
    return int(result.scalar_one())


_PARTITIONS = """
SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'access_log'::regclass AND c.relname LIKE 'access_log\\_y%'
ORDER BY c.relname
"""


def _parse_month(name: str) -> tuple[datetime, datetime]:
    year, month = int(name[len(PARTITION_PREFIX) : len(PARTITION_PREFIX) + 4]), int(name[-2:])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


async def partitions(conn: asyncpg.Connection) -> list[Partition]:
    """The monthly partitions attached to the log, oldest first (the default one aside)."""
    return [Partition(r["name"], *_parse_month(r["name"])) for r in await conn.fetch(_PARTITIONS)]


async def expired(conn: asyncpg.Connection, *, now: datetime, retention_days: int) -> list[Partition]:
    """Attached partitions whose whole month is older than the retention period."""
    horizon = now - timedelta(days=retention_days)
    return [p for p in await partitions(conn) if p.range_until <= horizon]


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _row_document(row: Mapping[str, Any]) -> dict[str, Any]:
    document = content_from_row(row)
    document.update(id=row["id"], logged_at=format_logged_at(row["logged_at"]), txid=row["txid"])
    return document


_ROWS = """
SELECT c.position, c.chain_hash, a.id, a.logged_at, a.txid::text AS txid, a.request_id, a.client_id,
       a.agency, a.action, a.child_id, a.child_ids, a.query, a.purpose, a.decision, a.reason,
       a.categories_returned, a.categories_withheld, a.basis, a.break_glass, a.investigation_ref,
       a.row_hash
FROM {partition} AS a
LEFT JOIN access_log_chain AS c ON c.row_id = a.id AND c.logged_at = a.logged_at
ORDER BY c.position
"""
_OTHERS = """
SELECT position, chain_hash, row_hash FROM access_log_chain
WHERE position BETWEEN $1 AND $2 AND NOT (logged_at >= $3 AND logged_at < $4)
ORDER BY position
"""


def _quoted(name: str) -> str:
    if not name.startswith(PARTITION_PREFIX) or not name[len(PARTITION_PREFIX) :].replace("m", "").isdigit():
        raise ArchiveError(f"{name!r} is not an access-log partition")
    return '"' + name + '"'


async def export_partition(
    conn: asyncpg.Connection, partition: Partition, out_dir: Path, *, keys: KeyRing, issuer: str
) -> Path:
    """Write the archive of ``partition`` (see the module docstring); returns the manifest's
    path. Refuses a partition with records not yet sealed: they would leave the log unchained."""
    # Blocking file writes in a coroutine: export runs as its own command, nothing shares its loop.
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    data_path = out_dir / f"{partition.name}.jsonl.gz"
    digest = hashlib.sha256()
    count, head = 0, None
    quoted = _quoted(partition.name)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        span = await conn.fetchrow(
            f"SELECT min(c.position) AS first, max(c.position) AS last, "  # noqa: S608
            f"count(*) FILTER (WHERE c.position IS NULL) AS unsealed FROM {quoted} AS a "
            "LEFT JOIN access_log_chain AS c ON c.row_id = a.id AND c.logged_at = a.logged_at"
        )
        if span["unsealed"]:
            raise ArchiveError(
                f"{partition.name} holds {span['unsealed']} records not yet sealed: seal, then export"
            )
        first, last = span["first"], span["last"]
        others: list[asyncpg.Record] = []
        previous = GENESIS
        if first is not None:
            others = await conn.fetch(_OTHERS, first, last, partition.range_from, partition.range_until)
            if first > 1:
                previous = await conn.fetchval(
                    "SELECT chain_hash FROM access_log_chain WHERE position = $1", first - 1
                )
        pending = iter(others)
        other = next(pending, None)
        with gzip.open(data_path, "wb") as raw:

            def write(line: dict[str, Any]) -> None:
                encoded = _canonical(line) + b"\n"
                digest.update(encoded)
                raw.write(encoded)

            async for row in conn.cursor(_ROWS.format(partition=quoted), prefetch=5000):
                # Positions of other months' records inside the range are merged in order.
                while other is not None and other["position"] < row["position"]:
                    write({**dict(other), "row": None})
                    other = next(pending, None)
                write(
                    {
                        "position": row["position"],
                        "chain_hash": row["chain_hash"],
                        "row_hash": row["row_hash"],
                        "row": _row_document(row),
                    }
                )
                count += 1
                head = row["chain_hash"]
    manifest = {
        "type": "childlink.access-log-archive",
        "version": 1,
        "iss": issuer,
        "partition": partition.name,
        "range_from": format_logged_at(partition.range_from),
        "range_until": format_logged_at(partition.range_until),
        "rows": count,
        "first_position": first,
        "last_position": last,
        "previous_hash": previous,
        "chain_head": head,
        "data_file": data_path.name,
        "data_sha256": digest.hexdigest(),
        "exported_at": format_logged_at(datetime.now(UTC)),
    }
    key = keys.current
    signature = jws.sign(
        _canonical(manifest),
        key.private_pem.decode("ascii"),
        headers={"kid": key.kid, "typ": ARCHIVE_TYPE},
        algorithm=ALGORITHM,
    )
    manifest_path = out_dir / f"{partition.name}.manifest.json"
    manifest_path.write_bytes(
        orjson.dumps({"manifest": manifest, "signature": signature}, option=orjson.OPT_INDENT_2)
    )
    return manifest_path


@dataclass(frozen=True, slots=True)
class ArchiveReport:
    manifest: dict[str, Any]
    rows: int

    def summary(self) -> str:
        m = self.manifest
        return (
            f"archive intact: {m['partition']}, {self.rows} records, positions {m['first_position']} "
            f"to {m['last_position']}; chain head {m['last_position']}:{m['chain_head']}"
        )


def _manifest_of(path: Path, jwks: Mapping[str, Any]) -> dict[str, Any]:
    try:
        document = orjson.loads(path.read_bytes())
        signature, manifest = document["signature"], document["manifest"]
        header = jws.get_unverified_header(signature)
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, JOSEError):
        raise ArchiveError(f"{path.name} is not an archive manifest") from None
    if header.get("typ") != ARCHIVE_TYPE or header.get("alg") != ALGORITHM:
        raise ArchiveError("the manifest's signature is not an archive signature")
    key = next((k for k in jwks.get("keys", ()) if k.get("kid") == header.get("kid")), None)
    if key is None:
        raise ArchiveError(
            f"the manifest is signed by key {header.get('kid')!r}, which the JWKS does not hold"
        )
    try:
        signed = orjson.loads(jws.verify(signature, dict(key), algorithms=[ALGORITHM]))
    except (JOSEError, orjson.JSONDecodeError):
        raise ArchiveError("the manifest's signature does not verify") from None
    if signed != manifest:
        raise ArchiveError("the manifest differs from what was signed")
    return dict(signed)


def _lines(path: Path) -> Iterator[bytes]:
    try:
        with gzip.open(path, "rb") as raw:
            yield from raw
    except (OSError, EOFError) as exc:
        raise ArchiveError(f"{path.name} cannot be read: {type(exc).__name__}") from None


def verify_archive(manifest_path: Path, jwks: Mapping[str, Any]) -> ArchiveReport:
    """Check a partition archive whole: the signature, the data file's digest, each record's row
    hash and time range, every chain link from ``previous_hash`` to ``chain_head``. Raises
    :class:`ArchiveError` naming the first fault."""
    manifest = _manifest_of(manifest_path, jwks)
    data_path = manifest_path.parent / Path(str(manifest["data_file"])).name
    since = datetime.fromisoformat(manifest["range_from"][:-1]).replace(tzinfo=UTC)
    until = datetime.fromisoformat(manifest["range_until"][:-1]).replace(tzinfo=UTC)
    digest = hashlib.sha256()
    previous, expected, rows = manifest["previous_hash"], manifest["first_position"], 0
    for line in _lines(data_path):
        digest.update(line)
        try:
            entry = orjson.loads(line)
            position, sealed, link = entry["position"], entry["row_hash"], entry["chain_hash"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ArchiveError(f"line {rows + 1} of {data_path.name} is not an archive entry") from None
        if position != expected:
            raise ArchiveError(f"position {expected} is missing from the archive")
        document = entry["row"]
        if document is not None:
            logged_at = datetime.fromisoformat(str(document["logged_at"])[:-1]).replace(tzinfo=UTC)
            content = {k: v for k, v in document.items() if k not in ("id", "logged_at", "txid")}
            if row_hash(content, logged_at) != sealed:
                raise ArchiveError(f"the record at position {position} does not match its row hash")
            if not since <= logged_at < until:
                raise ArchiveError(f"the record at position {position} is outside the partition's month")
            rows += 1
        if chain_hash(previous, sealed) != link:
            raise ArchiveError(f"the chain breaks at position {position}")
        previous, expected = link, position + 1
    if digest.hexdigest() != manifest["data_sha256"]:
        raise ArchiveError(f"{data_path.name} differs from the digest its manifest signs")
    last = manifest["last_position"]
    if (last is not None and expected != last + 1) or rows != manifest["rows"]:
        raise ArchiveError("the archive ends before the manifest's last position")
    if last is not None and previous != manifest["chain_head"]:
        raise ArchiveError("the archive's chain head differs from its manifest")
    return ArchiveReport(manifest, rows)


async def detach(conn: asyncpg.Connection, report: ArchiveReport) -> None:
    """Record the verified archive and detach its partition from the log (as the tables' owner).
    The detached table is kept; nothing is dropped here."""
    m = report.manifest
    name = str(m["partition"])
    bounds = await conn.fetchrow(
        "SELECT min(id) AS low, max(id) AS high FROM " + _quoted(name)  # noqa: S608
    )
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO access_log_archive (partition, range_from, range_until, rows, first_position, "
            "last_position, min_row_id, max_row_id, chain_head, data_sha256, manifest) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb)",
            name,
            datetime.fromisoformat(m["range_from"][:-1]).replace(tzinfo=UTC),
            datetime.fromisoformat(m["range_until"][:-1]).replace(tzinfo=UTC),
            m["rows"],
            m["first_position"],
            m["last_position"],
            bounds["low"] if bounds else None,
            bounds["high"] if bounds else None,
            m["chain_head"],
            m["data_sha256"],
            orjson.dumps(m).decode(),
        )
        # Not CONCURRENTLY: PostgreSQL refuses that while a default partition exists. The plain
        # form holds the log's lock for the moment the catalog changes; writers wait that long.
        await conn.execute(f"ALTER TABLE access_log DETACH PARTITION {_quoted(name)}")
