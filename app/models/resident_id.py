"""Resident identity numbers (居民身份证号码, GB 11643-1999).

18 characters: a 6-digit division code, the birth date (YYYYMMDD), a 3-digit sequence whose last
digit is odd for males and even for females, and an ISO 7064 MOD 11-2 check character (0-9 or X).
Error messages never repeat the number.
"""

from __future__ import annotations

import re
from datetime import date

_PATTERN = re.compile(r"^\d{17}[\dX]$")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
PROVINCE_CODES = frozenset(
    {"11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
     "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
     "65", "71", "81", "82"}
)  # fmt: skip


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def normalize(value: str) -> str:
    return value.strip().upper()


def parse(value: str, *, today: date | None = None) -> tuple[date, str]:
    """Validate a resident ID number; returns (birth date, sex 'male'|'female').

    Raises ``ValueError`` with a message that does not contain the number.
    """
    number = normalize(value)
    if not _PATTERN.match(number):
        raise ValueError("a resident ID number has 17 digits and a final digit or X")
    if number[:2] not in PROVINCE_CODES:
        raise ValueError("the resident ID number's division code is not a province")
    try:
        birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError as exc:
        raise ValueError("the resident ID number's birth date is not a real date") from exc
    if birth > (today or date.today()) or birth.year < 1900:
        raise ValueError("the resident ID number's birth date is impossible")
    if check_character(number[:17]) != number[17]:
        raise ValueError("the resident ID number's check character is wrong")
    sex = "male" if int(number[16]) % 2 == 1 else "female"
    return birth, sex


def make(region6: str, birth: date, sequence: int, sex: str) -> str:
    """Build a valid number (demo data and tests): the sequence's parity is set from ``sex``."""
    seq = sequence % 500 * 2 + (1 if sex == "male" else 0)
    seq = seq if seq < 1000 else seq - 2
    first17 = f"{region6}{birth:%Y%m%d}{seq:03d}"
    return first17 + check_character(first17)
