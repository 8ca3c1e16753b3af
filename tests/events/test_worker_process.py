"""The worker as the operator runs it: ``childlink worker`` processes, killed and restarted, and the
worker the app's lifespan runs in-process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks import Webhook

from app.config import Settings
from app.events.sender import WebhookSender
from app.main import create_app
from tests.conftest import TokenFactory, bearer
from tests.events.conftest import REGION
from tests.events.helpers import DROPOUT, PREFIX, SUBSCRIBER_SCOPES, eventually, fetch, publish, subscribe
from tests.events.receiver import Receiver
from tests.factories import make_child

ROOT = Path(__file__).resolve().parents[2]


def worker_process(database_url: str, key_dir: Path, log_level: str = "WARNING") -> subprocess.Popen[bytes]:
    """``childlink worker`` from this checkout, with loopback allowed and a two-second lease; it
    shares the test app's key folder (and so the key that seals webhook secrets)."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CHILDLINK_KEY_DIR": str(key_dir),
        "CHILDLINK_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "CHILDLINK_WEBHOOK_TIMEOUT_SECONDS": "1",
        "CHILDLINK_WEBHOOK_LEASE_SECONDS": "2",
        "CHILDLINK_WEBHOOK_RETRY_SCHEDULE": "0.05,0.1",
        "CHILDLINK_WORKER_POLL_SECONDS": "0.1",
        "CHILDLINK_LOG_LEVEL": log_level,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def exited(process: subprocess.Popen[bytes], within: float = 20) -> int:
    async def done() -> bool:
        return process.poll() is not None

    await eventually(done, within=within)
    assert process.returncode is not None
    return process.returncode


class TestKilledWorker:
    async def test_a_worker_killed_between_sending_and_recording_is_redelivered_with_the_same_id(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        database_url: str,
        key_dir: Path,
    ) -> None:
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        accepted = (await publish(client, education, DROPOUT, child["id"])).json()
        first = worker_process(database_url, key_dir)
        try:

            def kill_before_answering(request: Any) -> tuple[int, dict[str, str]]:
                # The request has arrived: the worker has sent it and is waiting to record the
                # answer. Kill it now, so the answer never reaches the database.
                if len(receiver.requests) == 0:
                    os.kill(first.pid, signal.SIGKILL)
                return 200, {}

            receiver.responder = kill_before_answering
            await receiver.wait_for(lambda r: len(r.requests) == 1, within=30)
            assert await exited(first) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
        (row,) = await fetch(
            database_url,
            "SELECT status, attempts, lease_token FROM event_delivery WHERE event_id = $1",
            uuid.UUID(accepted["id"]),
        )
        assert (row["status"], row["attempts"]) == ("pending", 1)
        assert row["lease_token"] is not None  # claimed, sent, never recorded

        receiver.responder = None
        second = worker_process(database_url, key_dir)
        try:
            await receiver.wait_for(lambda r: len(r.requests) == 2, within=30)
            second.send_signal(signal.SIGTERM)
            assert await exited(second) == 0, second.stderr.read() if second.stderr else ""
        finally:
            if second.poll() is None:
                second.kill()
        before, after = receiver.requests
        assert after.headers["webhook-id"] == before.headers["webhook-id"]
        assert Webhook(sub["secret"]).verify(after.body, after.headers)["id"] == accepted["id"]
        history = (
            await client.get(f"/v1/subscriptions/{sub['id']}/deliveries", headers=bearer(subscriber))
        ).json()["items"][0]
        assert history["status"] == "delivered"
        assert [(a["attempt"], a["outcome"]) for a in history["attempt_log"]] == [
            (1, "abandoned"),
            (2, "delivered"),
        ]


class TestWorkerLogs:
    async def test_the_worker_logs_one_json_object_a_line_like_the_api(
        self, database_url: str, key_dir: Path
    ) -> None:
        worker = worker_process(database_url, key_dir, log_level="INFO")
        assert worker.stderr is not None
        stderr = worker.stderr
        lines: list[str] = []

        async def until_running() -> None:
            # It says it runs once its signal handlers are in place, however long its start
            # (imports, the migration check) takes on this machine.
            while line := (await asyncio.to_thread(stderr.readline)).decode():
                lines.append(line)
                if "running; SIGTERM to stop" in line:
                    return

        try:
            await asyncio.wait_for(until_running(), 30)
        finally:
            worker.send_signal(signal.SIGTERM)
            code = await exited(worker)
        output = "".join(lines) + stderr.read().decode()
        assert code == 0, output
        lines = [line for line in output.splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]  # every line is JSON, nothing plain
        assert any(r["message"].endswith("running; SIGTERM to stop") and r["worker"] for r in records)
        assert {"time", "level", "logger", "message"} <= set(records[0])


class TestInProcessWorker:
    async def test_the_app_runs_a_worker_when_configured(
        self,
        loopback_settings: Settings,
        token: TokenFactory,
        client: httpx.AsyncClient,
        civil: str,
        education: str,
        receiver: Receiver,
    ) -> None:
        child = await make_child(client, civil, region=REGION + "005003")
        settings = loopback_settings.model_copy(update={"run_worker": True})
        application = create_app(settings)
        async with application.router.lifespan_context(application):
            assert application.state.delivery_worker is not None
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as own:
                civil_sub = await token(agency="civil-affairs", scopes=SUBSCRIBER_SCOPES, region=REGION)
                sub = await subscribe(own, civil_sub, receiver.url, [PREFIX + "education.*"])
                await publish(own, education, DROPOUT, child["id"])
                await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        assert Webhook(sub["secret"]).verify(receiver.requests[0].body, receiver.requests[0].headers)
        assert application.state.delivery_worker is None  # stopped with the app

    async def test_by_default_an_app_on_an_external_database_runs_none(self, app: Any) -> None:
        assert app.state.delivery_worker is None
        await asyncio.sleep(0)


class TestPausedWorker:
    async def test_a_worker_paused_past_its_lease_records_the_answer_it_got_and_sends_once(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        database_url: str,
        key_dir: Path,
    ) -> None:
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await publish(client, education, DROPOUT, child["id"])
        worker = worker_process(database_url, key_dir)
        try:

            def pause_then_answer(request: Any) -> tuple[int, dict[str, str]]:
                # Frozen (SIGSTOP, a VM paused) with the request sent: the 200 reaches its socket
                # while it cannot read it, and it wakes up past its deadline and its lease.
                os.kill(worker.pid, signal.SIGSTOP)
                return 200, {}

            receiver.responder = pause_then_answer
            await receiver.wait_for(lambda r: len(r.requests) == 1, within=30)
            await asyncio.sleep(2.5)  # the two-second lease runs out
            os.kill(worker.pid, signal.SIGCONT)
            receiver.responder = None
            path = f"/v1/subscriptions/{sub['id']}/deliveries"

            async def finished() -> Any:
                item = (await client.get(path, headers=bearer(subscriber))).json()["items"][0]
                return item if item["status"] != "pending" else None

            item = await eventually(finished, within=20)
            await asyncio.sleep(0.5)  # a wrong "timeout" would have been retried by now
        finally:
            os.kill(worker.pid, signal.SIGCONT)
            worker.send_signal(signal.SIGTERM)
            await exited(worker)
        assert item["status"] == "delivered"
        assert [(a["attempt"], a["outcome"], a["status_code"]) for a in item["attempt_log"]] == [
            (1, "delivered", 200)
        ]
        assert len(receiver.requests) == 1  # not sent again
