"""``childlink worker``: the delivery worker as a process of its own (run as many as you like).

It builds what the app's lifespan builds for the door (database, access policy, audit writer,
agency kinds) and runs :class:`DeliveryWorker` until SIGTERM or SIGINT, after which in-flight
deliveries finish and their results are recorded before it exits.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable

from app.access.deps import AgencyKinds
from app.access.door import Door, consent_lookup
from app.access.policy import load_policy
from app.audit.writer import AuditWriter
from app.config import Settings
from app.db import asyncpg_dsn, create_database, listen_dsn, resolve_database_url
from app.db_roles import enforce_least_privilege
from app.events.notify import Notifier
from app.events.scheduler import Scheduler, registered_jobs
from app.events.worker import DeliveryWorker
from app.observability import configure_logging

logger = logging.getLogger(__name__)


async def serve_worker(settings: Settings, *, once: bool = False) -> int:
    database_url = resolve_database_url(settings)
    dsn = asyncpg_dsn(database_url)
    pooled = settings.transaction_pooled
    await enforce_least_privilege(dsn, production=not settings.is_development, pooled=pooled)
    # Deliveries take pool connections only while the door decides (at most half the pool at
    # once, see DeliveryWorker), plus the claim, fan-out and recorder: never the overflow, whose
    # connections are closed on return and would be reopened for every delivery.
    db = create_database(database_url, pool_size=settings.worker_concurrency // 2 + 4, pooled=pooled)
    audit = AuditWriter(dsn, pooled=pooled)
    consents = consent_lookup(dsn, pooled=pooled)
    door = Door(
        load_policy(), audit, consents=consents, break_glass_daily_limit=settings.break_glass_daily_limit
    )
    # Behind a transaction-mode pooler without a direct URL nothing listens: the worker polls.
    notify_dsn = listen_dsn(settings, database_url)
    notifier = Notifier(notify_dsn) if notify_dsn is not None else None
    worker = DeliveryWorker(
        db=db,
        door=door,
        kinds=AgencyKinds(db.engine),
        settings=settings,
        notifier=notifier,
        scheduler=Scheduler(
            db,
            registered_jobs(
                door.policy, delivery_attempt_retention_days=settings.delivery_attempt_retention_days
            ),
        ),
    )
    # As the API's lifespan does: what lives as long as the process (modules, models, the
    # policy, SQLAlchemy's metadata) is moved out of the collector's view, so a full collection
    # under load scans only what deliveries allocate.
    gc.collect()
    gc.freeze()
    try:
        if once:
            sent = await worker.run_once()
            print(f"delivered {worker.delivered} of {sent} claimed deliveries", flush=True)
            return 0
        if notifier is not None:
            notifier.start()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        logger.info("delivery worker %s running; SIGTERM to stop", worker.name, extra={"worker": worker.name})
        await worker.run()
        logger.info("delivery worker %s stopped", worker.name, extra={"worker": worker.name})
        return 0
    finally:
        await worker.aclose()
        if notifier is not None:
            await notifier.aclose()
        await audit.aclose()
        await consents.aclose()
        await db.dispose()


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (it comes with ``uvicorn[standard]``, as the API
    runs on it), else asyncio's own. A delivery is mostly loop work (a socket write, a read, a
    few timers and tasks), and uvloop's loop costs the worker a good part less CPU for it."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a platform without uvloop (Windows)
        return None
    return uvloop.new_event_loop


def run(settings: Settings, *, once: bool = False) -> int:
    # One JSON object a line on stderr, as the API logs: the same collectors read both.
    configure_logging(settings.log_level)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(serve_worker(settings, once=once))
