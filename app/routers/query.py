"""Refusing query parameters a route does not declare.

FastAPI ignores a query parameter no route declares, so ``GET /v1/children?resident_id=...``
answered the unfiltered list as if the filter had worked, and put an ID number in a URL on the
way. Routers of child data add :func:`refuse_unknown_query` as a dependency: any parameter the
matched route (or one of its dependencies) does not declare is a 400 ``unknown_parameter``.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.errors import BadRequest

_declared: dict[int, frozenset[str]] = {}
"""Each route's query parameter names (their aliases), by route id: routes live as long as the app."""


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")


class UnknownParameter(BadRequest):
    code, title = "unknown_parameter", "Unknown query parameter"


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def declared_query(route: APIRoute) -> frozenset[str]:
    """The query parameters ``route`` reads, its dependencies' included."""
    names = _declared.get(id(route))
    if names is None:
        names = _declared[id(route)] = frozenset(_query_names(route.dependant))
    return names


_ANY_QUERY: set[Any] = set()


def answers_before_parameters(endpoint: Any) -> Any:
    """Mark a route that refuses the request whatever it carries (a 405 for a method a fixed path
    does not take): its answer must not depend on the query parameters sent."""
    _ANY_QUERY.add(endpoint)
    return endpoint


def unknown_query(route: Any, query_keys: Any) -> list[str]:
    """The query parameters sent that ``route`` does not read, sorted."""
    if getattr(route, "endpoint", None) in _ANY_QUERY:
        return []
    known = declared_query(route) if isinstance(route, APIRoute) else frozenset()
    return sorted({key for key in query_keys if key not in known})


async def refuse_unknown_query(request: Request) -> None:
    """400 ``unknown_parameter`` for a query parameter this route does not declare, naming the
    unknown ones (``parameters``) when they are plain names; a name that is not (it may carry
    anything, an ID number included) is counted but not echoed."""
    unknown = unknown_query(request.scope.get("route"), request.query_params.keys())
    if unknown:
        raise UnknownParameter(
            f"This operation takes no such query parameter ({len(unknown)} unknown); "
            "see the operation's parameters in the API reference.",
            extra={"parameters": [name for name in unknown if _PLAIN_NAME.match(name)]},
        )
