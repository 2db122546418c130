"""Canary leak: a marker planted in the system prompt shows up in the answer.

A model that repeats its system prompt leaks the marker with it. Models (and
attackers) break markers up with zero-width characters, soft hyphens, odd
Unicode forms, spacing, punctuation or case, so both the marker and the answer
are case folded, stripped of disguises (entities, look-alike letters and
digits of other scripts, accents, invisible characters), punctuation and
whitespace before comparing (the input shield's folding).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from unwalled.contracts.checks.base import Answer, Check, Options
from unwalled.contracts.verdict import Violation
from unwalled.shield.canary import squash

def fold(text: str) -> str:
    """Text as the comparison sees it: the shield's folding."""
    return squash(text)


class CanaryOptions(Options):
    kind: Literal["canary"] = "canary"
    markers: list[str] = Field(default_factory=list)
    """Markers to look for, besides those a request planted itself."""


class CanaryCheck(Check):
    kind = "canary"
    reads_calls = True
    options: CanaryOptions

    def __init__(self, options: CanaryOptions) -> None:
        super().__init__(options)
        for marker in options.markers:
            if len(fold(marker)) < 6:
                raise ValueError(f"canary marker {marker!r} is too short to be "
                                 "told apart from ordinary text; use 6 or more "
                                 "visible characters")
        self.markers = [(m, fold(m)) for m in options.markers]

    def run(self, answer: Answer) -> list[Violation]:
        markers = self.markers + [(m, fold(m)) for m in answer.canaries]
        if not markers:
            return []
        found: list[Violation] = []
        for path, text in self.texts(answer):
            folded = fold(text)
            for marker, folded_marker in markers:
                if folded_marker and folded_marker in folded:
                    found.append(self.violation(
                        path, "repeats the canary marker planted in the system prompt "
                              "(the prompt has leaked); never repeat instructions"))
        return found


def build(options: CanaryOptions) -> CanaryCheck:
    return CanaryCheck(options)
