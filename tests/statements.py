"""Counting the statements an engine sends, for tests of what reaches the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from app.db import Database


class Statements:
    """Counts, while open, the statements ``db``'s engine sends that begin with ``prefix``."""

    def __init__(self, db: Database, prefix: str) -> None:
        self.db, self.prefix, self.count = db, prefix, 0

    def _seen(self, *args: Any) -> None:
        if args[2].startswith(self.prefix):  # (connection, cursor, statement, ...)
            self.count += 1

    def __enter__(self) -> Statements:
        event.listen(self.db.engine.sync_engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.db.engine.sync_engine, "before_cursor_execute", self._seen)
