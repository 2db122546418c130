"""Length limits: characters, words and lines, at most and at least."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from unwalled.contracts.checks.base import Answer, Check, Options
from unwalled.contracts.verdict import Violation


class LengthOptions(Options):
    kind: Literal["length"] = "length"
    max_chars: int | None = Field(None, ge=0)
    min_chars: int | None = Field(None, ge=0)
    max_words: int | None = Field(None, ge=0)
    min_words: int | None = Field(None, ge=0)
    max_lines: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _something(self) -> "LengthOptions":
        limits = (self.max_chars, self.min_chars, self.max_words, self.min_words,
                  self.max_lines)
        if all(v is None for v in limits):
            raise ValueError("give at least one of max_chars, min_chars, max_words, "
                             "min_words, max_lines")
        return self


class LengthCheck(Check):
    kind = "length"
    options: LengthOptions

    def run(self, answer: Answer) -> list[Violation]:
        found: list[Violation] = []
        o = self.options
        for path, text in self.texts(answer):
            chars = len(text)
            if o.max_chars is not None and chars > o.max_chars:
                found.append(self.violation(
                    path, f"is {chars} characters long, over the limit of "
                          f"{o.max_chars}; shorten it"))
            if o.min_chars is not None and chars < o.min_chars:
                found.append(self.violation(
                    path, f"is {chars} characters long, under the minimum of "
                          f"{o.min_chars}"))
            if o.max_words is not None or o.min_words is not None:
                words = len(text.split())
                if o.max_words is not None and words > o.max_words:
                    found.append(self.violation(
                        path, f"has {words} words, over the limit of {o.max_words}"))
                if o.min_words is not None and words < o.min_words:
                    found.append(self.violation(
                        path, f"has {words} words, under the minimum of "
                              f"{o.min_words}"))
            if o.max_lines is not None:
                lines = text.count("\n") + 1 if text else 0
                if lines > o.max_lines:
                    found.append(self.violation(
                        path, f"has {lines} lines, over the limit of {o.max_lines}"))
        return found


def build(options: LengthOptions) -> LengthCheck:
    return LengthCheck(options)
