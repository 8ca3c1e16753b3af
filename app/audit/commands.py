"""``childlink audit ...``: seal, verify (against an anchor, signed checkpoints or from the last
trusted one), sign a checkpoint now. Registered into the main parser by :mod:`app.cli`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import orjson

from app.audit import partitions as partition_service
from app.audit.checkpoints import (
    Checkpoint,
    CheckpointInvalid,
    read_checkpoints,
    stored_tokens,
    take_checkpoint,
    tokens_in,
)
from app.audit.partitions import ArchiveError, verify_archive
from app.audit.sealer import seal_committed
from app.audit.verify import ANCHOR_NOTE, anchored_note, parse_anchor, verify
from app.auth.keys import KeyRing
from app.config import Settings
from app.db import asyncpg_dsn, direct_database_url

T = TypeVar("T")


def _fail(message: str, code: int = 1) -> int:
    print(f"childlink: {message}", file=sys.stderr)
    return code


def _with_conn(
    settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]], dsn: str | None = None
) -> T:
    async def run() -> T:
        conn = await asyncpg.connect(dsn or asyncpg_dsn(direct_database_url(settings)))
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def _read_json(path: str) -> Any:
    try:
        return orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise CheckpointInvalid(f"{path} cannot be read as JSON: {type(exc).__name__}") from None


def _platform_jwks(settings: Settings) -> dict[str, Any] | None:
    if not any(settings.resolved_key_dir.glob("k-*.pem")):
        return None
    return KeyRing(settings.resolved_key_dir, create_if_empty=False).jwks()


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    try:
        anchor = parse_anchor(args.anchor) if args.anchor else None
        jwks = _read_json(args.jwks) if args.jwks else _platform_jwks(settings)
        kept: list[Checkpoint] = []
        if args.checkpoints:
            if jwks is None:
                raise CheckpointInvalid("no JWKS to check the checkpoints with: pass --jwks FILE")
            kept = read_checkpoints(tokens_in(_read_json(args.checkpoints)), jwks)
    except (ValueError, CheckpointInvalid) as exc:
        return _fail(str(exc), 2)

    async def run(conn: asyncpg.Connection) -> tuple[Any, list[Checkpoint], int]:
        await seal_committed(conn)
        stored: list[Checkpoint] = []
        skipped = 0
        if jwks is not None:
            # The database's own checkpoints count only as far as their signatures hold: one
            # that fails (edited, or signed by a key since rotated away) is not evidence.
            for token in await stored_tokens(conn):
                try:
                    stored.extend(read_checkpoints([token], jwks))
                except CheckpointInvalid:
                    skipped += 1
        trusted = kept or stored
        since = trusted[-1] if args.since_checkpoint and trusted else None
        report = await verify(
            conn,
            anchor=anchor,
            checkpoints=[*kept, *stored],
            since=since,
            seal_first=False,
            workers=args.workers,
            dsn=dsn,
        )
        return report, trusted, skipped

    dsn = asyncpg_dsn(direct_database_url(settings))
    report, trusted, skipped = _with_conn(settings, run, dsn)
    if not report.ok:
        return _fail(report.summary())
    print(report.summary())
    # On stderr: stdout stays the one line a script parses.
    notes = []
    if trusted:
        newest = trusted[-1]
        source = "kept" if args.checkpoints else "stored"
        notes.append(
            f"held against {len(trusted)} {source} signed checkpoints, the newest at position "
            f"{newest.position}" + ("; checked only what follows it" if args.since_checkpoint else "")
        )
    if skipped:
        notes.append(f"{skipped} stored checkpoints were not used: their signatures do not verify")
    notes.append(anchored_note(anchor) if anchor else ANCHOR_NOTE)
    for note in notes:
        print(f"childlink: {note}", file=sys.stderr)
    return 0


def cmd_verify_any(args: argparse.Namespace, settings: Settings) -> int:
    return cmd_verify_archive(args, settings) if args.archive else cmd_verify(args, settings)


def cmd_verify_archive(args: argparse.Namespace, settings: Settings) -> int:
    try:
        jwks = _read_json(args.jwks) if args.jwks else _platform_jwks(settings)
        if jwks is None:
            raise ArchiveError("no JWKS to check the archive's signature with: pass --jwks FILE")
        report = verify_archive(Path(args.archive), jwks)
    except (ArchiveError, CheckpointInvalid) as exc:
        return _fail(f"archive TAMPERED or unreadable: {exc}")
    print(report.summary())
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    keys = KeyRing(settings.resolved_key_dir, create_if_empty=settings.is_development)
    out_dir = Path(args.out) if args.out else settings.audit_archive_dir
    # Detaching needs the tables' owner, the role migrations run as.
    owner_url = settings.migration_database_url or direct_database_url(settings)

    async def run() -> list[str]:
        conn = await asyncpg.connect(asyncpg_dsn(owner_url))
        done: list[str] = []
        try:
            await seal_committed(conn)
            attached = await partition_service.partitions(conn)
            if args.partition:
                chosen = [p for p in attached if p.name == args.partition]
                if not chosen:
                    raise ArchiveError(f"{args.partition} is not an attached access-log partition")
            else:
                chosen = await partition_service.expired(
                    conn, now=datetime.now(UTC), retention_days=settings.audit_retention_days
                )
            for partition in chosen:
                manifest = await partition_service.export_partition(
                    conn, partition, out_dir, keys=keys, issuer=settings.issuer
                )
                # Read back from disk and checked whole before the partition leaves the log.
                report = verify_archive(manifest, keys.jwks())
                if args.no_detach:
                    done.append(
                        f"exported {partition.name} to {manifest} ({report.rows} records); kept attached"
                    )
                    continue
                await partition_service.detach(conn, report)
                done.append(
                    f"exported {partition.name} to {manifest} ({report.rows} records), verified, detached"
                )
        finally:
            await conn.close()
        return done

    try:
        done = asyncio.run(run())
    except ArchiveError as exc:
        return _fail(str(exc))
    for line in done or ["no partition past retention"]:
        print(line)
    return 0


def cmd_seal(args: argparse.Namespace, settings: Settings) -> int:
    sealed = _with_conn(settings, lambda conn: seal_committed(conn))
    print(f"sealed {sealed} access log records")
    return 0


def cmd_checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    keys = KeyRing(settings.resolved_key_dir, create_if_empty=settings.is_development)

    async def run(conn: asyncpg.Connection) -> Checkpoint | None:
        await seal_committed(conn)
        return await take_checkpoint(conn, keys, issuer=settings.issuer, every_seconds=0)

    checkpoint = _with_conn(settings, run)
    if checkpoint is None:
        print("no checkpoint: nothing sealed since the last one")
        return 0
    print(orjson.dumps({"position": checkpoint.position, "jws": checkpoint.jws}).decode())
    return 0


def register(sub: Any) -> None:
    """Add ``audit`` and its commands to the main parser's subcommands."""
    audit = sub.add_parser("audit", help="the access log").add_subparsers(dest="action", required=True)
    audit_verify = audit.add_parser(
        "verify",
        help="seal, then prove the access log consistent (exit 0) or name the first bad row (exit 1); "
        "a forged row with a correct hash is detected only against an --anchor or kept --checkpoints",
    )
    audit_verify.add_argument(
        "--anchor",
        metavar="POSITION:HASH",
        help="a chain head printed by an earlier verify and kept outside the database: without one, a "
        "forged row appended with a correct hash, or a chain rewritten to its end, is not detected",
    )
    audit_verify.add_argument(
        "--checkpoints",
        metavar="FILE",
        help="signed checkpoints kept outside the database (a saved page of GET /v1/audit/checkpoints, "
        "or a JSON list of their jws): a rewritten chain, a deleted tail or a backdated row is named",
    )
    audit_verify.add_argument(
        "--jwks",
        metavar="FILE",
        help="the JWKS to check checkpoints with (default: the platform's keys in CHILDLINK_KEY_DIR)",
    )
    audit_verify.add_argument(
        "--since-checkpoint",
        action="store_true",
        help="start at the newest trusted checkpoint (kept, else stored) and check only what follows",
    )
    audit_verify.add_argument(
        "--archive",
        metavar="MANIFEST",
        help="check an exported partition archive instead of the live log (its manifest file; the data "
        "file beside it)",
    )
    audit_verify.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="connections checking ranges of the log at once in the database (processes, when "
        "walking from a checkpoint); default: one per CPU of this machine",
    )
    audit_verify.set_defaults(func=cmd_verify_any)
    audit_export = audit.add_parser(
        "export",
        help="export every partition past CHILDLINK_AUDIT_RETENTION_DAYS to a signed archive, verify it, "
        "detach it (as the tables' owner); the detached table is kept until you drop it",
    )
    audit_export.add_argument(
        "--out", metavar="DIR", help="archive folder (default CHILDLINK_AUDIT_ARCHIVE_DIR)"
    )
    audit_export.add_argument("--partition", metavar="NAME", help="export this partition, expired or not")
    audit_export.add_argument("--no-detach", action="store_true", help="export and verify only")
    audit_export.set_defaults(func=cmd_export)
    audit.add_parser("seal", help="append every committed record to the hash chain now").set_defaults(
        func=cmd_seal
    )
    audit.add_parser(
        "checkpoint", help="seal, then sign the chain head now (the sealer does it on its interval)"
    ).set_defaults(func=cmd_checkpoint)
