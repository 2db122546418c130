"""Tool calls: the names on an allow-list, the arguments valid for each tool.

Argument schemas come from the check's ``tools`` option, else from the tools
the request itself offered. A call to a tool that has no schema anywhere
fails closed: nothing says its arguments are safe.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from jsonschema import Draft202012Validator
from pydantic import Field

from unwalled.contracts.checks.base import Answer, Check, Options, json_path
from unwalled.contracts.checks.schema import describe
from unwalled.contracts.verdict import Violation


class ToolCallOptions(Options):
    kind: Literal["tool_calls"] = "tool_calls"
    allow: list[str] | None = None
    """Tool names the model may call. None: the tools the request offered."""
    tools: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Argument schemas by tool name; they override the request's."""
    max_calls: int | None = Field(None, ge=0)


class ToolCallCheck(Check):
    kind = "tool_calls"
    options: ToolCallOptions

    def __init__(self, options: ToolCallOptions) -> None:
        super().__init__(options)
        self.validators = {name: _validator(name, schema)
                           for name, schema in options.tools.items()}

    def run(self, answer: Answer) -> list[Violation]:
        calls = answer.tool_calls
        found: list[Violation] = []
        limit = self.options.max_calls
        if limit is not None and len(calls) > limit:
            found.append(self.violation("tool_calls", f"{len(calls)} tool calls; at "
                                                      f"most {limit} allowed"))
        allowed = self._allowed(answer)
        for i, call in enumerate(calls):
            where = f"tool_calls[{i}]"
            if call.name not in allowed:
                names = ", ".join(sorted(allowed)) or "none"
                found.append(self.violation(f"{where}.name", f"tool {call.name!r} is "
                                                             f"not allowed (allowed: "
                                                             f"{names})"))
                continue
            found.extend(self._arguments(where, call.name, call.arguments, answer))
        return found

    def _allowed(self, answer: Answer) -> frozenset[str]:
        if self.options.allow is not None:
            return frozenset(self.options.allow)
        return frozenset(answer.tools or ())

    def _arguments(self, where: str, name: str, raw: str,
                   answer: Answer) -> list[Violation]:
        try:
            arguments = orjson.loads(raw or "{}")
        except orjson.JSONDecodeError as exc:
            return [self.violation(f"{where}.arguments", f"are not valid JSON ({exc})")]
        validator = self.validators.get(name)
        if validator is None and answer.tools and name in answer.tools:
            validator = _validator(name, answer.tools[name])
        if validator is None:
            return [self.violation(f"{where}.arguments",
                                   f"tool {name!r} has no argument schema, so its "
                                   "arguments cannot be checked; add one under "
                                   "'tools'")]
        return [self.violation(f"{where}.arguments{json_path(e.absolute_path)}",
                               describe(e))
                for e in validator.iter_errors(arguments)]


def _validator(name: str, schema: dict[str, Any]) -> Draft202012Validator:
    try:
        Draft202012Validator.check_schema(schema)
    except Exception as exc:
        raise ValueError(f"the argument schema of tool {name!r} is not valid JSON "
                         f"Schema: {getattr(exc, 'message', exc)}") from None
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def build(options: ToolCallOptions) -> ToolCallCheck:
    return ToolCallCheck(options)
