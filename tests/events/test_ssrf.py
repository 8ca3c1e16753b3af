"""Webhook URLs that would make the platform attack its own network, in the forms that hide an
inside address: IPv6 translation and tunnel prefixes carrying an IPv4 address, and IPv4 written
as a number. Each is refused when a subscription is saved or changed, and again before every
delivery."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from app.events import ssrf
from app.events.sender import WebhookSender
from tests.conftest import bearer
from tests.events.conftest import WorkerFactory
from tests.events.helpers import DROPOUT, PREFIX, eventually, fetch, publish, scalar, subscribe
from tests.events.receiver import Receiver

# Each form carries an inside IPv4 address (169.254.169.254 is the cloud metadata service).
EMBEDDED_FORMS = {
    "nat64 metadata": "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
    "nat64 loopback": "http://[64:ff9b::7f00:1]/hook",
    "nat64 private": "http://[64:ff9b::a00:1]/hook",
    "nat64 local-use prefix": "http://[64:ff9b:1::a9fe:a9fe]/hook",
    "6to4 metadata": "http://[2002:a9fe:a9fe::1]/hook",
    "6to4 private": "http://[2002:c0a8:101::1]/hook",
    "teredo private client": "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/hook",
    "ipv4-compatible metadata": "http://[::169.254.169.254]/hook",
    "ipv4-compatible loopback": "http://[::127.0.0.1]/hook",
    "ipv4-mapped metadata": "http://[::ffff:169.254.169.254]/hook",
    "ipv4-mapped private": "http://[::ffff:192.168.1.1]/hook",
    "ipv4-translated private": "http://[::ffff:0:10.0.0.1]/hook",
}

NUMERIC_FORMS = {
    "decimal loopback": "http://2130706433/hook",
    "hex loopback": "http://0x7f.1/hook",
    "hex octets loopback": "http://0x7f.0x0.0x0.0x1/hook",
    "octal loopback": "http://0177.0.0.1/hook",
    "shortened loopback": "http://127.1/hook",
    "decimal metadata": "http://2852039166/latest/meta-data/",
    "octal private": "http://012.0.0.1/hook",
}

ATTACKS = {**EMBEDDED_FORMS, **NUMERIC_FORMS}


def webhook_body(url: str) -> dict[str, object]:
    return {
        "mode": "webhook",
        "url": url,
        "types": [PREFIX + "education.*"],
        "purpose_of_use": "child_protection",
    }


class TestSavingAWebhook:
    @pytest.mark.parametrize("url", ATTACKS.values(), ids=ATTACKS.keys())
    async def test_an_inside_address_in_disguise_is_refused_and_nothing_is_stored(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        loopback_sender: WebhookSender,
        database_url: str,
        url: str,
    ) -> None:
        # loopback_sender allows 127.0.0.1 itself: a loopback behind a translator or written as a
        # number must not ride on it (::ffff:127.0.0.1 is 127.0.0.1 itself, so it would).
        response = await client.post("/v1/subscriptions", json=webhook_body(url), headers=bearer(subscriber))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "webhook_url_refused"
        assert await scalar(database_url, "SELECT count(*) FROM subscription") == 0

    @pytest.mark.parametrize("url", ATTACKS.values(), ids=ATTACKS.keys())
    async def test_changing_a_webhook_to_an_inside_address_in_disguise_is_refused(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        loopback_sender: WebhookSender,
        receiver: Receiver,
        url: str,
    ) -> None:
        created = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        path = f"/v1/subscriptions/{created['id']}"
        refused = await client.patch(path, json={"url": url}, headers=bearer(subscriber))
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "webhook_url_refused"
        assert (await client.get(path, headers=bearer(subscriber))).json()["url"] == receiver.url

    @pytest.mark.parametrize(
        "url",
        [
            "https://[64:ff9b::808:808]/hook",  # NAT64 to a public address
            "https://[2002:808:808::1]/hook",  # 6to4 from a public address
            "https://8.8.8.8/hook",
        ],
    )
    async def test_a_translated_public_address_is_still_accepted(
        self, client: httpx.AsyncClient, subscriber: str, url: str
    ) -> None:
        response = await client.post("/v1/subscriptions", json=webhook_body(url), headers=bearer(subscriber))
        assert response.status_code == 201, response.text


class TestDelivering:
    @pytest.mark.parametrize("url", EMBEDDED_FORMS.values(), ids=EMBEDDED_FORMS.keys())
    async def test_a_stored_webhook_pointing_inside_in_disguise_is_refused_before_sending(
        self,
        client: httpx.AsyncClient,
        subscriber: str,
        education: str,
        child: dict[str, object],
        loopback_sender: WebhookSender,
        receiver: Receiver,
        start_worker: WorkerFactory,
        database_url: str,
        url: str,
    ) -> None:
        # A URL saved before this check existed: the delivery's own check must stop it.
        sub = await subscribe(client, subscriber, receiver.url, [PREFIX + "education.*"])
        await fetch(database_url, "UPDATE subscription SET url = $1 WHERE id = $2::uuid", url, sub["id"])
        await start_worker()
        await publish(client, education, DROPOUT, str(child["id"]))

        async def attempts() -> list[dict[str, object]]:
            response = await client.get(
                f"/v1/subscriptions/{sub['id']}/deliveries", headers=bearer(subscriber)
            )
            # A row reads `sending` from the claim until its outcome is recorded.
            return [
                a for d in response.json()["items"] for a in d["attempt_log"] if a["outcome"] != "sending"
            ]

        first = (await eventually(attempts))[0]
        assert first["outcome"] == "refused"
        assert first["status_code"] is None
        assert receiver.requests == []


class TestAllowList:
    """``CHILDLINK_WEBHOOK_ALLOWED_HOSTS`` names inside networks on purpose; an embedded form is
    admitted only by a network written in that form."""

    async def test_an_allowed_ipv4_network_does_not_admit_its_translated_forms(self) -> None:
        allow = ssrf.AllowList.parse(["10.0.0.0/8", "169.254.169.254"])
        assert await ssrf.check("http://10.1.2.3/x", allow, allow_http=True)
        for url in ("http://[64:ff9b::a01:203]/x", "http://[2002:a01:203::1]/x", "http://[::10.1.2.3]/x"):
            with pytest.raises(ssrf.WebhookUrlRefused):
                await ssrf.check(url, allow, allow_http=True)

    async def test_a_broad_ipv6_network_does_not_admit_embedded_inside_addresses(self) -> None:
        allow = ssrf.AllowList.parse(["::/0", "2000::/3", "64:ff9b::/32"])
        assert await ssrf.check("http://[fd00::1]/x", allow, allow_http=True)  # not an embedding form
        for url in (
            "http://[64:ff9b::a9fe:a9fe]/x",
            "http://[2002:a9fe:a9fe::1]/x",
            "http://[::127.0.0.1]/x",
        ):
            with pytest.raises(ssrf.WebhookUrlRefused):
                await ssrf.check(url, allow, allow_http=True)

    async def test_a_network_named_in_its_translated_form_admits_it(self) -> None:
        allow = ssrf.AllowList.parse(["64:ff9b::a00:0/104"])  # NAT64 towards 10.0.0.0/8
        assert await ssrf.check("http://[64:ff9b::a01:203]/x", allow, allow_http=True)
        for url in ("http://10.1.2.3/x", "http://[64:ff9b::a9fe:a9fe]/x"):
            with pytest.raises(ssrf.WebhookUrlRefused):
                await ssrf.check(url, allow, allow_http=True)

    async def test_an_ipv4_mapped_address_is_the_ipv4_address_itself_both_ways(self) -> None:
        allow = ssrf.AllowList.parse(["10.0.0.0/8", "::ffff:192.168.0.0/112"])
        assert await ssrf.check("http://[::ffff:10.1.2.3]/x", allow, allow_http=True)
        assert await ssrf.check("http://192.168.4.5/x", allow, allow_http=True)
        with pytest.raises(ssrf.WebhookUrlRefused):
            await ssrf.check("http://[::ffff:172.16.0.1]/x", allow, allow_http=True)

    def test_teredo_names_both_ipv4_ends(self) -> None:
        address = ipaddress.IPv6Address("2001:0:4136:e378:8000:63bf:3fff:fdd2")
        assert ssrf.embedded_ipv4(address) == (
            ipaddress.IPv4Address("65.54.227.120"),
            ipaddress.IPv4Address("192.0.2.45"),
        )
