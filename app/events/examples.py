"""An example ``data`` payload for every catalog type, made from the type's own schema.

Built rather than written by hand, so that a new type (or a new field) gets a valid example the
moment it enters the catalog; names in ``_TEXT`` make the common fields read like real data. The
example is published as the schema's ``examples`` (``GET /v1/event-types`` and the spec's
``webhooks`` section), and a test validates each against its schema.
"""

from __future__ import annotations

from typing import Any

DEMO_CHILD_ID = "ada71825-d133-4af8-8c55-343669e0b765"
"""The first demo child (扎西·多吉, app/services/demo.py), so an example can be published as it is."""

_REFERENCE = "3b241101-e2bb-4255-8caf-4136c566a962"

_TEXT = {
    "school": "簇桥小学",
    "from_school": "簇桥小学",
    "to_school": "武侯实验中学",
    "hospital": "四川省妇幼保健院",
    "provider": "武侯区残疾人康复中心",
    "service": "家庭教育指导",
    "grade": "三年级",
    "case_ref": "CASE-510107-2026-0042",
    "volunteer_ref": "VOL-510107-0007",
    "description": "演示：放学后无人接送",
}

_CODES = {
    "risk_level": "high",
    "urgency": "soon",
    "severity": "moderate",
}

_UNIT = {"name": "簇桥街道办事处", "duty_phone": "028-85000000"}


def _value(name: str, prop: dict[str, Any]) -> Any:
    kind = prop.get("type")
    if "enum" in prop:
        preferred = _CODES.get(name)
        return preferred if preferred in prop["enum"] else prop["enum"][0]
    if kind == "array":
        items = prop.get("items", {})
        return [_value(name, items)] if "enum" in items else []
    if kind == "object":
        return {key: _UNIT[key] for key in prop.get("properties", {}) if key in _UNIT}
    if kind == "boolean":
        return True
    if kind == "integer":
        return max(int(prop.get("minimum", 0)), min(3, int(prop.get("maximum", 3))))
    if kind == "number":
        return 1200
    fmt = prop.get("format")
    if fmt == "uuid":
        return DEMO_CHILD_ID if name == "child_id" else _REFERENCE
    if fmt == "date":
        # Ends and deadlines fall after starts, as they would in a real record.
        later = name.endswith(("_due", "_to")) or name in ("ended_on", "returned_on", "fulfilled_on")
        return "2026-12-18" if later else "2026-11-27"
    if fmt == "date-time":
        return "2026-11-27T08:30:00+08:00"
    if "pattern" in prop:
        return "510107005003"
    return _TEXT.get(name, "演示数据")


def example_data(schema: dict[str, Any]) -> dict[str, Any]:
    """A payload with every property of ``schema`` filled in."""
    return {name: _value(name, prop) for name, prop in schema.get("properties", {}).items()}
