"""Building blocks for event ``data`` schemas, and what the schemas say about data categories.

Each top-level property of a ``data`` schema carries ``x-data-category``: the category of personal
data it holds (DESIGN §4). A property without it is a reference (the child's UUID, a record id, a
version) and is always delivered. An array of codes may also carry ``x-item-categories`` when its
items fall into different categories (a registry category "guardian_harm" is law-enforcement data,
"left_behind" is welfare data). The same schema therefore validates a publish and tells the
delivery path what to withhold: one source of truth, served at ``GET /v1/event-types``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from app.models.vocabulary import DataCategory

CATEGORY_KEY = "x-data-category"
ITEM_CATEGORIES_KEY = "x-item-categories"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

PHONE_PATTERN = r"^\+?[0-9][0-9 -]{4,19}$"
REGION_PATTERN = r"^(\d{6}|\d{9}|\d{12})$"


def _tagged(schema: dict[str, Any], category: DataCategory | None, description: str) -> dict[str, Any]:
    schema["description"] = description
    if category is not None:
        schema[CATEGORY_KEY] = str(category)
    return schema


def date(category: DataCategory, description: str) -> dict[str, Any]:
    return _tagged({"type": "string", "format": "date"}, category, description)


def date_time(category: DataCategory, description: str) -> dict[str, Any]:
    return _tagged({"type": "string", "format": "date-time"}, category, description)


def text(category: DataCategory, description: str, *, max_length: int = 200) -> dict[str, Any]:
    return _tagged({"type": "string", "minLength": 1, "maxLength": max_length}, category, description)


def flag(category: DataCategory, description: str) -> dict[str, Any]:
    return _tagged({"type": "boolean"}, category, description)


def integer(category: DataCategory, description: str, *, minimum: int, maximum: int) -> dict[str, Any]:
    return _tagged({"type": "integer", "minimum": minimum, "maximum": maximum}, category, description)


def amount(category: DataCategory, description: str) -> dict[str, Any]:
    return _tagged({"type": "number", "minimum": 0, "maximum": 10_000_000}, category, description)


def code(
    values: Iterable[str],
    category: DataCategory,
    description: str,
    *,
    item_categories: Mapping[str, DataCategory] | None = None,
) -> dict[str, Any]:
    """One code; ``item_categories`` when its values fall in different categories (a case's
    kind: a dropout case is education data, a medical-aid case health data)."""
    schema: dict[str, Any] = {"type": "string", "enum": sorted(str(v) for v in values)}
    if item_categories:
        schema[ITEM_CATEGORIES_KEY] = {str(k): str(v) for k, v in sorted(item_categories.items())}
    return _tagged(schema, category, description)


def codes(
    values: Iterable[str],
    category: DataCategory,
    description: str,
    *,
    item_categories: Mapping[str, DataCategory] | None = None,
    min_items: int = 0,
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "array",
        "items": {"type": "string", "enum": sorted(str(v) for v in values)},
        "uniqueItems": True,
        "minItems": min_items,
        "maxItems": 20,
    }
    if item_categories:
        schema[ITEM_CATEGORIES_KEY] = {str(k): str(v) for k, v in sorted(item_categories.items())}
    return _tagged(schema, category, description)


def reference(description: str, *, fmt: str = "uuid") -> dict[str, Any]:
    """An identifier that is not itself personal data: always delivered."""
    return {"type": "string", "format": fmt, "description": description}


def region() -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": REGION_PATTERN,
        "description": "The child's administrative division (GB/T 2260), as held by the registry.",
    }


def unit(description: str) -> dict[str, Any]:
    """The office to contact about the event, with its duty phone (contact data)."""
    return _tagged(
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 200},
                "duty_phone": {"type": "string", "pattern": PHONE_PATTERN},
            },
        },
        DataCategory.contact,
        description,
    )


def enum_values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def data_schema(
    type_name: str,
    properties: dict[str, dict[str, Any]],
    required: Iterable[str],
    *,
    addressed: bool = False,
) -> dict[str, Any]:
    required = list(required)
    unknown = set(required) - properties.keys()
    if unknown:
        raise ValueError(f"{type_name}: required fields {sorted(unknown)} are not defined")
    if not addressed and not any(CATEGORY_KEY in properties[name] for name in required):
        # An event with no categorised field would carry nothing the access layer can decide on.
        raise ValueError(f"{type_name}: at least one required field must carry a data category")
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"urn:childlink:event-type:{type_name}",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": required,
    }


def person(description: str) -> dict[str, Any]:
    """A person to contact (a guardian, a relative the child was placed with): contact data."""
    return _tagged(
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "relationship": {"type": "string", "minLength": 1, "maxLength": 40},
                "phone": {"type": "string", "pattern": PHONE_PATTERN},
            },
        },
        DataCategory.contact,
        description,
    )
