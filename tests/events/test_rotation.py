"""Secret rotation: every secret keeps signing until its own overlap ends, however soon the next
rotation comes (Standard Webhooks allows one signature per valid secret)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.events.sender import WebhookSender
from tests.conftest import bearer
from tests.events.conftest import WorkerFactory
from tests.events.helpers import DROPOUT, PREFIX, fetch, publish, subscribe
from tests.events.receiver import Receiver


async def rotate(client: httpx.AsyncClient, token: str, sub: dict[str, Any]) -> httpx.Response:
    return await client.post(f"/v1/subscriptions/{sub['id']}/rotate-secret", headers=bearer(token))


class TestTwoRotations:
    async def test_a_second_rotation_keeps_the_first_secret_until_its_own_overlap_ends(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, Any],
        database_url: str,
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
    ) -> None:
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        first = (await rotate(client, subscriber, sub)).json()
        second = (await rotate(client, subscriber, sub)).json()  # seconds later, not a day
        assert second["previous_secret_valid_until"] >= first["previous_secret_valid_until"]
        await start_worker()
        await publish(client, education, DROPOUT, child["id"])
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        request = receiver.delivered()[0]
        assert len(request.headers["webhook-signature"].split(" ")) == 3
        for secret in (sub["secret"], first["secret"], second["secret"]):
            Webhook(secret).verify(request.body, request.headers)

        # The clock passes the original secret's overlap (and only its): it stops signing.
        await fetch(
            database_url,
            "UPDATE subscription SET retired_secrets = jsonb_set(retired_secrets, '{0,expires_at}', "
            "to_jsonb((now() - interval '1 second')::text)) WHERE id = $1",
            uuid.UUID(sub["id"]),
        )
        ping = await client.post(f"/v1/subscriptions/{sub['id']}/test", headers=bearer(subscriber))
        assert ping.json()["delivered"] is True
        latest = receiver.requests[-1]
        assert len(latest.headers["webhook-signature"].split(" ")) == 2
        for secret in (first["secret"], second["secret"]):
            Webhook(secret).verify(latest.body, latest.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(sub["secret"]).verify(latest.body, latest.headers)

    async def test_rotations_beyond_the_limit_wait_for_the_oldest_overlap(
        self, client: httpx.AsyncClient, subscriber: str, loopback_sender: WebhookSender, receiver: Receiver
    ) -> None:
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        for _ in range(4):  # five secrets sign at once by default
            assert (await rotate(client, subscriber, sub)).status_code == 200
        refused = await rotate(client, subscriber, sub)
        assert refused.status_code == 409
        assert refused.json()["code"] == "too_many_secrets"
