"""What one catalog entry declares: its name, who publishes it and the schema of its ``data``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.models.agency import AgencyKind

PREFIX = "cn.gov.childlink."


@dataclass(frozen=True)
class TypeSpec:
    name: str
    """Without the prefix and version: ``education.dropout-risk.flagged``."""
    title: str
    description: str
    publishers: tuple[AgencyKind, ...]
    properties: dict[str, dict[str, object]]
    required: tuple[str, ...]
    version: int = 1
    registry_only: bool = False
    """Emitted by the platform itself (the registry, the scheduler), never through ``POST /v1/events``."""
    addressed: bool = False
    """Addressed to one agency, which reads it as its own (app/events/audience.py): it carries
    references and codes only, so none of its fields needs a data category."""
    example: dict[str, Any] | None = None
    """A valid ``data`` payload, served in the schema's ``examples`` (checked when the catalog is built)."""

    @property
    def type(self) -> str:
        return f"{PREFIX}{self.name}.v{self.version}"
