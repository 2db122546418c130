"""Reversible redaction of personal data and secrets.

A ``Vault`` lives for one request. ``redact`` replaces each finding with a typed
placeholder such as ``[EMAIL_1]``: the same value gets the same placeholder
every time within the request, so the model can still tell two people apart.
``restore`` puts the values back into the answer. ``StreamRestorer`` does the
same for a streamed answer, where a placeholder can arrive split across pieces:
it holds back a tail that could still be the start of one.

``redact_text`` is the one-way form, used for what the ledger stores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from unwalled.shield.pii import find_pii, luhn_ok
from unwalled.shield.secrets import find_secrets

__all__ = ["Vault", "StreamRestorer", "redact_text", "luhn_ok", "PLACEHOLDER"]

PLACEHOLDER = re.compile(r"\[(?:SECRET|EMAIL|PHONE|CARD|IBAN|IP)_\d{1,6}\]")
_LONGEST_PLACEHOLDER = len("[SECRET_999999]")


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

    def redact(self, text: str, keep: frozenset[str] = frozenset()) -> str:
        """``keep``: kinds left as they are (``IP`` in an error about an address)."""
        spans = [span for span in _findings(text) if span[0] not in keep]
        if not spans:
            return text
        out, last = [], 0
        for kind, start, end in spans:
            out.append(text[last:start])
            out.append(self.placeholder(kind, text[start:end]))
            last = end
        out.append(text[last:])
        return "".join(out)

    def restore(self, text: str) -> str:
        if not self.values:
            return text
        return PLACEHOLDER.sub(lambda m: self.values.get(m.group(), m.group()), text)


def _findings(text: str) -> list[tuple[str, int, int]]:
    """Secrets first (they can contain digits that look like phones), then PII."""
    spans = [("SECRET", f.start, f.end) for f in find_secrets(text)]
    for finding in find_pii(text):
        if PLACEHOLDER.fullmatch(finding.value):
            continue
        if any(finding.start < end and start < finding.end for _, start, end in spans):
            continue
        spans.append((finding.kind, finding.start, finding.end))
    return sorted(spans, key=lambda span: span[1])


class StreamRestorer:
    """Restores placeholders in a streamed answer, piece by piece."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.pending = ""

    def feed(self, text: str) -> str:
        """The restored text that is safe to send now."""
        self.pending += text
        cut = self._safe_end(self.pending)
        ready, self.pending = self.pending[:cut], self.pending[cut:]
        return self.vault.restore(ready)

    def flush(self) -> str:
        ready, self.pending = self.pending, ""
        return self.vault.restore(ready)

    @staticmethod
    def _safe_end(text: str) -> int:
        """Where to cut so that no placeholder is split: before an open ``[``."""
        start = text.rfind("[", max(0, len(text) - _LONGEST_PLACEHOLDER))
        if start == -1 or "]" in text[start:]:
            return len(text)
        return start


def redact_text(text: str, keep: frozenset[str] = frozenset()) -> str:
    """Text with personal data and secrets replaced by placeholders (but for
    the kinds in ``keep``)."""
    return Vault().redact(text, keep)
