"""Personal data in an answer: emails, phone numbers, card numbers, IBANs, IPs.

The shapes are the shield's (``unwalled.shield.redaction``), so what the input
shield redacts and what this check refuses agree. Numbers are confirmed before
they count: a card number must pass the Luhn check, an IBAN its ISO 13616
mod-97 check, an IP address must parse, so order numbers and dates pass.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field

from unwalled.contracts.checks.base import Answer, Check, Options, span
from unwalled.contracts.verdict import Violation
from unwalled.shield.redaction import CARD, EMAIL, IBAN, IPV4, PHONE, luhn_ok

Kind = Literal["email", "phone", "card", "iban", "ip"]
# Cheap necessary conditions (bounded, with no nesting that could backtrack):
# the costlier full patterns only run on text that passes their kind's gate.
GATES = {
    "email": r"@",
    "iban": r"[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
    "card": r"\d(?:[ -]?\d){12}",
    "ip": r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d|[0-9a-fA-F]{0,4}:[0-9a-fA-F]{0,4}:",
    "phone": r"\d(?:[ .()-]{0,2}\d){6}",
}
IPV6 = re.compile(r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{0,4}(?![\w:])"
                  r"|(?<![\w:])::(?:[0-9a-fA-F]{1,4}:){0,6}[0-9a-fA-F]{1,4}(?![\w:])")
# IBAN lengths by country (ISO 13616 registry), for the common countries.
IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21,
    "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24,
    "SI": 19, "SK": 24, "SM": 27, "TR": 26, "UA": 29,
}


def iban_ok(text: str) -> bool:
    """The ISO 13616 check: the rearranged number modulo 97 is 1."""
    iban = text.replace(" ", "").upper()
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    if not 15 <= len(iban) <= 34 or not iban.isalnum():
        return False
    digits = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
    return int(digits) % 97 == 1


def ip_ok(text: str, public_only: bool) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return address.is_global if public_only else True


class PiiOptions(Options):
    kind: Literal["pii"] = "pii"
    kinds: list[Kind] = Field(default_factory=lambda: ["email", "phone", "card", "iban",
                                                       "ip"])
    public_ips_only: bool = True
    """Private and loopback addresses (10.0.0.1, 127.0.0.1) are not personal data."""
    allow: list[str] = Field(default_factory=list)
    """Exact values that may appear, e.g. the company's own support address."""


class PiiCheck(Check):
    kind = "pii"
    options: PiiOptions

    def __init__(self, options: PiiOptions) -> None:
        super().__init__(options)
        self.allowed = frozenset(options.allow)
        public = options.public_ips_only
        finders = {
            "email": [(EMAIL, None)],
            "iban": [(IBAN, iban_ok)],
            "card": [(CARD, luhn_ok)],
            "ip": [(IPV4, lambda v: ip_ok(v, public)), (IPV6, lambda v: ip_ok(v, public))],
            "phone": [(PHONE, _phone_ok)],
        }
        # The order of the shield: specific kinds claim their digits first.
        order = ("email", "iban", "card", "ip", "phone")
        self.finders = [(k, pattern, confirm) for k in order if k in options.kinds
                        for pattern, confirm in finders[k]]
        self.gates = {kind: re.compile(GATES[kind]) for kind in order}

    def run(self, answer: Answer) -> list[Violation]:
        found: list[Violation] = []
        for path, text in self.texts(answer):
            taken: list[tuple[int, int]] = []
            open_gates = {kind for kind, gate in self.gates.items() if gate.search(text)}
            for kind, pattern, confirm in self.finders:
                if kind not in open_gates:
                    continue
                for match in pattern.finditer(text):
                    value, start, end = match.group(0), match.start(), match.end()
                    if value in self.allowed or any(s < end and start < e
                                                    for s, e in taken):
                        continue
                    if confirm is not None and not confirm(value):
                        if kind == "iban":  # IBAN-shaped is no phone number either
                            taken.append((start, end))
                        continue
                    taken.append((start, end))
                    where = span(start, end) if path == "text" else path
                    found.append(self.violation(where, f"contains {_NAMES[kind]}; "
                                                       "leave personal data out"))
        return found


def _phone_ok(value: str) -> bool:
    digits = sum(c.isdigit() for c in value)
    return 8 <= digits <= 15


_NAMES = {"email": "an email address", "phone": "a phone number",
          "card": "a payment card number (passes the Luhn check)",
          "iban": "an IBAN (passes the mod-97 check)", "ip": "an IP address"}


def build(options: PiiOptions) -> PiiCheck:
    return PiiCheck(options)
