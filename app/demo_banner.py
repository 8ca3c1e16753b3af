"""What ``childlink serve`` and ``childlink demo`` print on demo data: every demo client's
credentials, then the variables the README's examples use (``CLIENT_ID``, ``CLIENT_SECRET``,
``CHILD_ID``), saying which client each example needs, ready to paste."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from app.services.demo import DemoCredential


def base_url(host: str, port: int) -> str:
    shown = "localhost" if host in ("0.0.0.0", "127.0.0.1", "::") else host  # noqa: S104
    return f"http://{shown}:{port}"


def render(
    credentials: Sequence[DemoCredential],
    host: str,
    port: int,
    child_ids: Sequence[uuid.UUID] | None = None,
    *,
    kept: bool = True,
) -> str:
    base = base_url(host, port)
    by_agency = {c.agency: c for c in credentials}
    note = (
        "the same on every restart with this data folder; `childlink demo` issues new ones"
        if kept
        else "shown only now"
    )
    lines = ["", f"ChildLink demo clients ({note}):", ""]
    for c in credentials:
        lines.append(f"  {c.agency:<18} client_id={c.client_id:<24} client_secret={c.client_secret}")
    police, education = by_agency["police"], by_agency["education"]
    lines += [
        "",
        "The README's examples, ready to paste. Getting a token and the custody check use the",
        "police client:",
        "",
        f"  export CLIENT_ID={police.client_id} CLIENT_SECRET={police.client_secret}",
    ]
    if child_ids:
        lines.append(f"  export CHILD_ID={child_ids[0]}")
    lines += [
        '  TOKEN=$(curl -s -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials '
        f"{base}/oauth/token | python3 -c 'import sys, json; print(json.load(sys.stdin)[\"access_token\"])')",
        f'  curl -s -H "Authorization: Bearer $TOKEN" {base}/v1/me',
    ]
    if child_ids:
        lines.append(
            f'  curl -s -H "Authorization: Bearer $TOKEN" -H "X-Purpose-Of-Use: child_protection" '
            f"{base}/v1/children/$CHILD_ID/custody"
        )
    lines += [
        "",
        "Publishing an event needs the education client (get its token the same way):",
        "",
        f"  export CLIENT_ID={education.client_id} CLIENT_SECRET={education.client_secret}",
        "",
        f"API docs (work offline): {base}/docs  - press Authorize and paste a client id and secret.",
        "",
    ]
    return "\n".join(lines)
