"""Personal data in an answer: emails, phone numbers, card numbers, IBANs, IPs.

The finding is the shield's (``unwalled.shield.pii``), so what the input shield
redacts and what this check refuses agree: numbers are confirmed before they
count (Luhn for cards, ISO 7064 mod-97 for IBANs, an IP must parse), so order
numbers and dates pass. This check adds the choice of kinds, an allow-list of
values, and whether private addresses count.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field

from unwalled.contracts.checks.base import Answer, Check, Options, disguised, span
from unwalled.contracts.verdict import Violation
from unwalled.shield.pii import find_pii

Kind = Literal["email", "phone", "card", "iban", "ip"]


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
    reads_calls = True
    options: PiiOptions

    def __init__(self, options: PiiOptions) -> None:
        super().__init__(options)
        self.kinds = frozenset(k.upper() for k in options.kinds)
        self.allowed = frozenset(options.allow)

    def run(self, answer: Answer) -> list[Violation]:
        found: list[Violation] = []
        for path, text in self.texts(answer):
            plain = [f for f in find_pii(text) if self._counts(f)]
            for finding in plain:
                where = span(finding.start, finding.end) if path == "text" else path
                found.append(self.violation(where, f"contains {_NAMES[finding.kind]}; "
                                                   "leave personal data out"))
            seen = {f.value for f in plain}
            for finding in disguised(text, find_pii, seen):
                # Not phones: unmasking turns "1200–1350" and no-break thousands
                # separators into what a phone looks like; a phone is seldom
                # disguised, and an email, card or IBAN keeps its checksum.
                if finding.kind != "PHONE" and self._counts(finding):
                    found.append(self.violation(path, (
                        f"contains {_NAMES[finding.kind]}, written in disguise "
                        "(entities, look-alike or invisible characters); leave "
                        "personal data out")))
        return found

    def _counts(self, finding: PiiFinding) -> bool:
        if finding.kind not in self.kinds or finding.value in self.allowed:
            return False
        return not (finding.kind == "IP" and self.options.public_ips_only
                    and not ipaddress.ip_address(finding.value).is_global)


_NAMES = {"EMAIL": "an email address", "PHONE": "a phone number",
          "CARD": "a payment card number (passes the Luhn check)",
          "IBAN": "an IBAN (passes the mod-97 check)", "IP": "an IP address"}


def build(options: PiiOptions) -> PiiCheck:
    return PiiCheck(options)
