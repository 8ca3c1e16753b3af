"""Starting and stopping the event exchange with the app (called from the lifespan)."""

from __future__ import annotations

from fastapi import FastAPI, Request

from app.config import Settings
from app.events.sender import WebhookSender


async def start_events(app: FastAPI, settings: Settings) -> None:
    """The webhook sender (``app.state.webhook_sender``, for subscription pings)."""
    app.state.webhook_sender = WebhookSender(settings, max_connections=10)


async def stop_events(app: FastAPI) -> None:
    sender: WebhookSender | None = getattr(app.state, "webhook_sender", None)
    if sender is not None:
        await sender.aclose()
        app.state.webhook_sender = None


def get_sender(request: Request) -> WebhookSender:
    sender: WebhookSender = request.app.state.webhook_sender
    return sender
