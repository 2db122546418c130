"""Patterns the answer must match (``require``) or must not match (``forbid``).

Patterns run on RE2 (``google-re2``), whose matching time grows linearly with
the text whatever the pattern, so a pattern like ``(a+)+$`` cannot hang the
gateway. A pattern RE2 cannot take (back-references, look-around) is refused
when the contract loads, unless the check sets ``backtracking: true``: then it
runs on the ``regex`` module with a time limit, and running out of time fails
closed. That limit is checked only now and then inside the engine: measured,
a 50 ms limit ends a runaway match after 100 to 130 ms.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from unwalled.contracts.checks.base import Answer, Check, Options, excerpt, span
from unwalled.contracts.verdict import Violation

TIMEOUT_SECONDS = 0.05
"""Time limit for a pattern that runs on the backtracking ``regex`` engine."""


TIMED_OUT = object()
"""What a search that ran out of time returns (its violation is already added)."""


class RegexOptions(Options):
    kind: Literal["regex"] = "regex"
    require: list[str] = Field(default_factory=list)
    forbid: list[str] = Field(default_factory=list)
    ignore_case: bool = False
    backtracking: bool = False
    """Allow patterns RE2 cannot run, on a backtracking engine with a time limit."""


class Pattern:
    """One compiled pattern, on RE2 when it can be, else on ``regex`` with a limit."""

    def __init__(self, source: str, ignore_case: bool, backtracking: bool) -> None:
        self.source = source
        self.engine, self.compiled = _compile(source, ignore_case, backtracking)

    def search(self, text: str) -> Any:
        """The first match or None. Raises ``TimeoutError`` past the limit."""
        if self.engine == "re2":
            return self.compiled.search(text)
        return self.compiled.search(text, timeout=TIMEOUT_SECONDS)


def _compile(source: str, ignore_case: bool, backtracking: bool) -> tuple[str, Any]:
    import re2

    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False
    try:
        return "re2", re2.compile(source, options)
    except re2.error as exc:
        if not backtracking:
            raise ValueError(
                f"pattern {source!r} cannot run on RE2, the engine that cannot "
                f"backtrack ({exc}); rewrite it without back-references and "
                "look-around, or set 'backtracking: true' to run it with a time "
                "limit") from None
    import regex

    try:
        return "regex", regex.compile(source, regex.IGNORECASE if ignore_case else 0)
    except regex.error as exc:
        raise ValueError(f"pattern {source!r} is not a valid regular expression: "
                         f"{exc}") from None


class RegexCheck(Check):
    kind = "regex"
    reads_calls = True
    options: RegexOptions

    def __init__(self, options: RegexOptions) -> None:
        super().__init__(options)
        flags = (options.ignore_case, options.backtracking)
        self.required = [Pattern(p, *flags) for p in options.require]
        self.forbidden = [Pattern(p, *flags) for p in options.forbid]

    def run(self, answer: Answer) -> list[Violation]:
        found: list[Violation] = []
        for path, text in self.texts(answer):
            # required: of the answer itself; forbidden: anywhere, calls too
            for pattern in self.required if not path.startswith("tool_calls") else ():
                if self._search(pattern, text, path, found) is None:
                    found.append(self.violation(
                        path, f"must match the pattern {pattern.source!r} and does not"))
            for pattern in self.forbidden:
                match = self._search(pattern, text, path, found)
                if match is not None and match is not TIMED_OUT:
                    where = span(match.start(), match.end()) if path == "text" else path
                    found.append(self.violation(
                        where, f"matches the forbidden pattern {pattern.source!r}: "
                               f"{excerpt(match.group(0))}"))
        return found

    def _search(self, pattern: Pattern, text: str, path: str,
                found: list[Violation]) -> Any:
        try:
            return pattern.search(text)
        except TimeoutError:
            found.append(self.violation(
                path, f"the pattern {pattern.source!r} did not finish within "
                      f"{TIMEOUT_SECONDS * 1000:.0f} ms (catastrophic backtracking); "
                      "counted as failed. Rewrite it without nested repetition."))
            return TIMED_OUT


def build(options: RegexOptions) -> RegexCheck:
    return RegexCheck(options)
