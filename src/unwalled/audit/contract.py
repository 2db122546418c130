"""The check an audit runs on each raw answer, to report a contract pass rate.

A suite's ``contract`` is one of:

- a path to a contract file (``contract: intent.contract.yaml``, relative to the
  suite), or a full contract inline (a mapping with ``output``, ``checks`` or
  ``on_fail``): every check of the contract runs on each answer;
- a JSON Schema for the answer: ``contract: {schema: {...}}`` (or the schema
  itself).

``AnswerCheck`` is the seam: anything with ``check(text) -> list[str]`` (the
violations, empty when the answer passes) can stand in.
"""

from __future__ import annotations

from pathlib import Path
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


class ContractCheck:
    """Every check of a full contract, as the gateway would run them."""

    def __init__(self, contract: Any) -> None:
        from unwalled.contracts.verifier import Verifier

        self.verifier = Verifier(contract)

    def check(self, text: str) -> list[str]:
        result = self.verifier.verify(text)
        return [f"{v.check} at {v.path}: {v.message}" for v in result.violations]


CONTRACT_KEYS = {"output", "checks", "on_fail", "system", "template", "decoding"}


def build_check(contract: dict[str, Any] | str | None,
                folder: str | Path = ".") -> AnswerCheck | None:
    """The check a suite's ``contract`` field asks for, or None without one."""
    if contract is None:
        return None
    if isinstance(contract, str):
        from unwalled.contracts.model import load_contract

        return ContractCheck(load_contract(Path(folder) / contract))
    if CONTRACT_KEYS & set(contract):
        from unwalled.contracts.model import parse_contract

        return ContractCheck(parse_contract(contract, source="suite contract"))
    schema = contract.get("schema", contract)
    if not isinstance(schema, dict):
        raise ConfigError("contract.schema must be a JSON Schema object.",
                          key="contract", fix="give 'contract: {schema: {...}}'.")
    return SchemaCheck(schema)
