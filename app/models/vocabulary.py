"""The shared vocabulary of the access layer: data categories and purposes of use (DESIGN §4)."""

from __future__ import annotations

from enum import StrEnum


class DataCategory(StrEnum):
    identity = "identity"
    """Name, sex, birth date, ethnicity."""
    identifier = "identifier"
    """Resident ID number."""
    contact = "contact"
    """Address, guardian phone."""
    custody = "custody"
    """Guardianship and custody status."""
    welfare = "welfare"
    """Registry classification, assistance, subsidies."""
    education = "education"
    health = "health"
    disability = "disability"
    law_enforcement = "law_enforcement"
    reporter = "reporter"
    """Who filed a mandatory report (强制报告): role, name, phone. Kept confidential."""


class PurposeOfUse(StrEnum):
    """Why a reader asks; sent as ``X-Purpose-Of-Use`` on every cross-agency read."""

    child_protection = "child_protection"
    """儿童保护: keeping a child safe, including the police custody check."""
    investigation = "investigation"
    """案件调查: a police investigation."""
    education_support = "education_support"
    """控辍保学 and school support."""
    health_care = "health_care"
    """Medical care and medical aid."""
    welfare_assistance = "welfare_assistance"
    """Assistance and subsidies."""
    emergency = "emergency"
    """An emergency in progress."""
    statistics = "statistics"
    """摸底排查: counting children; never identifies them."""


PURPOSE_DESCRIPTIONS: dict[PurposeOfUse, str] = {
    PurposeOfUse.child_protection: "儿童保护: keeping a child safe, including the police custody check.",
    PurposeOfUse.investigation: "案件调查: a police investigation.",
    PurposeOfUse.education_support: "控辍保学 and school support.",
    PurposeOfUse.health_care: "Medical care and medical aid.",
    PurposeOfUse.welfare_assistance: "Assistance and subsidies (低保, 临时救助, 医疗救助).",
    PurposeOfUse.emergency: "An emergency in progress (PIPL art. 13(4)).",
    PurposeOfUse.statistics: "摸底排查: counting children; never identifies them.",
}

CATEGORY_DESCRIPTIONS: dict[DataCategory, str] = {
    DataCategory.identity: "Name, sex, birth date, ethnicity.",
    DataCategory.identifier: "Resident ID number.",
    DataCategory.contact: "Address, guardian name and phone, duty phones.",
    DataCategory.custody: "Guardianship and custody status.",
    DataCategory.welfare: "Registry classification, care arrangement, assistance, subsidies.",
    DataCategory.education: "School, enrolment, attendance.",
    DataCategory.health: "Health conditions, serious illness.",
    DataCategory.disability: "Disability and its assessment.",
    DataCategory.law_enforcement: "Incidents, guardian harm, police matters.",
    DataCategory.reporter: "The identity of a mandatory reporter (强制报告人): only the receiving police "
    "and civil affairs read it.",
}
