"""What the generated spec says beyond what FastAPI infers from the routes: readable operation
ids for generated clients, named request examples that work on the demo data, the headers each
operation really requires, and one example problem per documented error status.

Kept out of the routers so that a route stays a declaration of its scopes, parameters and
service call; the spec is finished here, once, when it is first built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.errors import PROBLEM_BASE, PROBLEM_JSON
from app.openapi_examples import REQUEST_EXAMPLES, path_value, query_value

OPERATION_IDS: dict[str, str] = {
    "token": "issue_token",
    "jwks": "get_jwks",
    "me": "get_me",
    "custody": "get_custody",
    "guardianship_history": "list_guardianships",
    "access_report": "get_access_report",
    "rotate_secret": "rotate_subscription_secret",
    "replay": "replay_subscription",
    "test_ping": "ping_subscription",
    "healthz": "get_health",
    "readyz": "get_readiness",
    "metrics": "get_metrics",
    "accept": "accept_referral",
    "decline": "decline_referral",
    "complete": "complete_referral",
    "withdraw": "withdraw_referral",
    "record_outcome": "record_report_outcome",
    "dashboard": "get_statistics_dashboard",
}
"""Route function name -> operationId, where the function's name alone reads poorly in a
generated client (``client.custody(...)``). Every other operation is named after its function."""


def operation_id(route: APIRoute) -> str:
    """FastAPI's ``generate_unique_id_function``: ``register_child``, ``get_custody``, ... instead
    of ``custody_v1_children__child_id__custody_get``. Route function names are unique across the
    routers (a test checks that the spec's operation ids are)."""
    return OPERATION_IDS.get(route.name, route.name)


WEBHOOK_TAGS = [
    {
        "name": "civil-affairs",
        "description": "Events civil affairs (民政) publishes: the registry, guardianship, assistance.",
    },
    {
        "name": "education",
        "description": "Events education (教育) publishes: enrolment, absence, dropout risk.",
    },
    {
        "name": "health",
        "description": "Events health (卫健) publishes: health checks, medical aid, referrals.",
    },
    {
        "name": "police",
        "description": "Events the police (公安) publish: incidents, missing children, interventions.",
    },
    {
        "name": "womens-federation",
        "description": "Events the women's federation (妇联) publishes: caring-mother pairings.",
    },
    {"name": "platform", "description": "Events the platform itself sends, such as the test ping."},
]

PURPOSE_DESCRIPTION = (
    "**Required for a cross-agency read** (a record your agency does not keep): why you ask, "
    "e.g. `child_protection`, `investigation`, `education_support`, `health_care`, "
    "`welfare_assistance`, `emergency` or `statistics`. Without it such a read is refused "
    "(`400 purpose_required`) and the refusal is logged. Reading your own agency's records needs none."
)
IF_MATCH_DESCRIPTION = (
    "**Required.** The `ETag` of your last read of the record (`GET` answers it in the `ETag` "
    'header, e.g. `"3"`): 428 without it, 412 if the record changed since.'
)
IDEMPOTENCY_EXAMPLE = "3f2b8c1e-6d4a-4e0b-9a57-0c1d2e3f4a5b"

_RESOURCE_NOT_FOUND = {
    "children": ("child_not_found", "No child with this id."),
    "consents": ("consent_not_found", "No consent with this id."),
    "subscriptions": ("subscription_not_found", "No subscription with this id."),
    "clients": ("client_not_found", "No client with this id."),
    "break-glass": ("break_glass_not_found", "No break-glass use with this id."),
    "investigations": ("investigation_not_found", "No open investigation with this reference."),
    "events": ("event_not_found", "No event with this id."),
    "event-types": ("event_type_not_found", "No such event type."),
}

_PROBLEMS: dict[str, tuple[str, str, str]] = {
    "400": (
        "purpose_required",
        "A purpose of use is required",
        "Send `X-Purpose-Of-Use` to read another agency's record.",
    ),
    "401": ("invalid_token", "Authentication required", "Use an `Authorization: Bearer <token>` header."),
    "403": (
        "insufficient_scope",
        "The token lacks a required scope",
        "This operation needs the scope(s): children:write.",
    ),
    "409": ("conflict", "Conflict", "The request conflicts with the record's current state."),
    "412": (
        "precondition_failed",
        "The resource has changed",
        "The record changed since you read it; read it again and reapply your change.",
    ),
    "413": ("payload_too_large", "Request body too large", "The body is larger than 1 MiB."),
    "415": ("unsupported_media_type", "Unsupported media type", "Send `Content-Type: application/json`."),
    "422": (
        "validation_failed",
        "The request cannot be processed",
        "The request is not valid; see `errors`.",
    ),
    "428": (
        "precondition_required",
        "If-Match header required",
        "Send `If-Match` with the ETag from your last read.",
    ),
    "429": ("too_many_requests", "Too many requests", "Slow down; see `Retry-After`."),
    "503": ("service_unavailable", "Service temporarily unavailable", "Try again shortly."),
}

_CONFLICTS: dict[str, tuple[str, str]] = {
    "register_child": (
        "duplicate_resident_id",
        "A child with this resident ID number is already registered.",
    ),
    "update_child": ("child_exited", "An exited record is read-only."),
    "exit_child": ("child_exited", "The child has already exited the registry."),
    "record_guardianship": ("child_exited", "An exited record is read-only."),
    "record_consent": ("child_exited", "An exited record is read-only."),
    "revoke_consent": ("consent_already_revoked", "The consent is already revoked."),
    "create_agency": ("agency_exists", "An agency with this code exists."),
    "revoke_client": ("client_already_revoked", "The client is already revoked."),
    "rotate_client_secret": ("client_revoked", "A revoked client cannot get a new secret."),
    "review_break_glass": ("already_reviewed", "This break-glass use has already been reviewed."),
    "close_investigation": ("investigation_closed", "The investigation is already closed."),
    "publish_event": ("duplicate_event", "You already published an event with this `source` and `id`."),
    "replay_subscription": (
        "not_a_webhook",
        "A pull subscription replays by reading the feed from an earlier `after`.",
    ),
    "rotate_subscription_secret": ("not_a_webhook", "A pull subscription has no signing secret."),
    "ping_subscription": ("not_a_webhook", "A pull subscription has no endpoint to ping."),
    "read_feed": ("not_a_pull_subscription", "The subscription is not a pull subscription."),
}


def _problem_example(path: str, operation: dict[str, Any], status: str) -> dict[str, Any] | None:
    if status == "404":
        segment = next((s for s in reversed(path.split("/")) if s and not s.startswith("{")), "")
        resource = next((r for r in _RESOURCE_NOT_FOUND if r in path.split("/")), segment)
        code, detail = _RESOURCE_NOT_FOUND.get(resource, ("not_found", "No such resource."))
        title = "Not found"
    elif status == "409" and operation.get("operationId") in _CONFLICTS:
        code, detail = _CONFLICTS[operation["operationId"]]
        title = "Conflict"
    elif status == "429" and any(p.get("name") == "X-Break-Glass" for p in operation.get("parameters", [])):
        code, title = "break_glass_limit", "Daily break-glass limit reached"
        detail = "This client has used break-glass 5 times in 24 hours; the limit is 5."
    elif status in _PROBLEMS:
        code, title, detail = _PROBLEMS[status]
    else:
        return None
    value = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": int(status),
        "code": code,
        "detail": detail,
        "instance": path,
        "request_id": "2f1c7e0a9b5d4c1e",
    }
    if status == "422":
        value["errors"] = [
            {
                "loc": ["body", "region_code"],
                "msg": "String should match pattern",
                "type": "string_pattern_mismatch",
            }
        ]
    return {code: {"summary": f"{status} {code}", "value": value}}


