"""A child's timeline: every agency's record of the child, each entry released by the door."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.case_factories import as_, open_case, refer, story_child, tokens
from tests.conftest import TokenFactory, bearer
from tests.factories import guardianship_body
from tests.routers.test_custody import access_log


@pytest.fixture
async def parties(token: TokenFactory) -> dict[str, str]:
    return await tokens(token)


async def story(client: httpx.AsyncClient, parties: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A registered child in kinship care with a dropout case referred to the women's federation."""
    child = await story_child(client, parties["registrar"])
    recorded = await client.post(
        f"/v1/children/{child['id']}/guardianship",
        json=guardianship_body(),
        headers=bearer(parties["registrar"]),
    )
    assert recorded.status_code == 201, recorded.text
    case = await open_case(client, parties["education"], child["id"])
    await refer(client, parties["education"], case["id"], to_agency="womens-federation", to_region=None)
    return child, case


def types(page: dict[str, Any]) -> list[str | None]:
    return [
        (i["type"] or "").removeprefix("cn.gov.childlink.").removesuffix(".v1") or None for i in page["items"]
    ]


class TestTimeline:
    async def test_newest_first_with_the_case_steps_for_an_involved_agency(
        self, client: httpx.AsyncClient, parties: dict[str, str], database_url: str
    ) -> None:
        child, case = await story(client, parties)

        response = await client.get(f"/v1/children/{child['id']}/timeline", headers=as_(parties["womens"]))

        assert response.status_code == 200, response.text
        page = response.json()
        assert types(page) == [
            "platform.referral.requested",
            "platform.case.opened",
            None,  # guardianship changed: custody data, which the women's federation may not see
            # registered: the registry's notice of a new child (identity, region, categories),
            # which the policy's registry_notifications release to the women's federation
            "civil-affairs.child.registered",
        ]
        assert page["items"][0]["case_id"] == case["id"]
        assert page["items"][0]["data"]["kind"] == "dropout"  # education data, on the referral
        assert page["items"][2]["released"] is False and page["items"][2]["data"] is None
        logged = [r for r in await access_log(database_url) if r["action"] == "timeline.read"]
        assert logged and all(r["agency"] == "womens-federation" for r in logged)

    async def test_an_agency_not_on_the_case_sees_none_of_its_entries(
        self, client: httpx.AsyncClient, parties: dict[str, str]
    ) -> None:
        child, case = await story(client, parties)

        response = await client.get(f"/v1/children/{child['id']}/timeline", headers=as_(parties["police"]))
        case_read = await client.get(f"/v1/cases/{case['id']}", headers=as_(parties["police"]))

        assert response.status_code == 200, response.text
        assert all(i["case_id"] is None for i in response.json()["items"])
        assert "platform.case.opened" not in types(response.json())
        assert "civil-affairs.guardianship.changed" in types(
            response.json()
        )  # police read custody by statute
        assert case_read.status_code == 404

    async def test_pages_with_a_cursor_and_refuses_a_child_outside_the_region(
        self, client: httpx.AsyncClient, parties: dict[str, str], token: TokenFactory
    ) -> None:
        child, _ = await story(client, parties)
        url = f"/v1/children/{child['id']}/timeline"

        first = await client.get(f"{url}?limit=3", headers=as_(parties["education"]))
        second = await client.get(
            f"{url}?limit=3&cursor={first.json()['next_cursor']}", headers=as_(parties["education"])
        )
        elsewhere = await token(agency="education", scopes=["children:read"], region="510108")
        hidden = await client.get(url, headers=as_(elsewhere))

        sequences = [i["sequence"] for i in first.json()["items"] + second.json()["items"]]
        assert sequences == sorted(sequences, reverse=True) and len(sequences) == 4
        assert second.json()["next_cursor"] is None
        assert hidden.status_code == 404
        bad = await client.get(f"{url}?cursor=xyz", headers=as_(parties["education"]))
        assert bad.status_code == 400
