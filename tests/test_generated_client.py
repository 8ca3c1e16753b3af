"""A Python client generated from the spec with openapi-python-client reads like hand-written
code (``get_custody``, ``publish_event``, models named after the schemas) and works: it gets a
token, asks who it is, runs the custody check and publishes an event against the app."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.services import demo as demo_service
from app.services.demo import DEMO_CHILD_IDS, DemoCredential

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def generated(app: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Generate the client once and import it as a package."""
    root = tmp_path_factory.mktemp("client")
    spec = root / "openapi.json"
    spec.write_text(json.dumps(app.openapi()))
    result = subprocess.run(  # noqa: S603 - fixed arguments, our own venv's tool
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--meta",
            "none",
            "--output-path",
            str(root / "childlink_client"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # A warning means a piece of the API was left out of the client.
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("childlink_client")
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "childlink_client" or m.startswith("childlink_client.")]:
            del sys.modules[name]


@pytest.fixture
async def demo(app: Any) -> dict[str, DemoCredential]:
    async with app.state.db.sessionmaker() as session:
        credentials = await demo_service.load(session)
        await demo_service.load_children(session, app.state.webhook_secret_box)
        await session.commit()
    return {c.agency: c for c in credentials}


def _transport(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", **kwargs)


async def _token(generated: Any, app: Any, credential: DemoCredential) -> str:
    from_client = importlib.import_module("childlink_client.client")
    issue_token = importlib.import_module("childlink_client.api.auth.issue_token")
    models = importlib.import_module("childlink_client.models")
    anonymous = from_client.Client(base_url="http://testserver")
    anonymous.set_async_httpx_client(_transport(app))
    answer = await issue_token.asyncio(
        client=anonymous,
        body=models.TokenRequest(
            grant_type=models.TokenRequestGrantType.CLIENT_CREDENTIALS,
            client_id=credential.client_id,
            client_secret=credential.client_secret,
        ),
    )
    assert isinstance(answer, models.TokenResponse), answer
    return str(answer.access_token)


def _authenticated(generated: Any, app: Any, token: str) -> Any:
    client = generated.AuthenticatedClient(base_url="http://testserver", token=token)
    client.set_async_httpx_client(_transport(app, headers={"Authorization": f"Bearer {token}"}))
    return client


async def test_generated_client_gets_a_token_and_reads_me_and_custody(
    generated: Any, app: Any, demo: dict[str, DemoCredential]
) -> None:
    get_me = importlib.import_module("childlink_client.api.auth.get_me")
    get_custody = importlib.import_module("childlink_client.api.guardianship.get_custody")
    models = importlib.import_module("childlink_client.models")
    police = _authenticated(generated, app, await _token(generated, app, demo["police"]))

    me = await get_me.asyncio(client=police)
    assert isinstance(me, models.MePublic), me
    assert me.agency == "police"

    custody = await get_custody.asyncio(DEMO_CHILD_IDS[0], client=police, x_purpose_of_use="child_protection")
    assert isinstance(custody, models.CustodyPublic), custody
    assert custody.custody_status == models.CustodyStatus.KINSHIP_CARE


async def test_generated_client_publishes_an_event(
    generated: Any, app: Any, demo: dict[str, DemoCredential]
) -> None:
    publish_event = importlib.import_module("childlink_client.api.events.publish_event")
    models = importlib.import_module("childlink_client.models")
    education = _authenticated(generated, app, await _token(generated, app, demo["education"]))
    data = models.CloudEventInData.from_dict(
        {
            "school": "簇桥小学",
            "risk_level": "high",
            "indicators": ["chronic_absence"],
            "flagged_on": "2026-11-27",
        }
    )
    event = models.CloudEventIn(
        specversion="1.0",
        id="edu-510107-2026-000777",
        source="/education/510107/sis",
        type_="cn.gov.childlink.education.dropout-risk.flagged.v1",
        subject=DEMO_CHILD_IDS[0],
        data=data,
    )
    accepted = await publish_event.asyncio(client=education, body=event, idempotency_key=str(uuid.uuid4()))
    assert isinstance(accepted, models.EventAccepted), accepted
    assert accepted.sequence >= 1