def _document_parameters(operation: dict[str, Any], method: str) -> None:
    op_id = operation.get("operationId", "")
    for parameter in operation.get("parameters", []):
        name, where = parameter.get("name"), parameter.get("in")
        if where == "path":
            value = path_value(op_id, name)
            if value is not None:
                parameter["example"] = value
        elif where == "query" and query_value(op_id, name) is not None:
            parameter["example"] = query_value(op_id, name)
        elif where == "header" and name == "X-Purpose-Of-Use":
            parameter["description"] = PURPOSE_DESCRIPTION
            # Counts are read for the purpose `statistics` (any other is a 400).
            statistics = "statistics" in operation.get("tags", [])
            parameter["example"] = "statistics" if statistics else "child_protection"
        elif where == "header" and name == "If-Match":
            # A demo record that has not changed yet has ETag "1": Swagger UI pre-fills it.
            parameter["example"] = '"1"'
            if method == "patch":
                _require_if_match(parameter)
        elif where == "header" and name == "Idempotency-Key":
            parameter["example"] = IDEMPOTENCY_EXAMPLE


def _require_if_match(parameter: dict[str, Any]) -> None:
    """The service answers 428 without it (not FastAPI's 422), so the route declares it
    optional; the contract is that it is required."""
    parameter["required"] = True
    parameter["description"] = IF_MATCH_DESCRIPTION
    parameter["schema"] = {"type": "string", "maxLength": 200, "examples": ['"3"']}


