"""Personal data in text: email addresses, phone numbers, card numbers, IBANs, IPs.

Each detector is a precompiled pattern plus, where one exists, the checksum that
tells a real number from a look-alike: Luhn for card numbers, ISO 7064 mod-97
for IBANs. That is what keeps order numbers and dates out of the findings.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable

__all__ = ["PiiFinding", "find_pii", "luhn_ok", "iban_ok"]


@dataclass(frozen=True, slots=True)
class PiiFinding:
    kind: str
    start: int
    end: int
    value: str


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def iban_ok(value: str) -> bool:
    compact = re.sub(r"\s", "", value).upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    digits = "".join(str(int(c, 36)) for c in rearranged)
    return int(digits) % 97 == 1


def _ip_ok(value: str) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    # 0.0.0.0 and :: name no machine: they are settings, not personal data.
    return not address.is_unspecified


_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"
                   r"|\d{1,2}:\d{2}(?::\d{2})?")


_NOT_A_PHONE = re.compile(
    r"(?:1\d|20)\d\d ?- ?(?:1\d|20)\d\d"   # a span of years: 1894-1917
    r"|\d{1,3}(?:[.,]\d{3})+"             # thousands: 12.345.678, 1,234,567
    r"|\d{1,2}(?: \d{3})+")               # thousands by spaces: 12 345 678


def _phone_ok(value: str) -> bool:
    digits = sum(c.isdigit() for c in value)
    if not 7 <= digits <= 15 or _DATE.fullmatch(value.strip()) \
            or _NOT_A_PHONE.fullmatch(value.strip()):
        return False
    # A bare run of digits is more often an id than a phone: want a + or separators.
    return value.startswith("+") or value.startswith("(") or bool(
        re.search(r"\d[ .\-)]\d", value))


_PATTERNS: list[tuple[str, str, Callable[[str], bool] | None, str]] = [
    ("EMAIL", r"\b[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}\b",
     None, "@"),
    ("IBAN", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
     iban_ok, r"[A-Z]{2}\d\d"),
    ("CARD", r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])", luhn_ok, r"\d{4}"),
    ("IP", r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]*\d)", _ip_ok, r"\d\.\d"),
    ("IP", r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}(?![\w:])"
           r"|(?<![\w:])(?:[0-9a-fA-F]{1,4}:){1,6}:(?:[0-9a-fA-F]{1,4}:?){1,6}"
           r"(?<!:)(?![\w:])", _ip_ok, r"[0-9A-Fa-f]:[0-9A-Fa-f:]|::"),
    # Not inside a dotted number (a version such as 10.0.19045.3803).
    ("PHONE", r"(?<![\w+])(?<!\d[.,])(?:\+\d{1,3}[ .-]?)?\(?\d{2,4}\)?"
              r"(?:[ .-]?\d{2,4}){2,4}(?![\w])(?![.,]\d)", _phone_ok, r"\d\d"),
]
"""Kind, pattern, checksum or sanity check, and a short pattern every match
contains: searching for it is cheap and skips the full scan on most text."""
_COMPILED = [(kind, re.compile(pattern), check, re.compile(hint))
             for kind, pattern, check, hint in _PATTERNS]


def find_pii(text: str) -> list[PiiFinding]:
    """Every piece of personal data in ``text``, in order, without overlaps."""
    findings: list[PiiFinding] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern, check, hint in _COMPILED:
        if hint.search(text) is None:
            continue
        for match in pattern.finditer(text):
            start, end = match.span()
            value = match.group()
            if check is not None and not check(value):
                continue
            if any(start < t_end and t_start < end for t_start, t_end in taken):
                continue
            taken.append((start, end))
            findings.append(PiiFinding(kind, start, end, value))
    return sorted(findings, key=lambda f: f.start)
