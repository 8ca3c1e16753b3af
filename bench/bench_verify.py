"""How fast ``childlink audit verify`` checks a large access log, and how big the log is on disk.

    .venv/bin/python bench/bench_verify.py --rows 3000000                    # its own database
    .venv/bin/python bench/bench_verify.py --url postgresql://.../childlink_bench_10m --rows 15000000
    .venv/bin/python bench/bench_verify.py --url ... --rows 0 --methods set walk --workers 1 2

Without ``--url`` it creates its own database (``childlink_bench_verify`` on the server of
``DATABASE_URL``, default the local one), migrates it, and drops it at the end (``--keep`` keeps
it), also after a failure. With ``--url`` it migrates that database and only ever adds to it.

``--rows`` records are appended after the chain's head, spread over the last 36 monthly
partitions, with valid row hashes and a valid chain, copied in as the tables' owner (the writer
and sealer are measured elsewhere: ``bench_audit.py``). The records mix four shapes: custody checks
by police (70%), redacted reads by education (15%), list reads by civil affairs with their filters
and child ids (10%) and denials (5%); each row hash is computed by
:func:`app.audit.records.canonical_json`'s rules (checked against it for the first rows of each
shape), never by the SQL under test.

Then it times a full verify for each ``--methods`` (``set``: the set-based check in PostgreSQL,
``walk``: the row-by-row walk in Python) and ``--workers`` value, and prints records/s and the
size of the log and its chain per million records.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.audit.records import AccessRecord, canonical_json, format_logged_at
from app.audit.sealer import GENESIS, seal_committed
from app.audit.verify import verify
from app.cli import migrate
from app.config import Settings

DB = "childlink_bench_verify"
CHUNK = 100_000
LOG_COLUMNS = (
    "id",
    "logged_at",
    "request_id",
    "client_id",
    "agency",
    "action",
    "child_id",
    "child_ids",
    "query",
    "purpose",
    "decision",
    "reason",
    "categories_returned",
    "categories_withheld",
    "basis",
    "row_hash",
)
CHAIN_COLUMNS = ("row_id", "position", "chain_hash", "watermark", "row_hash", "logged_at")
COUNTIES = ("510104", "510105", "510106", "510107", "510108", "510112", "510113", "510114")
_C = "\x01C"  # stand-ins, cut out of each shape's canonical JSON and filled in per record
_R = "\x01R"


def _statute(ref: str, citation: str) -> dict[str, str]:
    return {"ground": "statute", "ref": ref, "citation": citation}


def shapes() -> list[tuple[int, AccessRecord]]:
    """(weight out of 20, record) for the four kinds of record the bench log holds."""
    police = AccessRecord(
        client_id="cl_police_duty",
        agency="police",
        action="custody.read",
        child_id=uuid.UUID(int=1),
        purpose="child_protection",
        decision="allow",
        categories_returned=("custody", "contact"),
        categories_withheld=("health",),
        basis={
            "custody": _statute("police-custody", "未成年人保护法 第十一条"),
            "contact": _statute("police-contact", "PIPL art. 13(4)"),
        },
    )
    education = AccessRecord(
        client_id="cl_school_system",
        agency="education",
        action="child.read",
        child_id=uuid.UUID(int=1),
        purpose="education_support",
        decision="allow_redacted",
        reason="no_legal_basis",
        categories_returned=("identity", "education"),
        categories_withheld=("contact", "health", "law_enforcement"),
        basis={
            "identity": _statute("education-identity", "义务教育法 第十三条"),
            "education": _statute("education-records", "PIPL art. 13(3)"),
        },
    )
    denied = AccessRecord(
        client_id="cl_health_portal",
        agency="health",
        action="child.read",
        child_id=uuid.UUID(int=1),
        purpose="health_care",
        decision="deny",
        reason="no_legal_basis",
        categories_withheld=("identity", "contact", "custody"),
    )
    return [(14, police), (3, education), (1, denied)] + [
        (0, _listing(county)) for county in COUNTIES
    ]  # the listings share 2 in 20, one county each in turn


def _listing(county: str) -> AccessRecord:
    return AccessRecord(
        client_id="cl_civil_affairs",
        agency="civil-affairs",
        action="child.list",
        child_ids=tuple(uuid.UUID(int=n) for n in range(1, 11)),
        query={"region": county, "category": "left_behind", "limit": "50"},
        purpose="child_protection",
        decision="allow",
        categories_returned=("identity", "contact"),
        basis={"identity": _statute("civil-affairs-registry", "民政部 留守儿童关爱保护 工作指引")},
    )


class Shape:
    """One kind of record: its COPY line and canonical JSON, cut around the per-record values."""

    def __init__(self, record: AccessRecord) -> None:
        self.record = record
        content = record.content()
        if record.child_id is not None:
            content["child_id"] = _C
        content["request_id"] = _R
        document = dict(content, logged_at="\x01T")
        text = orjson.dumps(document, option=orjson.OPT_SORT_KEYS).decode()
        pieces = text.replace("\\u0001C", "\x00").replace("\\u0001T", "\x00").replace("\\u0001R", "\x00")
        self.json = pieces.split("\x00")
        self.has_child = record.child_id is not None
        if not self.has_child:  # no child stand-in: the first cut is logged_at
            self.json.insert(1, "")

        def cell(value: object) -> str:
            if value is None:
                return r"\N"
            if isinstance(value, tuple | list):
                return "{" + ",".join(str(v) for v in value) + "}"
            if isinstance(value, dict):
                return orjson.dumps(value).decode()
            return str(value)

        self.fixed = "\t".join(cell(getattr(record, name)) for name in ("client_id", "agency", "action"))
        self.rest = "\t".join(
            cell(getattr(record, name) if name != "decision" else str(record.decision))
            for name in (
                "child_ids",
                "query",
                "purpose",
                "decision",
                "reason",
                "categories_returned",
                "categories_withheld",
                "basis",
            )
        )

    def canonical(self, child: str, logged_at: str, request_id: str) -> bytes:
        j = self.json
        return (j[0] + child + j[1] + logged_at + j[2] + request_id + j[3]).encode()


async def seed(conn: asyncpg.Connection, rows: int) -> None:
    """Append ``rows`` records after the chain's head, with their chain entries."""
    # Rows a service wrote and did not seal yet stay unsealed behind the seeded ones: the last
    # seeded entry's watermark must stay below them, or verify would take them for slipped in.
    await seal_committed(conn, within=10)
    pending = await conn.fetchval(
        "SELECT min(txid)::text FROM access_log AS a "
        "WHERE NOT EXISTS (SELECT 1 FROM access_log_chain AS c WHERE c.row_id = a.id)"
    )
    head = await conn.fetchrow(
        "SELECT position, chain_hash FROM access_log_chain ORDER BY position DESC LIMIT 1"
    )
    position, previous = (head["position"], head["chain_hash"]) if head else (0, GENESIS)
    base = max(await conn.fetchval("SELECT COALESCE(max(id), 0) FROM access_log"), position)
    await conn.execute("SELECT setval('access_log_id_seq', $1)", base + rows)  # live writers go above
    now = datetime.now(UTC)
    start = now - timedelta(days=36 * 30)
    await conn.execute("SELECT access_log_create_partitions(36, $1)", start)
    span_us = int((now - timedelta(hours=1) - start).total_seconds() * 1_000_000)
    step_us = span_us // max(rows, 1)
    weighted = [Shape(r) for w, r in shapes()[:3] for _ in range(w)]
    listings = [Shape(r) for _, r in shapes()[3:]]
    checked: set[int] = set()
    # The log's secondary indexes are dropped for the copy and built again after it: one sorted
    # build each instead of millions of scattered inserts (a COPY through them ran at ~13,000
    # records/s here). Same names and definitions, read from the catalog.
    indexes = [
        (r["indexname"], r["indexdef"])
        for r in await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = 'public' AND tablename = 'access_log' AND indexname <> 'access_log_pkey'"
        )
    ]
    for name, _ in indexes:
        await conn.execute(f'DROP INDEX "{name}"')
    await conn.execute("ALTER TABLE access_log_chain DISABLE TRIGGER USER")
    began = time.perf_counter()
    try:
        for chunk_start in range(0, rows, CHUNK):
            log, chain = [], []
            for n in range(chunk_start, min(rows, chunk_start + CHUNK)):
                i = base + n + 1
                logged = start + timedelta(microseconds=step_us * (n + 1))
                pick = i % 20
                shape = weighted[pick] if pick < len(weighted) else listings[i % len(listings)]
                child = str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15F39CC0605CEDC835) % (1 << 128)))
                request_id = f"r{i}"
                stamp = format_logged_at(logged)
                digest = hashlib.sha256(
                    shape.canonical(child if shape.has_child else "", stamp, request_id)
                ).hexdigest()
                if id(shape) not in checked:  # the cut-up JSON is the real thing
                    content = shape.record.content()
                    content.update(request_id=request_id, child_id=child if shape.has_child else None)
                    assert hashlib.sha256(canonical_json(content, logged)).hexdigest() == digest
                    checked.add(id(shape))
                position += 1
                previous = hashlib.sha256((previous + digest).encode()).hexdigest()
                copy_time = stamp[:-1].replace("T", " ") + "+00"
                log.append(
                    f"{i}\t{copy_time}\t{request_id}\t{shape.fixed}\t"
                    f"{child if shape.has_child else chr(92) + 'N'}\t{shape.rest}\t{digest}\n"
                )
                chain.append(f"{i}\t{position}\t{previous}\t0\t{digest}\t{copy_time}\n")
            await conn.copy_to_table("access_log", source=_Lines(log), columns=LOG_COLUMNS, format="text")
            if chunk_start + CHUNK >= rows:
                # Every seeded row is committed and sealed: the last entry's watermark says so,
                # as the sealer's would, so its next pass starts above them.
                horizon = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
                if pending is not None:
                    horizon = str(min(int(horizon), int(pending)))
                head_line = chain[-1].split("\t")
                head_line[3] = horizon
                chain[-1] = "\t".join(head_line)
            await conn.copy_to_table(
                "access_log_chain", source=_Lines(chain), columns=CHAIN_COLUMNS, format="text"
            )
            done = min(rows, chunk_start + CHUNK)
            rate = done / (time.perf_counter() - began)
            print(f"  seeded {done:,} ({rate:,.0f} records/s)", end="\r", flush=True)
    finally:
        await conn.execute("ALTER TABLE access_log_chain ENABLE TRIGGER USER")
        print(f"\n  building {len(indexes)} indexes again", flush=True)
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for _, definition in indexes:  # the catalog shows a partitioned index as ON ONLY the parent
            await conn.execute(definition.replace(" ON ONLY ", " ON ", 1))
    await conn.execute("VACUUM (ANALYZE) access_log")
    await conn.execute("VACUUM (ANALYZE) access_log_chain")