def _declare_break_glass_limit(operation: dict[str, Any]) -> None:
    """Every operation that honours `X-Break-Glass` can answer 429 `break_glass_limit` (the
    client's daily budget is spent); the header comes from a shared dependency, so it is
    declared here, once, rather than in each route."""
    if not any(p.get("name") == "X-Break-Glass" for p in operation.get("parameters", [])):
        return
    operation.setdefault("responses", {}).setdefault(
        "429",
        {
            "description": "`break_glass_limit`: this client used break-glass its daily number of "
            "times; retry after `Retry-After` seconds.",
            "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}},
        },
    )


def _document_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    _document_parameters(operation, method)
    _declare_break_glass_limit(operation)
    examples = REQUEST_EXAMPLES.get(operation.get("operationId", ""))
    if examples:
        for media in operation.get("requestBody", {}).get("content", {}).values():
            media.pop("example", None)
            media["examples"] = examples
    for status, response in operation.get("responses", {}).items():
        media = response.get("content", {}).get(PROBLEM_JSON)
        if media is None or not status.isdigit() or int(status) < 400:
            continue
        example = _problem_example(path, operation, status)
        if example:
            media["examples"] = example


def _name_inline_body_schemas(schema: dict[str, Any]) -> None:
    """A body schema written inline (the token endpoint's form) becomes a named component, so a
    generated client calls its model ``TokenRequest``, not ``IssueTokenTokenRequest``."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for media in operation.get("requestBody", {}).get("content", {}).values():
                body = media.get("schema", {})
                title = body.get("title")
                if "$ref" not in body and body.get("type") == "object" and title:
                    components.setdefault(title, body)
                    media["schema"] = {"$ref": f"#/components/schemas/{title}"}


def document(schema: dict[str, Any]) -> dict[str, Any]:
    _name_inline_body_schemas(schema)
    for path, path_item in schema.get("paths", {}).items():
        for method, operation in path_item.items():
            if isinstance(operation, dict) and "responses" in operation:
                _document_operation(path, method, operation)
    known = {tag["name"] for tag in schema.get("tags", [])}
    schema.setdefault("tags", []).extend(t for t in WEBHOOK_TAGS if t["name"] not in known)
    return schema


def install_openapi_docs(app: FastAPI) -> None:
    """Finish the spec the first time it is built (after the error handlers' own pass)."""
    build: Callable[[], dict[str, Any]] = app.openapi
    done = False

    def openapi() -> dict[str, Any]:
        nonlocal done
        schema = build()
        if not done:
            document(schema)
            done = True
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
