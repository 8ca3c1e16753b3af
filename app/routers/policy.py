"""The access policy in force, for integrators and auditors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Security
from pydantic import BaseModel, Field

from app.auth.deps import require
from app.auth.principal import Principal
from app.errors import Unauthorized, responses
from app.models.vocabulary import CATEGORY_DESCRIPTIONS, PURPOSE_DESCRIPTIONS, DataCategory, PurposeOfUse

router = APIRouter(prefix="/v1", tags=["access policy"], responses=responses(Unauthorized))


class PolicyRule(BaseModel):
    id: str = Field(examples=["police-protection"])
    agency_kind: str = Field(description="Reader agency kind, or `*` for any.", examples=["police"])
    categories: list[DataCategory]
    purposes: list[PurposeOfUse]
    citation: str = Field(examples=["《中华人民共和国未成年人保护法》第十一条"])


class PolicyPublic(BaseModel):
    version: str = Field(examples=["2026-11-28.1"])
    sha256: str = Field(description="Hash of the policy file in force.")
    description: str
    grounds: list[str] = Field(
        description="The grounds for a cross-agency read, in the order they are tried."
    )
    purposes: dict[str, str] = Field(description="The purposes of use (`X-Purpose-Of-Use`).")
    categories: dict[str, str] = Field(description="The data categories a response may carry.")
    rules: list[PolicyRule]


@router.get("/policy", response_model=PolicyPublic, summary="The access policy in force")
async def get_policy(request: Request, _: Annotated[Principal, Security(require)]) -> Any:
    """Which agency may read which data category for which purpose by statute, with the legal
    citation; its version and hash identify the file that decides every read. Reads the policy
    does not cover need a guardian consent or an emergency break-glass."""
    policy = request.app.state.door.policy
    return PolicyPublic(
        version=policy.version,
        sha256=policy.sha256,
        description=policy.description,
        grounds=["owner", "statute", "consent", "break_glass"],
        purposes={p.value: PURPOSE_DESCRIPTIONS[p] for p in PurposeOfUse},
        categories={c.value: CATEGORY_DESCRIPTIONS[c] for c in DataCategory},
        rules=[
            PolicyRule(
                id=r.id,
                agency_kind=r.agency_kind,
                categories=sorted(r.categories),
                purposes=sorted(r.purposes),
                citation=r.citation,
            )
            for r in policy.rules
        ],
    )
