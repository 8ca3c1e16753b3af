"""The OpenAPI 3.1 ``webhooks`` section: one entry per catalog type (and the test ping), each
documenting the signed request a subscriber's endpoint receives."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.events import catalog

PING_TYPE = "cn.gov.childlink.platform.ping.v1"

_SIGNATURE_HEADERS: list[dict[str, Any]] = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": "The delivery's id: the same on every retry, so you can drop duplicates.",
        "schema": {"type": "string", "examples": ["msg_2f1c7e0a9b5d4c1e8a7b6c5d4e3f2a1b"]},
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": "Unix seconds when this attempt was signed; refuse stale ones (> 5 minutes old).",
        "schema": {"type": "string", "examples": ["1795852800"]},
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "description": "Standard Webhooks signature: space-separated `v1,<base64 HMAC-SHA256>` of "
        "`{webhook-id}.{webhook-timestamp}.{body}` keyed with the base64-decoded part of your "
        "`whsec_` secret. While a secret rotation is in its overlap, two signatures are sent; "
        "accept the request if either matches.",
        "schema": {"type": "string", "examples": ["v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="]},
    },
]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    "2XX": {"description": "Received. Anything else is retried on the subscription's schedule."},
    "410": {"description": "Gone: the subscription is disabled and nothing more is sent."},
    "429": {"description": "Slow down; a `Retry-After` header is honoured."},
}


def _payload_schema(type_name: str, data: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in data.items() if k not in ("$schema", "$id", "required")}
    return {
        "allOf": [{"$ref": "#/components/schemas/CloudEventOut"}],
        "properties": {"type": {"const": type_name}, "data": data},
    }


async def _receiver() -> None:
    """Documentation only: the subscriber implements this endpoint."""


def install_webhooks(app: FastAPI) -> None:
    for event_type in catalog.catalog().values():
        spec = event_type.spec
        app.webhooks.add_api_route(
            event_type.type,
            _receiver,
            methods=["POST"],
            tags=[spec.name.split(".", 1)[0]],
            summary=spec.title,
            description=(
                f"{spec.description}\n\nData categories: "
                + ", ".join(f"`{c}`" for c in sorted(event_type.categories))
                + ". Fields of a category your subscription's purpose gives no legal basis for are "
                "left out of `data` and named in `childlinkwithheld`."
            ),
            operation_id=f"webhook_{spec.name.replace('.', '_').replace('-', '_')}_v{spec.version}",
            responses=_RESPONSES,
            openapi_extra={
                "parameters": _SIGNATURE_HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _payload_schema(event_type.type, event_type.schema)}
                    },
                },
            },
        )
    app.webhooks.add_api_route(
        PING_TYPE,
        _receiver,
        methods=["POST"],
        tags=["platform"],
        summary="Test ping",
        description="Sent by `POST /v1/subscriptions/{id}/test`; about no child, carries no personal data.",
        operation_id="webhook_platform_ping_v1",
        responses=_RESPONSES,
        openapi_extra={
            "parameters": _SIGNATURE_HEADERS,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _payload_schema(
                            PING_TYPE,
                            {
                                "type": "object",
                                "properties": {"subscription_id": {"type": "string", "format": "uuid"}},
                            },
                        )
                    }
                },
            },
        },
    )
