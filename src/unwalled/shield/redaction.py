"""Redaction of personal data and secrets in text.

``redact_text`` replaces each finding with a typed placeholder such as
``[EMAIL_1]``; the same value gets the same placeholder within one call.
``Vault`` keeps the mapping so placeholders can be restored in an answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24}\b")
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
PHONE = re.compile(r"(?<![\w+])\+?\d{1,3}[ .-]?\(?\d{2,4}\)?(?:[ .-]?\d{2,4}){2,3}\b")
SECRET = re.compile(
    r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}"
    r"|xox[baprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|uw-[A-Za-z0-9_-]{20,})\b")

# Order matters: the more specific kinds claim their text first.
KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("SECRET", SECRET), ("EMAIL", EMAIL), ("IBAN", IBAN), ("CARD", CARD),
    ("IP", IPV4), ("PHONE", PHONE),
]


def luhn_ok(digits: str) -> bool:
    numbers = [int(c) for c in digits if c.isdigit()]
    if not 13 <= len(numbers) <= 19:
        return False
    total = 0
    for i, n in enumerate(reversed(numbers)):
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


@dataclass
class Vault:
    """Placeholders for one request, and the values behind them."""

    values: dict[str, str] = field(default_factory=dict)
    placeholders: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def placeholder(self, kind: str, value: str) -> str:
        if value in self.placeholders:
            return self.placeholders[value]
        self.counts[kind] = self.counts.get(kind, 0) + 1
        token = f"[{kind}_{self.counts[kind]}]"
        self.placeholders[value] = token
        self.values[token] = value
        return token

    def redact(self, text: str) -> str:
        for kind, pattern in KINDS:
            text = pattern.sub(lambda m, k=kind: self._sub(k, m.group(0)), text)
        return text

    def _sub(self, kind: str, value: str) -> str:
        if kind == "CARD" and not luhn_ok(value):
            return value
        if value.startswith("[") and value.endswith("]"):
            return value
        return self.placeholder(kind, value)

    def restore(self, text: str) -> str:
        for token, value in self.values.items():
            text = text.replace(token, value)
        return text


def redact_text(text: str) -> str:
    """Text with personal data and secrets replaced by placeholders."""
    return Vault().redact(text)
