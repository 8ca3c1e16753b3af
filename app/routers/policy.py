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
    note: str | None = Field(
        default=None, description="Why the rule reaches as far as it does, and no further."
    )


class BreakGlassPublic(BaseModel):
    agency_kinds: list[str] = Field(
        description="Agency kinds whose clients may use break-glass (with the scope)."
    )
    reason_codes: list[str]
    min_justification_length: int
    daily_limit_per_client: int
    note: str


class OversightPublic(BaseModel):
    agency_kinds: list[str] = Field(
        description="Agency kinds whose `audit:read` readers see every agency's records in their region "
        "(the platform always does). Other readers see their own agency's reads and the reads of the "
        "records their agency keeps."
    )
    note: str


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
    break_glass: BreakGlassPublic
    oversight: OversightPublic
    cases: dict[str, Any] = Field(
        default_factory=dict,
        description="Coordinated handling: the purposes a referral serves, deadline bounds and the "
        "escalation interval.",
    )
    report_routing: dict[str, Any] = Field(
        default_factory=dict,
        description="Mandatory reports (强制报告): the receiving agency kinds of each concern with the "
        "statute, each urgency's acknowledgement and handling deadlines and escalation interval, and "
        "who reads the reporter's identity.",
    )


@router.get("/policy", response_model=PolicyPublic, summary="The access policy in force")
async def get_policy(request: Request, _: Annotated[Principal, Security(require)]) -> Any:
    """The rules that decide every cross-agency read, with their version and hash.

    A read is decided per data category, on these grounds tried in order:
    1. **statute**: a rule here lets the reader's kind of agency read the category for the stated
       purpose (e.g. police read `custody` and `contact` for `child_protection`, citing the Minors
       Protection Law art. 11 and PIPL arts. 13(3), 34);
    2. **consent**: an active guardian consent names the reader's agency (or any), the category and
       the purpose (e.g. the guardian lets the women's federation see `health` for
       `child_protection`);
    3. **referral**: for reads of a case (协同处置), an open referral of that case to the reader's
       agency releases the categories it names (purpose `child_protection`; see `cases`);
    4. **break-glass**: an allowed client sends `X-Break-Glass: <reason_code>; <justification>` in an
       emergency (e.g. `missing_child; …`); the read is flagged and reviewed by another agency.
    A category no ground covers is withheld and the response says so; the agency that keeps a
    record reads it in full."""
    policy = request.app.state.door.policy
    return PolicyPublic(
        version=policy.version,
        sha256=policy.sha256,
        description=policy.description,
        grounds=["owner", "statute", "consent", "referral", "break_glass"],
        purposes={p.value: PURPOSE_DESCRIPTIONS[p] for p in PurposeOfUse},
        categories={c.value: CATEGORY_DESCRIPTIONS[c] for c in DataCategory},
        rules=[
            PolicyRule(
                id=r.id,
                agency_kind=r.agency_kind,
                categories=sorted(r.categories),
                purposes=sorted(r.purposes),
                citation=r.citation,
                note=r.note,
            )
            for r in policy.rules
        ],
        break_glass=BreakGlassPublic(
            agency_kinds=sorted(policy.break_glass.agency_kinds),
            reason_codes=sorted(policy.break_glass.reason_codes),
            min_justification_length=policy.break_glass.min_justification_length,
            daily_limit_per_client=request.app.state.door.break_glass_daily_limit,
            note=policy.break_glass.note,
        ),
        oversight=OversightPublic(
            agency_kinds=sorted(policy.oversight_agency_kinds), note=policy.oversight_note
        ),
        cases=policy.document.get("cases", {}),
        report_routing=policy.document.get("report_routing", {}),
    )
