"""The access log: every cross-agency read and denial, recorded durably before the answer leaves,
append-only in the database and hash-chained so that ``childlink audit verify`` proves it.

- :class:`AccessRecord` (``records``): what the access layer records, and the row hash.
- :class:`AuditWriter` (``writer``): ``await writer.record(rec)`` -> row id, group-committed;
  raises :class:`AuditUnavailable` (503) when the record could not be committed.
- ``sealer``: the background task chaining committed rows; ``verify``: the integrity check.
- :func:`start_audit` / :func:`stop_audit`: wired into the app lifespan;
  :func:`get_audit_writer` returns the running writer from a request.
"""

from app.audit.lifecycle import get_audit_writer, start_audit, stop_audit
from app.audit.records import KNOWN_ACTIONS, AccessRecord, Decision
from app.audit.writer import AuditUnavailable, AuditWriter

__all__ = [
    "KNOWN_ACTIONS",
    "AccessRecord",
    "AuditUnavailable",
    "AuditWriter",
    "Decision",
    "get_audit_writer",
    "start_audit",
    "stop_audit",
]
