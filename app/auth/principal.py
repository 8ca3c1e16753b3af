"""The authenticated caller, as every service sees it."""

from __future__ import annotations

from dataclasses import dataclass

from app.auth.scopes import Scope


@dataclass(frozen=True, slots=True)
class Principal:
    client_id: str
    agency: str
    scopes: frozenset[Scope]
    region: str
    """Administrative-division prefix; an empty string means the whole country."""
    token_id: str
    issuer: str

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes

    def covers_region(self, region_code: str) -> bool:
        return region_code.startswith(self.region)
