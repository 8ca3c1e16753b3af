"""The access record and its canonical row hash."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from app.audit import AccessRecord, AuditWriter, Decision
from app.audit.records import Basis, canonical_json, content_from_row, row_hash
from tests.audit.conftest import make_record

MOMENT = datetime(2026, 11, 28, 9, 30, 0, 123456, tzinfo=UTC)


class TestRowHash:
    def test_canonical_json_is_sorted_compact_utf8_with_the_time_in_utc(self) -> None:
        record = make_record(agency="police", query=None)
        beijing = MOMENT.astimezone(timezone(timedelta(hours=8)))
        document = canonical_json(record.content(), beijing)
        assert document.startswith(b'{"action":"custody.read","agency":"police",')
        assert b'"logged_at":"2026-11-28T09:30:00.123456Z"' in document
        assert "未成年人保护法".encode() in document  # not \u-escaped
        # The same bytes as the standard library's sorted, compact, non-ASCII form.
        expected = dict(record.content(), logged_at="2026-11-28T09:30:00.123456Z")
        assert document == json.dumps(
            expected, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")

    def test_any_change_of_content_or_time_changes_the_hash(self) -> None:
        record = make_record()
        digest = row_hash(record.content(), MOMENT)
        assert digest == row_hash(record.content(), MOMENT)
        assert digest != row_hash(record.content(), MOMENT + timedelta(microseconds=1))
        edited = dict(record.content(), categories_returned=["custody", "contact", "health"])
        assert digest != row_hash(edited, MOMENT)

    async def test_hash_recomputed_from_the_stored_row_matches(
        self, writer: AuditWriter, conn: asyncpg.Connection
    ) -> None:
        record = make_record(
            action="child.list",
            decision=Decision.allow_redacted,
            child_id=None,
            child_ids=[uuid.uuid4(), str(uuid.uuid4()).upper()],
            query={"region": "510107", "age": {"min": 6, "max": 16}, "status": None, "tags": ["留守", True]},
            reason=None,
            agency="womens-federation",
        )
        row_id = await writer.record(record)
        row = await conn.fetchrow("SELECT * FROM access_log WHERE id = $1", row_id)
        assert row is not None
        assert row_hash(content_from_row(row), row["logged_at"]) == row["row_hash"]
        assert content_from_row(row) == record.content()


class TestValidation:
    @pytest.mark.parametrize(
        ("overrides", "error"),
        [
            ({"query": {"score": 0.5}}, TypeError),
            ({"basis": {"custody": {"weight": 1.0}}}, TypeError),
            ({"agency": "pol\x00ice"}, ValueError),
            ({"query": {1: "x"}}, TypeError),
            ({"decision": "maybe"}, ValueError),
            ({"action": ""}, ValueError),
            ({"child_id": "not-a-uuid"}, ValueError),
            ({"categories_returned": ("custody", 7)}, TypeError),
        ],
    )
    def test_what_the_database_or_the_hash_cannot_take_is_refused_at_construction(
        self, overrides: dict[str, object], error: type[Exception]
    ) -> None:
        with pytest.raises(error):
            make_record(**overrides)

    def test_values_are_normalised(self) -> None:
        child = uuid.uuid4()
        record = AccessRecord(
            action="child.read", decision="deny", child_id=str(child), categories_withheld=["health"]
        )
        assert record.child_id == child
        assert record.decision is Decision.deny
        assert record.categories_withheld == ("health",)

    def test_basis_is_checked_once_and_frozen(self) -> None:
        given = {"custody": {"ground": "statute", "ref": "police-custody", "citation": "《未成年人保护法》"}}
        record = make_record(basis=given)
        given["custody"]["ref"] = "changed later"  # the caller's dict is not the record's
        assert record.basis == {
            "custody": {"ground": "statute", "ref": "police-custody", "citation": "《未成年人保护法》"}
        }
        with pytest.raises(TypeError):
            record.basis["custody"]["ref"] = "edited"  # type: ignore[index]
        # A checked basis is shared as it is by every record of the same decision shape.
        again = make_record(basis=record.basis)
        assert again.basis is record.basis
        with pytest.raises(TypeError):
            Basis({"custody": {"ground": "statute", "weight": 0.5}})
