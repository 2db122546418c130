"""JSON Schema (draft 2020-12) on the answer's JSON, ``$ref``/``$defs`` and formats.

The validator and its format checker are built once per contract. A ``format``
that no installed checker can test would pass silently in ``jsonschema``, so
it is refused when the contract loads: a check that cannot run must not pass.
"""

from __future__ import annotations

import difflib
from urllib.parse import unquote
from typing import Any, Iterator, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from pydantic import Field

from unwalled.contracts.checks.base import (
    Answer, Check, Options, excerpt, json_path, resolve_pointer,
)
from unwalled.contracts.verdict import Violation

MAX_REPORTED = 10
CLOSEST = 3
"""Allowed values suggested when an answer is not in a long enum."""


class SchemaOptions(Options):
    kind: Literal["schema"] = "schema"
    json_schema: dict[str, Any] = Field(alias="schema")
    formats: bool = True
    """Check ``format`` (email, date-time, uri, uuid, ...) instead of ignoring it."""

    model_config = {"populate_by_name": True, "extra": "forbid"}


class SchemaCheck(Check):
    kind = "schema"
    options: SchemaOptions

    def __init__(self, options: SchemaOptions) -> None:
        super().__init__(options)
        schema = options.json_schema
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            where = json_path(exc.absolute_path)
            raise ValueError(f"the schema is not valid JSON Schema 2020-12 at {where}: "
                             f"{exc.message}") from None
        checker = Draft202012Validator.FORMAT_CHECKER if options.formats else None
        if checker is not None:
            missing = sorted(set(formats_in(schema)) - set(checker.checkers))
            if missing:
                raise ValueError(
                    f"the schema uses format(s) {', '.join(missing)} that cannot be "
                    "checked here; remove them, or set 'formats: false' to treat "
                    "every format as a note only")
        for ref in unresolvable_refs(schema):
            raise ValueError(
                f"the schema's $ref {ref!r} points at nothing in the schema; define "
                "it under $defs (a remote schema is never fetched)")
        self.validator = Draft202012Validator(schema, format_checker=checker)

    def is_valid(self, value: Any) -> bool:
        return self.validator.is_valid(value)

    def run(self, answer: Answer) -> list[Violation]:
        if not answer.has_value or answer.value_is_valid:
            return []  # no JSON (reported by the json check), or validated already
        errors = sorted(self.validator.iter_errors(answer.value),
                        key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
        return [self.violation(json_path(e.absolute_path), describe(e))
                for e in errors[:MAX_REPORTED]]


def describe(error: ValidationError) -> str:
    """jsonschema's message, shortened where it would list a long enum."""
    if error.validator == "enum" and isinstance(error.validator_value, list):
        allowed = error.validator_value
        if len(allowed) > 8:
            return (f"{excerpt(str(error.instance))} is not one of the "
                    f"{len(allowed)} allowed values{closest(error.instance, allowed)}")
    if error.validator == "required":
        return f"{error.message}; add it"
    if error.validator == "additionalProperties":
        return f"{error.message}; remove it"
    return error.message


def closest(value: Any, allowed: list[Any]) -> str:
    """The few allowed values nearest to a wrong one, as a hint (or nothing)."""
    if not isinstance(value, str):
        return ""
    names = {str(v): v for v in allowed}
    near = difflib.get_close_matches(value, list(names), n=CLOSEST, cutoff=0.6)
    return f"; closest: {', '.join(repr(names[n]) for n in near)}" if near else ""


def formats_in(schema: Any) -> Iterator[str]:
    """Every ``format`` value used anywhere in a schema."""
    return (f for f in values_of(schema, "format") if isinstance(f, str))


def unresolvable_refs(schema: Any) -> Iterator[str]:
    """Each ``$ref`` that resolves to nothing: a local pointer to no place, or a
    remote address no ``$id`` in the schema stands for. (Left to the validator
    when subschemas carry ``$id`` of their own, which move the base.)"""
    ids = [i for i in values_of(schema, "$id") if isinstance(i, str)]
    for ref in values_of(schema, "$ref"):
        if not isinstance(ref, str):
            continue
        if ref.startswith("#/") and not ids[1 if schema.get("$id") else 0:]:
            if not resolve_pointer(schema, unquote(ref[1:]))[0]:
                yield ref
        elif "://" in ref and not any(ref.startswith(i.split("#")[0]) for i in ids):
            yield ref


def values_of(schema: Any, key: str) -> Iterator[Any]:
    """Every value of ``key`` anywhere in a schema, outside literal data
    (``enum``, ``const``, ``examples``, ``default``)."""
    if isinstance(schema, dict):
        if key in schema:
            yield schema[key]
        for name, sub in schema.items():
            if name not in ("enum", "const", "examples", "default"):
                yield from values_of(sub, key)
    elif isinstance(schema, list):
        for sub in schema:
            yield from values_of(sub, key)


def build(options: SchemaOptions) -> SchemaCheck:
    return SchemaCheck(options)
