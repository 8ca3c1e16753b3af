"""Subscriptions: ownership, filters, SSRF refusals, secret rotation and the test ping."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidTag
from standardwebhooks import Webhook

from app.events import ssrf
from app.events.sender import WebhookSender
from tests.conftest import TokenFactory, bearer
from tests.events.helpers import PREFIX, SUBSCRIBER_SCOPES, fetch, scalar
from tests.events.receiver import Receiver


def webhook_body(url: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "description": "case system",
        "mode": "webhook",
        "url": url,
        "types": [PREFIX + "education.*"],
        "purpose_of_use": "child_protection",
    }
    body.update(overrides)
    return body


async def create(
    client: httpx.AsyncClient, token: str, body: dict[str, Any], expect: int = 201
) -> dict[str, Any]:
    response = await client.post("/v1/subscriptions", json=body, headers=bearer(token))
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


class TestCreate:
    async def test_a_webhook_subscription_returns_its_secret_once(
        self, client: httpx.AsyncClient, subscriber: str, loopback_sender: WebhookSender, receiver: Receiver
    ) -> None:
        created = await create(client, subscriber, webhook_body(receiver.url, region_prefix="510107005"))
        assert created["secret"].startswith("whsec_")
        assert created["agency"] == "civil-affairs"
        assert created["region_prefix"] == "510107005"
        assert created["status"] == "active"
        shown = (await client.get(f"/v1/subscriptions/{created['id']}", headers=bearer(subscriber))).json()
        assert "secret" not in shown
        listed = (await client.get("/v1/subscriptions", headers=bearer(subscriber))).json()["items"]
        assert [s["id"] for s in listed] == [created["id"]]

    async def test_a_pull_subscription_has_no_url_and_defaults_to_the_callers_region(
        self, client: httpx.AsyncClient, subscriber: str
    ) -> None:
        body = {"mode": "pull", "types": ["*"], "purpose_of_use": "child_protection"}
        created = await create(client, subscriber, body)
        assert created["secret"] is None
        assert created["region_prefix"] == "510107"
        with_url = await client.post(
            "/v1/subscriptions", json={**body, "url": "https://example.org/x"}, headers=bearer(subscriber)
        )
        assert with_url.status_code == 422

    @pytest.mark.parametrize(
        ("url", "why"),
        [
            ("http://169.254.169.254/latest/meta-data/", "link-local metadata service"),
            ("http://10.0.0.1/hooks", "private network"),
            ("https://[::ffff:10.0.0.1]/hooks", "private address mapped into IPv6"),
            ("http://0.0.0.0/hooks", "unspecified address"),
            ("https://user:pw@example.org/hooks", "credentials in the URL"),
            ("ftp://example.org/hooks", "not http(s)"),
        ],
    )
    async def test_urls_that_reach_inside_are_refused_and_nothing_is_stored(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        loopback_sender: WebhookSender,
        database_url: str,
        url: str,
        why: str,
    ) -> None:
        response = await client.post("/v1/subscriptions", json=webhook_body(url), headers=bearer(subscriber))
        assert response.status_code == 422, why
        assert response.json()["code"] in ("webhook_url_refused", "validation_failed"), why
        assert await scalar(database_url, "SELECT count(*) FROM subscription") == 0

    async def test_loopback_is_refused_unless_the_allow_list_names_it(
        self, client: httpx.AsyncClient, subscriber: str, receiver: Receiver
    ) -> None:
        refused = await client.post(
            "/v1/subscriptions", json=webhook_body(receiver.url), headers=bearer(subscriber)
        )
        assert refused.status_code == 422
        assert refused.json()["code"] == "webhook_url_refused"

    async def test_unknown_type_patterns_and_foreign_regions_are_refused(
        self, client: httpx.AsyncClient, subscriber: str
    ) -> None:
        pull = {"mode": "pull", "purpose_of_use": "child_protection"}
        unknown = await create(client, subscriber, {**pull, "types": [PREFIX + "nobody.*"]}, expect=422)
        assert unknown["code"] == "unknown_event_type"
        outside = await create(
            client, subscriber, {**pull, "types": ["*"], "region_prefix": "510108"}, expect=403
        )
        assert outside["code"] == "outside_region"

    async def test_without_subscriptions_manage_it_is_403(
        self, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        reader = await token(agency="civil-affairs", scopes=["events:read"], region="510107")
        response = await client.get("/v1/subscriptions", headers=bearer(reader))
        assert response.status_code == 403


class TestOwnership:
    async def test_another_agencys_subscription_is_404_everywhere(
        self, client: httpx.AsyncClient, subscriber: str, token: TokenFactory
    ) -> None:
        created = await create(
            client, subscriber, {"mode": "pull", "types": ["*"], "purpose_of_use": "statistics"}
        )
        police = await token(agency="police", scopes=SUBSCRIBER_SCOPES, region="510107")
        path = f"/v1/subscriptions/{created['id']}"
        for method, suffix, body in [
            ("GET", "", None),
            ("PATCH", "", {"status": "paused"}),
            ("DELETE", "", None),
            ("GET", "/deliveries", None),
            ("POST", "/replay", {"from_sequence": 1}),
            ("POST", "/test", None),
            ("POST", "/rotate-secret", None),
        ]:
            response = await client.request(method, path + suffix, json=body, headers=bearer(police))
            assert response.status_code == 404, (method, suffix, response.text)
            assert response.json()["code"] == "subscription_not_found"
        assert (await client.get("/v1/subscriptions", headers=bearer(police))).json()["items"] == []


class TestManage:
    async def test_pause_resume_and_delete(self, client: httpx.AsyncClient, subscriber: str) -> None:
        created = await create(
            client, subscriber, {"mode": "pull", "types": ["*"], "purpose_of_use": "statistics"}
        )
        path = f"/v1/subscriptions/{created['id']}"
        paused = await client.patch(
            path, json={"status": "paused", "categories": ["welfare"]}, headers=bearer(subscriber)
        )
        assert paused.json()["status"] == "paused"
        assert paused.json()["categories"] == ["welfare"]
        disabled = await client.patch(path, json={"status": "disabled"}, headers=bearer(subscriber))
        assert disabled.status_code == 422
        assert (await client.delete(path, headers=bearer(subscriber))).status_code == 204
        assert (await client.get(path, headers=bearer(subscriber))).status_code == 404

    async def test_rotating_the_secret_signs_with_both_during_the_overlap(
        self, client: httpx.AsyncClient, subscriber: str, loopback_sender: WebhookSender, receiver: Receiver
    ) -> None:
        created = await create(client, subscriber, webhook_body(receiver.url))
        path = f"/v1/subscriptions/{created['id']}"
        rotated = (await client.post(path + "/rotate-secret", headers=bearer(subscriber))).json()
        assert rotated["secret"] != created["secret"]
        ping = (await client.post(path + "/test", headers=bearer(subscriber))).json()
        assert ping["delivered"] is True
        request = receiver.requests[-1]
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        for secret in (created["secret"], rotated["secret"]):
            Webhook(secret).verify(request.body, request.headers)


class TestPing:
    async def test_a_ping_reaches_the_receiver_signed_and_is_recorded(
        self, client: httpx.AsyncClient, subscriber: str, loopback_sender: WebhookSender, receiver: Receiver
    ) -> None:
        created = await create(client, subscriber, webhook_body(receiver.url))
        path = f"/v1/subscriptions/{created['id']}"
        result = (await client.post(path + "/test", headers=bearer(subscriber))).json()
        assert result["delivered"] is True
        assert result["status_code"] == 200
        request = receiver.requests[-1]
        payload = Webhook(created["secret"]).verify(request.body, request.headers)
        assert payload["type"] == "cn.gov.childlink.platform.ping.v1"
        assert payload["data"] == {"subscription_id": created["id"]}
        assert request.headers["webhook-id"] == result["webhook_id"]
        deliveries = (await client.get(path + "/deliveries", headers=bearer(subscriber))).json()["items"]
        assert [(d["kind"], d["status"]) for d in deliveries] == [("ping", "delivered")]
        assert deliveries[0]["attempt_log"][0]["status_code"] == 200

    async def test_a_ping_answered_410_disables_the_subscription(
        self, client: httpx.AsyncClient, subscriber: str, loopback_sender: WebhookSender, receiver: Receiver
    ) -> None:
        receiver.responder = lambda request: (410, {})
        created = await create(client, subscriber, webhook_body(receiver.url))
        path = f"/v1/subscriptions/{created['id']}"
        result = (await client.post(path + "/test", headers=bearer(subscriber))).json()
        assert result["delivered"] is False
        shown = (await client.get(path, headers=bearer(subscriber))).json()
        assert (shown["status"], shown["disabled_reason"]) == ("disabled", "gone")


class TestUrlRules:
    def test_https_only_outside_development(self) -> None:
        with pytest.raises(ssrf.WebhookUrlRefused):
            ssrf.parse("http://example.org/hook", allow_http=False)
        assert ssrf.parse("https://example.org/hook", allow_http=False)[1:] == ("example.org", 443)

    async def test_allow_list_entries_are_hosts_or_networks(self) -> None:
        allow = ssrf.AllowList.parse(["127.0.0.1", "10.1.0.0/16", "Hooks.Internal."])
        assert "hooks.internal" in allow.hosts
        assert (await ssrf.check("http://10.1.2.3/x", allow, allow_http=True)).addresses
        with pytest.raises(ssrf.WebhookUrlRefused):
            await ssrf.check("http://10.2.0.1/x", allow, allow_http=True)
        with pytest.raises(ssrf.WebhookUrlRefused):
            await ssrf.check("http://169.254.169.254/", allow, allow_http=True)


class TestRegionsAndUpdates:
    async def test_a_client_manages_only_subscriptions_inside_its_region(
        self, client: httpx.AsyncClient, token: TokenFactory
    ) -> None:
        county = await token(agency="civil-affairs", scopes=SUBSCRIBER_SCOPES, region="510107")
        township = await token(agency="civil-affairs", scopes=SUBSCRIBER_SCOPES, region="510107005")
        wide = await create(client, county, {"mode": "pull", "types": ["*"], "purpose_of_use": "statistics"})
        narrow = await create(
            client,
            county,
            {"mode": "pull", "types": ["*"], "purpose_of_use": "statistics", "region_prefix": "510107005"},
        )
        assert (
            await client.get(f"/v1/subscriptions/{wide['id']}", headers=bearer(township))
        ).status_code == 404
        assert (
            await client.get(f"/v1/subscriptions/{narrow['id']}", headers=bearer(township))
        ).status_code == 200
        listed = (await client.get("/v1/subscriptions", headers=bearer(township))).json()["items"]
        assert [s["id"] for s in listed] == [narrow["id"]]
        moved = await client.patch(
            f"/v1/subscriptions/{narrow['id']}", json={"region_prefix": "510108"}, headers=bearer(county)
        )
        assert moved.status_code == 403

    async def test_a_new_url_is_checked_again_and_a_refused_one_changes_nothing(
        self, client: httpx.AsyncClient, subscriber: str, loopback_sender: WebhookSender, receiver: Receiver
    ) -> None:
        created = await create(client, subscriber, webhook_body(receiver.url))
        path = f"/v1/subscriptions/{created['id']}"
        refused = await client.patch(path, json={"url": "http://10.0.0.1/hook"}, headers=bearer(subscriber))
        assert refused.status_code == 422
        assert refused.json()["code"] == "webhook_url_refused"
        assert (await client.get(path, headers=bearer(subscriber))).json()["url"] == receiver.url

    async def test_a_pull_subscription_has_no_secret_to_rotate_and_nothing_to_replay(
        self, client: httpx.AsyncClient, subscriber: str
    ) -> None:
        created = await create(
            client, subscriber, {"mode": "pull", "types": ["*"], "purpose_of_use": "statistics"}
        )
        path = f"/v1/subscriptions/{created['id']}"
        assert (await client.post(path + "/rotate-secret", headers=bearer(subscriber))).status_code == 409
        replay = await client.post(path + "/replay", json={"from_sequence": 1}, headers=bearer(subscriber))
        assert replay.status_code == 409
        both = await client.post(
            path + "/replay",
            json={"from_sequence": 1, "from_time": "2026-11-01T00:00:00Z"},
            headers=bearer(subscriber),
        )
        assert both.status_code == 422


class TestSecretsAtRest:
    async def test_the_signing_secret_is_stored_sealed_and_bound_to_its_subscription(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        loopback_sender: WebhookSender,
        receiver: Receiver,
        database_url: str,
        app: Any,
    ) -> None:
        first = await create(client, subscriber, webhook_body(receiver.url))
        second = await create(client, subscriber, webhook_body(receiver.url))
        rows = {
            str(r["id"]): r["secret"]
            for r in await fetch(database_url, "SELECT id, secret FROM subscription")
        }
        stored = rows[first["id"]]
        assert stored.startswith("v1:")
        assert first["secret"] not in stored and first["secret"].removeprefix("whsec_") not in stored
        box = app.state.webhook_secret_box
        assert box.open(uuid.UUID(first["id"]), stored) == first["secret"]
        with pytest.raises(InvalidTag):  # copied onto another subscription, it does not open
            box.open(uuid.UUID(second["id"]), stored)


class TestHostileCursors:
    async def test_a_deliveries_cursor_beyond_bigint_is_refused_not_a_500(
        self, client: httpx.AsyncClient, subscriber: str, loopback_sender: WebhookSender, receiver: Receiver
    ) -> None:
        created = await create(client, subscriber, webhook_body(receiver.url))
        path = f"/v1/subscriptions/{created['id']}/deliveries"
        for before in (2**63, 2**64, 10**30):
            response = await client.get(path, params={"before": before}, headers=bearer(subscriber))
            assert response.status_code == 422, (before, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "validation_failed"
        last = await client.get(path, params={"before": 2**63 - 1}, headers=bearer(subscriber))
        assert last.status_code == 200
        assert last.json()["items"] == []

    async def test_a_feed_cursor_or_replay_sequence_beyond_bigint_is_refused(
        self, client: httpx.AsyncClient, subscriber: str, loopback_sender: WebhookSender, receiver: Receiver
    ) -> None:
        feed = await client.get("/v1/events/feed", params={"after": 2**63}, headers=bearer(subscriber))
        assert feed.status_code == 422
        assert feed.json()["code"] == "validation_failed"
        created = await create(client, subscriber, webhook_body(receiver.url))
        replay = await client.post(
            f"/v1/subscriptions/{created['id']}/replay",
            json={"from_sequence": 2**63},
            headers=bearer(subscriber),
        )
        assert replay.status_code == 422
        assert replay.json()["code"] == "validation_failed"
