"""Validating a payload: the quick validator (jsonschema_rs) may only make a valid body cheaper.

For every type in the catalog, its example and many bodies broken in one place each (a field
missing, one too many, each field given values of every JSON kind, malformed dates, ids and
patterns, numbers past 64 bits, lone surrogates, strings past any length) get the same verdict
from :meth:`EventType.validate` as from jsonschema's validator alone, which was the only one
before: a body refused before is refused now, with the same errors."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from app.events import catalog
from app.events.examples import example_data

ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    2**64,
    -(2**63) - 1,
    "",
    "x" * 5000,
    "\ud800",
    "2026-13-45",
    "2026-11-28",
    "2026-11-28T08:00:00",
    "2026-11-28T08:00:00+08:00",
    "2026-11-28 08:00:00+08:00",
    "2026-11-28T08:00:00Z\n",
    "2026-12-31T23:59:60Z",
    "2026-11-28t08:00:00z",
    "2026-W48-1",
    "12345678123412341234123456789abc",
    "{12345678-1234-1234-1234-123456789abc}",
    "12345678-1234-1234-1234-123456789abc",
    "(",
    "510107\n",
    "٥١٠١٠٧",
    [],
    [None],
    {},
    {"unexpected": 1},
]


def _broken(value: Any, schema: dict[str, Any]) -> Iterator[Any]:
    """``value`` broken in one place at a time, at every depth of ``schema``."""
    yield from ODD_VALUES
    properties = schema.get("properties")
    if isinstance(value, dict) and isinstance(properties, dict):
        for name in value:
            missing = dict(value)
            del missing[name]
            yield missing
        yield {**value, "unexpected_field": "x"}
        for name, sub in properties.items():
            for variant in _broken(value.get(name), sub if isinstance(sub, dict) else {}):
                changed = copy.copy(value)
                changed[name] = variant
                yield changed
    items = schema.get("items")
    if isinstance(value, list) and isinstance(items, dict):
        sample = value[0] if value else None
        for variant in _broken(sample, items):
            yield [*value, variant]
            yield [variant]
        if value:
            yield [value[0], value[0]]  # uniqueItems


def _bodies(event_type: catalog.EventType) -> Iterator[Any]:
    example = example_data(event_type.schema)
    yield example
    yield from _broken(example, event_type.schema)


TYPES = sorted(catalog.catalog())


@pytest.mark.parametrize("type_name", TYPES)
def test_the_quick_look_never_passes_a_body_jsonschema_refuses(type_name: str) -> None:
    event_type = catalog.catalog()[type_name]
    checked = refused = 0
    for body in _bodies(event_type):
        reference = list(event_type._validator.iter_errors(body))
        found = event_type.validate(body)
        assert bool(found) == bool(reference), (type_name, repr(body)[:200])
        checked += 1
        refused += bool(reference)
    assert checked > 20 and refused > 10  # the corpus does break bodies


@pytest.mark.parametrize("type_name", TYPES)
def test_each_example_passes_both(type_name: str) -> None:
    event_type = catalog.catalog()[type_name]
    example = example_data(event_type.schema)
    assert event_type._quick.is_valid(example)
    assert event_type.validate(example) == []
