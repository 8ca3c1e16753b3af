"""The event catalog: every type's schema, who may publish it and what data categories it carries,
with the two operations the exchange needs from it: validate a payload and redact one.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, FormatChecker

from app.events.examples import example_data
from app.events.notice_types import NOTICE_SPECS
from app.events.platform_types import PLATFORM_SPECS
from app.events.schema import CATEGORY_KEY, ITEM_CATEGORIES_KEY, data_schema
from app.events.types import SPECS, TypeSpec
from app.models.vocabulary import DataCategory

TYPE_PATTERN = r"^[a-z0-9][a-z0-9.-]{2,118}[a-z0-9]$"
TYPE_FILTER_PATTERN = r"^[a-z0-9.*-]{1,120}$"


def _format_checker() -> FormatChecker:
    checker = FormatChecker(["date", "uuid", "regex"])

    # jsonschema checks date-time only with an optional extra installed; check it ourselves, and
    # insist on an offset so that "when" is never ambiguous across agencies.
    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.tzinfo is not None

    @checker.checks("date", raises=ValueError)
    def _date(value: object) -> bool:
        if not isinstance(value, str):
            return True
        return len(value) == 10 and bool(date.fromisoformat(value))

    return checker


def _conforms(check: Callable[[object], bool], raises: Any) -> Callable[[str], bool]:
    """A format check of the checker, as a yes or no (jsonschema's own reading of it)."""

    def conforms(value: str) -> bool:
        try:
            return bool(check(value))
        except raises:
            return False

    return conforms


def _quick_validator(schema: dict[str, Any], checker: FormatChecker) -> Any:
    """The schema compiled by ``jsonschema_rs`` with the same format checks (the very functions
    of ``checker``), for :meth:`EventType.validate`'s first look: a hundred times faster than
    the Python validator, which a publish otherwise spent a fifth of its time in."""
    formats = {name: _conforms(check, raises) for name, (check, raises) in checker.checkers.items()}
    return jsonschema_rs.validator_for(schema, formats=formats, validate_formats=True)


@dataclass(frozen=True, slots=True)
class SchemaError:
    """One failure, as a path and a rule: never the offending value, which may be personal."""

    loc: list[str]
    rule: str
    msg: str


_RULE_MESSAGES = {
    "required": "a required field is missing",
    "additionalProperties": "unknown field",
    "type": "wrong type",
    "enum": "not one of the allowed codes",
    "format": "wrong format",
    "pattern": "wrong format",
    "minLength": "too short",
    "maxLength": "too long",
    "minimum": "too small",
    "maximum": "too large",
    "minItems": "too few items",
    "maxItems": "too many items",
    "uniqueItems": "items repeat",
}


@dataclass(frozen=True)
class EventType:
    spec: TypeSpec
    schema: dict[str, Any]
    field_categories: dict[str, DataCategory]
    item_categories: dict[str, dict[str, DataCategory]]
    categories: frozenset[DataCategory]
    _validator: Draft202012Validator = field(repr=False, compare=False)
    _quick: Any = field(repr=False, compare=False)

    @property
    def type(self) -> str:
        return self.spec.type

    def may_publish(self, agency_kind: str) -> bool:
        """Through ``POST /v1/events``; registry types come from the registry alone."""
        return not self.spec.registry_only and agency_kind in self.spec.publishers

    def validate(self, data: Any) -> list[SchemaError]:
        """What in ``data`` breaks the schema; empty when nothing does. The quick validator's
        yes is taken as it is; anything else (a no, or a value it cannot take, such as an
        integer past 64 bits or a lone surrogate) is decided by jsonschema's validator, whose
        errors are the ones reported. So the quick look can only make a valid body cheaper:
        it never lets through what jsonschema would refuse unless the two disagree on a yes,
        which tests/events/test_catalog.py guards for every type."""
        try:
            if self._quick.is_valid(data):
                return []
        except Exception:  # noqa: S110 (anything it cannot take, jsonschema decides)
            pass
        errors = []
        for error in sorted(self._validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
            loc = ["data", *(str(p) for p in error.absolute_path)]
            if error.validator == "required":
                # The message names the missing property; that is a field name, not a value.
                missing = str(error.message).split("'")[1] if "'" in str(error.message) else ""
                loc.append(missing)
            elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
                allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
                extra = sorted(k for k in error.instance if k not in allowed)
                loc.append(extra[0] if extra else "")
            rule = str(error.validator)
            errors.append(SchemaError(loc, rule, _RULE_MESSAGES.get(rule, "does not match the schema")))
        return errors

    def classify(self, data: dict[str, Any]) -> list[DataCategory]:
        """The categories this payload actually carries (only fields present count)."""
        found: set[DataCategory] = set()
        for name, value in data.items():
            items = self.item_categories.get(name)
            if items is not None and isinstance(value, list):
                found.update(items[v] for v in value if v in items)
                if not value and name in self.field_categories:
                    found.add(self.field_categories[name])
            elif items is not None and isinstance(value, str) and value in items:
                found.add(items[value])
            elif name in self.field_categories:
                found.add(self.field_categories[name])
        return sorted(found)

    def redact(
        self, data: dict[str, Any], allowed: Collection[DataCategory]
    ) -> tuple[dict[str, Any], list[DataCategory]]:
        """The payload without the fields (and list items) of categories not ``allowed``, and the
        categories that were taken out."""
        out: dict[str, Any] = {}
        withheld: set[DataCategory] = set()
        for name, value in data.items():
            items = self.item_categories.get(name)
            if items is not None and isinstance(value, list):
                kept = []
                for item in value:
                    category = items.get(item, self.field_categories.get(name))
                    if category is None or category in allowed:
                        kept.append(item)
                    else:
                        withheld.add(category)
                if kept or not value:
                    out[name] = kept
                continue
            category = self.field_categories.get(name)
            if items is not None and isinstance(value, str):
                category = items.get(value, category)
            if category is None or category in allowed:
                out[name] = value
            else:
                withheld.add(category)
        return out, sorted(withheld)


def _build(spec: TypeSpec) -> EventType:
    schema = data_schema(spec.type, spec.properties, spec.required, addressed=spec.addressed)
    # A hand-written example keeps its meaningful values; generated ones fill the properties it
    # leaves out, so integrators see every field the type can carry.
    example = {**example_data(schema), **(spec.example or {})}
    schema["examples"] = [example]
    Draft202012Validator.check_schema(schema)
    field_categories = {
        name: DataCategory(prop[CATEGORY_KEY])
        for name, prop in schema["properties"].items()
        if CATEGORY_KEY in prop
    }
    item_categories = {
        name: {k: DataCategory(v) for k, v in prop[ITEM_CATEGORIES_KEY].items()}
        for name, prop in schema["properties"].items()
        if ITEM_CATEGORIES_KEY in prop
    }
    categories = set(field_categories.values())
    for mapping in item_categories.values():
        categories.update(mapping.values())
    checker = _format_checker()
    validator = Draft202012Validator(schema, format_checker=checker)
    if not validator.is_valid(example):
        raise ValueError(f"{spec.type}: the example does not match the schema")
    return EventType(
        spec=spec,
        schema=schema,
        field_categories=field_categories,
        item_categories=item_categories,
        categories=frozenset(categories),
        _validator=validator,
        _quick=_quick_validator(schema, checker),
    )


@cache
def catalog() -> dict[str, EventType]:
    """Every type by its full name, built (and each schema checked) once per process."""
    built = [_build(spec) for spec in (*SPECS, *PLATFORM_SPECS, *NOTICE_SPECS)]
    by_type = {event_type.type: event_type for event_type in built}
    if len(by_type) != len(built):
        raise ValueError("duplicate event type in the catalog")
    return by_type


def get(type_name: str) -> EventType | None:
    return catalog().get(type_name)


def matching(patterns: Iterable[str]) -> list[str]:
    """Catalog types matched by subscription filters (``*`` matches any run of characters)."""
    patterns = list(patterns)
    return [name for name in catalog() if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
