"""Starting and stopping the event exchange with the app (called from the lifespan)."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI, Request

from app.config import Settings
from app.events import vault
from app.events.notify import Notifier
from app.events.scheduler import Scheduler, registered_jobs
from app.events.sender import WebhookSender
from app.events.worker import DeliveryWorker


def runs_worker(settings: Settings) -> bool:
    """``CHILDLINK_RUN_WORKER`` when set; otherwise only on the embedded database, where
    ``serve`` is the whole installation and nobody would think to start ``childlink worker``."""
    return settings.run_worker if settings.run_worker is not None else settings.database_url is None


async def start_events(app: FastAPI, settings: Settings, listen_dsn: str | None) -> None:
    """The webhook sender (for pings), the commit notifier (for the feed's long poll, listening
    on ``listen_dsn``; none when that is None, and waiters poll) and, when configured, an
    in-process delivery worker (``app.state.delivery_worker``).

    Connects to nothing before the first use, so a database that is still starting does not
    stop the app from starting."""
    app.state.webhook_sender = WebhookSender(settings, max_connections=10)
    box = vault.load(settings.resolved_key_dir, create_if_missing=settings.is_development)
    app.state.webhook_secret_box = box
    notifier = Notifier(listen_dsn) if listen_dsn is not None else None
    if notifier is not None:
        notifier.start()
    app.state.event_notifier = notifier
    app.state.delivery_worker = None
    app.state.delivery_worker_task = None
    if runs_worker(settings):
        worker = DeliveryWorker(
            db=app.state.db,
            door=app.state.door,
            kinds=app.state.agency_kinds,
            scheduler=Scheduler(
                app.state.db,
                registered_jobs(
                    app.state.door.policy,
                    delivery_attempt_retention_days=settings.delivery_attempt_retention_days,
                ),
            ),
            settings=settings,
            notifier=notifier,
            box=box,
        )
        app.state.delivery_worker = worker
        app.state.delivery_worker_task = asyncio.create_task(worker.run(), name="delivery-worker")


async def stop_events(app: FastAPI) -> None:
    """Let in-flight deliveries finish, then close everything. Idempotent."""
    worker: DeliveryWorker | None = getattr(app.state, "delivery_worker", None)
    task: asyncio.Task[None] | None = getattr(app.state, "delivery_worker_task", None)
    if worker is not None:
        worker.stop()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await worker.aclose()
        app.state.delivery_worker = app.state.delivery_worker_task = None
    notifier: Notifier | None = getattr(app.state, "event_notifier", None)
    if notifier is not None:
        await notifier.aclose()
        app.state.event_notifier = None
    sender: WebhookSender | None = getattr(app.state, "webhook_sender", None)
    if sender is not None:
        await sender.aclose()
        app.state.webhook_sender = None


def get_sender(request: Request) -> WebhookSender:
    sender: WebhookSender = request.app.state.webhook_sender
    return sender


def get_secret_box(request: Request) -> vault.SecretBox:
    box: vault.SecretBox = request.app.state.webhook_secret_box
    return box


def get_notifier(request: Request) -> Notifier | None:
    notifier: Notifier | None = request.app.state.event_notifier
    return notifier