class _Lines:
    """COPY source: the chunk's lines as one stream of bytes."""

    def __init__(self, lines: list[str]) -> None:
        self._data = "".join(lines).encode()

    def __aiter__(self) -> _Lines:
        self._sent = False
        return self

    async def __anext__(self) -> bytes:
        if self._sent:
            raise StopAsyncIteration
        self._sent = True
        return self._data


async def sizes(conn: asyncpg.Connection) -> dict[str, int]:
    row = await conn.fetchrow(
        "SELECT (SELECT sum(pg_total_relation_size(inhrelid))::bigint FROM pg_inherits "
        "        WHERE inhparent = 'access_log'::regclass) AS log, "
        "       (SELECT sum(pg_relation_size(inhrelid))::bigint FROM pg_inherits "
        "        WHERE inhparent = 'access_log'::regclass) AS log_heap, "
        "       pg_total_relation_size('access_log_chain') AS chain, "
        "       (SELECT count(*) FROM access_log_chain) AS records"
    )
    return dict(row)


async def measure(url: str, rows: int, methods: list[str], workers_list: list[int]) -> None:
    conn = await asyncpg.connect(url)
    try:
        if rows:
            began = time.perf_counter()
            await seed(conn, rows)
            print(f"seeded {rows:,} records in {time.perf_counter() - began:.0f} s")
        size = await sizes(conn)
        per_million = 1_000_000 / max(size["records"], 1) / 2**20
        print(
            f"{size['records']:,} records; per million records: log {size['log'] * per_million:.0f} MiB "
            f"(heap {size['log_heap'] * per_million:.0f} MiB, the rest its 8 indexes), "
            f"chain {size['chain'] * per_million:.0f} MiB"
        )
        database = await conn.fetchval("SELECT current_database()")
        for method in methods:
            for workers in workers_list:
                load = os.getloadavg()[0]
                with BackendCpu(database) as cpu:
                    began = time.perf_counter()
                    report = await verify(
                        conn, seal_first=False, workers=workers, dsn=url, set_based=method == "set"
                    )
                    elapsed = time.perf_counter() - began
                used = cpu.seconds
                assert report.ok, report.summary()
                print(
                    f"verify {method}, {workers} connection(s)/process(es): {report.verified:,} records in "
                    f"{elapsed:.1f} s = {report.verified / elapsed:,.0f} records/s (load {load:.1f} before"
                    + (f"; PostgreSQL CPU {used * 1e6 / report.verified:.1f} µs/record" if used else "")
                    + ")"
                )
    finally:
        await conn.close()


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving one database while it runs (sampled from
    /proc every 0.2 s in a thread, so the verify's short-lived connections count too; the server
    must be local)."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.seen: dict[int, tuple[float, float]] = {}  # pid: (first, last) CPU seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BackendCpu:
        self._sample(first=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        return sum(last - first for first, last in self.seen.values())

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def _sample(self, first: bool = False) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                title = (proc / "cmdline").read_bytes().decode(errors="replace")
                if not title.startswith("postgres: ") or f" {self.database} " not in title:
                    continue
                parts = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            used = (int(parts[11]) + int(parts[12])) / tick
            pid = int(proc.name)
            begun = self.seen[pid][0] if pid in self.seen else (used if first else 0.0)
            self.seen[pid] = (begun, used)


async def _admin(server: str, statement: str) -> None:
    conn = await asyncpg.connect(_url(server, "postgres"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _url(server: str, name: str) -> str:
    parts = urlsplit(server)
    return urlunsplit(("postgresql", parts.netloc, "/" + name, parts.query, parts.fragment))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", help="an existing database to add to (never dropped)")
    parser.add_argument("--methods", nargs="+", choices=("set", "walk"), default=["set"])
    parser.add_argument("--workers", type=int, nargs="+", default=[os.cpu_count() or 1])
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.url:
        migrate(Settings(DATABASE_URL=args.url))
        asyncio.run(measure(args.url, args.rows, args.methods, args.workers))
        return
    server = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
    asyncio.run(_admin(server, f'CREATE DATABASE "{DB}"'))
    url = _url(server, DB)
    try:
        migrate(Settings(DATABASE_URL=url))
        asyncio.run(measure(url, args.rows, args.methods, args.workers))
    finally:
        if not args.keep:
            asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
