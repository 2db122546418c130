"""A contract made ready to judge answers: checks built once, run per answer.

``Verifier(contract).verify(text)`` extracts the JSON (when the contract has an
output), runs every check and returns a ``CheckResult``. A check that raises
fails closed: its error becomes a violation, never a pass.
"""

from __future__ import annotations

import logging
from typing import Any

from unwalled.backends.base import ToolCall
from unwalled.contracts import checks as check_kinds
from unwalled.contracts.checks.base import Answer, Check, required_by
from unwalled.contracts.checks.canary import CanaryCheck, CanaryOptions
from unwalled.contracts.checks.json_extract import JsonCheck, JsonOptions
from unwalled.contracts.checks.schema import SchemaCheck, SchemaOptions
from unwalled.contracts.model import Contract
from unwalled.contracts.verdict import CheckResult, Violation
from unwalled.errors import ConfigError

log = logging.getLogger("unwalled.contracts")


class Verifier:
    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.json: JsonCheck | None = None
        self.schema: SchemaCheck | None = None
        output = contract.output
        if output is not None and (output.is_json or output.json_schema is not None):
            self.json = JsonCheck(JsonOptions(repair=output.repair_syntax,
                                              prose=output.prose))
            if output.json_schema is not None:
                self.schema = _build(contract, SchemaOptions(schema=output.json_schema),
                                     "output.schema")
        self.checks: list[Check] = [
            _build(contract, options, f"checks[{i}]")
            for i, options in enumerate(contract.checks)]
        schema = output.json_schema if output is not None else None
        for check in self.checks:
            if check.options.field is not None and schema is not None:
                check.field_optional = not required_by(schema, check.options.field)
        self.request_canaries: list[Check] = [] if any(
            isinstance(c, CanaryCheck) for c in self.checks) else [
            CanaryCheck(CanaryOptions())]
        """Canaries a request planted are looked for even when the contract
        names no canary check (its own canary check looks for them too)."""

    def verify(self, text: str, tool_calls: list[ToolCall] | None = None, *,
               canaries: tuple[str, ...] = (),
               tools: dict[str, dict[str, Any]] | None = None,
               cut: bool = False) -> CheckResult:
        """``cut``: the answer stopped at max_tokens, so JSON that parses only
        once mended is a cut-off answer, not a slightly damaged one."""
        answer = Answer(text=text, tool_calls=list(tool_calls or ()),
                        canaries=canaries, tools=tools, cut=cut)
        violations: list[Violation] = []
        if self.json is not None and (text.strip() or not answer.tool_calls):
            self._extract(answer, violations)
        for check in self._all(answer):
            violations.extend(_run(check, answer))
        return CheckResult(violations, answer.value, answer.has_value)

    def _extract(self, answer: Answer, violations: list[Violation]) -> None:
        accepted: list[bool] = []

        def accept(value: Any) -> bool:
            valid = self.schema.is_valid(value)
            accepted.append(valid)
            return valid

        try:
            found, problems = self.json.extract(
                answer.text, accept if self.schema is not None else None, answer.cut)
        except Exception as exc:  # fail closed: an extractor crash is no pass
            violations.append(_crashed(self.json, exc))
            return
        violations.extend(problems)
        if found is not None:
            answer.value, answer.has_value = found.value, True
            answer.value_repaired = found.repaired
            # extract returns the first accepted value, else the first parsed one
            answer.value_is_valid = bool(accepted) and accepted[-1] and \
                self.schema is not None

    def _all(self, answer: Answer) -> list[Check]:
        first = [c for c in (self.json, self.schema) if c is not None]
        return first + self.checks + (self.request_canaries if answer.canaries else [])


def _build(contract: Contract, options: Any, where: str) -> Any:
    try:
        return check_kinds.build(options)
    except ValueError as exc:
        raise ConfigError(f"{exc}.", file=contract.source, key=where,
                          fix="correct it as the message says.") from None


def _run(check: Check, answer: Answer) -> list[Violation]:
    try:
        return check(answer)
    except Exception as exc:  # fail closed: a check that cannot run is a failure
        return [_crashed(check, exc)]


def _crashed(check: Check, exc: Exception) -> Violation:
    log.warning("check %s could not run: %s", check.kind, type(exc).__name__)
    return Violation(check.kind, "text", f"the check could not run "
                                         f"({type(exc).__name__}: {exc}); the answer "
                                         "is treated as failing")
