"""The check an audit runs on each raw answer, to report a contract pass rate.

A suite's ``contract`` is, for now, a JSON Schema for the answer:
``contract: {schema: {...}}`` (or the schema itself). ``AnswerCheck`` is the
seam: anything with ``check(text) -> list[str]`` (the violations, empty when the
answer passes) can stand in, so full contracts (checks, rules, safety) plug in
here without the runner changing.
"""

from __future__ import annotations

from typing import Any, Protocol

from unwalled.audit.prompting import lenient_json
from unwalled.errors import ConfigError


class AnswerCheck(Protocol):
    def check(self, text: str) -> list[str]: ...


class SchemaCheck:
    """The answer must be JSON that validates against a JSON Schema (2020-12)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ConfigError(f"the contract's schema is not a valid JSON Schema: "
                              f"{exc.message}", key="contract.schema",
                              fix="correct the schema (JSON Schema 2020-12).") from exc
        self.validator = Draft202012Validator(schema)

    def check(self, text: str) -> list[str]:
        value = lenient_json(text)
        if value is None:
            return ["the answer is not JSON"]
        return [_describe(error) for error in self.validator.iter_errors(value)]


def _describe(error: Any) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "the answer"
    return f"{where}: {error.message}"


def build_check(contract: dict[str, Any] | None) -> AnswerCheck | None:
    """The check a suite's ``contract`` field asks for, or None without one."""
    if contract is None:
        return None
    schema = contract.get("schema", contract)
    if not isinstance(schema, dict):
        raise ConfigError("contract.schema must be a JSON Schema object.",
                          key="contract", fix="give 'contract: {schema: {...}}'.")
    return SchemaCheck(schema)
