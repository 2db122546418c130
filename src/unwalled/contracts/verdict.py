"""What a contract says about answers: violations, one attempt's result, the verdict.

A ``Violation`` names the check, where in the answer it found the problem (a
JSON pointer such as ``/intent``, or ``text[120:160]`` for a span of text) and
a message a person understands. A ``Verdict`` is the outcome of a contract on
one client request: every attempt with its violations, and the final answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True, frozen=True)
class Violation:
    check: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.path}: {self.message}"


@dataclass(slots=True)
class CheckResult:
    """One answer verified against a contract."""

    violations: list[Violation]
    parsed: Any = None
    """The JSON value found in the answer, when the contract has an output schema."""
    has_parsed: bool = False

    @property
    def passed(self) -> bool:
        return not self.violations


@dataclass(slots=True)
class AttemptVerdict:
    """One answer the contract judged (a backend failure is not one)."""

    target: str
    passed: bool
    violations: list[Violation] = field(default_factory=list)
    decoding: str = "free"
    """``constrained`` (grammar), ``free``, or ``free (why the grammar was dropped)``."""
    cut: bool = False
    """The answer stopped at ``max_tokens``: what broke may be only its missing end."""


@dataclass(slots=True)
class Verdict:
    """The outcome of a contract on one client request."""

    contract: str
    passed: bool
    action: str
    """What ended it: ``pass``, ``reject``, ``repair`` (passed after re-asking),
    ``fallback`` (passed on a later target) or ``exhausted``."""
    attempts: list[AttemptVerdict] = field(default_factory=list)
    output: str | None = None
    parsed: Any = None
    notes: list[str] = field(default_factory=list)
    """Things the caller should know, e.g. that a schema could not become a grammar."""

    @property
    def violations(self) -> list[Violation]:
        """The violations of the last judged answer."""
        return self.attempts[-1].violations if self.attempts else []

    def to_dict(self) -> dict[str, Any]:
        return {
            "contract": self.contract, "passed": self.passed, "action": self.action,
            "violations": [asdict(v) for v in self.violations],
            "attempts": [{"target": a.target, "passed": a.passed, "decoding": a.decoding,
                          "cut": a.cut, "violations": [asdict(v) for v in a.violations]}
                         for a in self.attempts],
            "notes": list(self.notes),
        }

    def header(self) -> str:
        """A compact form for the ``x-unwalled-verdict`` response header."""
        state = "pass" if self.passed else "fail"
        return (f"{state}; contract={self.contract}; action={self.action}; "
                f"attempts={len(self.attempts)}; violations={len(self.violations)}")

    def summary(self) -> str:
        if self.passed:
            return f"contract {self.contract!r} passed"
        listed = "; ".join(str(v) for v in self.violations[:10])
        more = len(self.violations) - 10
        tail = f"; and {more} more" if more > 0 else ""
        said = any("cut off at max_tokens" in v.message for v in self.violations)
        cut = (" (the last answer was cut off at max_tokens: raise max_tokens, or "
               "ask for a shorter answer)") \
            if self.attempts and self.attempts[-1].cut and not said else ""
        return (f"the answer broke contract {self.contract!r} after "
                f"{len(self.attempts)} attempt(s): {listed}{tail}{cut}")
