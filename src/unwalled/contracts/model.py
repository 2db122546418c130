"""The contract: what a valid answer is, and what to do when one is not.

YAML and Python build the same pydantic model::

    name: banking-intent
    route: triage                 # the route the Python client uses by default
    system: Classify the customer's message into one intent.
    template: "Message: {input}"  # how the client wraps raw input
    output:
      schema: {type: object, properties: {intent: {enum: [...]}}, required: [intent]}
    checks: [no_secrets, {urls: {allow: [bank.example]}}, {max_chars: 500}]
    on_fail: {repair: 2, then: fallback}
    decoding: constrained

``on_fail`` is ``reject``, ``repair`` (twice), ``fallback``, ``{repair: N}``,
``{repair: N, then: fallback}`` or ``{repair: N, then: reject}``. Repairs are
counted per target; ``fallback`` moves to the route's next target when a
target's repairs are used up, and the answer is rejected after the last one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, \
    model_validator

from unwalled.textfile import load_yaml, read_text
from unwalled.contracts import checks as check_kinds
from unwalled.contracts.checks import CheckSpec
from unwalled.errors import ConfigError

DEFAULT_REPAIRS = 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Output(_Strict):
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    """JSON Schema (2020-12) of the answer; a string is a path to a JSON/YAML file."""
    is_json: bool = Field(True, alias="json")
    """Whether the answer is JSON at all (true whenever there is a schema)."""
    repair_syntax: bool = True
    """Mend minor JSON damage (trailing commas, quotes, unclosed braces)."""
    prose: bool = True
    """Accept prose or code fences around the JSON."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class OnFail(_Strict):
    repair: int = Field(0, ge=0, le=10)
    """How many times to re-ask a target with the violations."""
    fallback: bool = False
    """Whether to move to the route's next target when repairs run out."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, raw: Any) -> Any:
        if isinstance(raw, str):
            return _on_fail_word(raw)
        if isinstance(raw, list):
            merged: dict[str, Any] = {}
            for item in raw:
                merged.update(cls._shorthand(item))
            return merged
        if isinstance(raw, dict) and "then" in raw:
            raw = dict(raw)
            then = raw.pop("then")
            if then not in ("fallback", "reject"):
                raise ValueError(f"'then' must be fallback or reject, not {then!r}")
            raw["fallback"] = then == "fallback"
        return raw

    def describe(self) -> str:
        steps = [f"repair {self.repair}x"] if self.repair else []
        steps.append("fallback" if self.fallback else "reject")
        return " then ".join(steps)


def _on_fail_word(word: str) -> dict[str, Any]:
    words = {"reject": {}, "repair": {"repair": DEFAULT_REPAIRS},
             "fallback": {"fallback": True}}
    if word not in words:
        raise ValueError(f"on_fail must be reject, repair or fallback (or a mapping "
                         f"like {{repair: 2, then: fallback}}), not {word!r}")
    return words[word]


WHOLE_ANSWER_KINDS = ("json", "schema", "tool_calls")
"""Checks that read the answer's JSON or its calls as a whole, never a field."""


class Contract(_Strict):
    name: str = Field(min_length=1, max_length=128)
    description: str = ""
    route: str | None = None
    system: str | None = None
    template: str | None = None
    """How raw input becomes the user message; ``{input}`` marks where it goes."""
    output: Output | None = None
    checks: list[CheckSpec] = Field(default_factory=list)
    on_fail: OnFail = Field(default_factory=OnFail)
    decoding: Literal["constrained", "free"] = "constrained"
    """``constrained``: where the backend can, decode under the output schema."""
    source: str = Field("<python>", exclude=True)

    @field_validator("template")
    @classmethod
    def _has_slot(cls, value: str | None) -> str | None:
        if value is not None and "{input}" not in value:
            raise ValueError("the template must contain {input}, where the input goes")
        return value

    @model_validator(mode="after")
    def _fields_need_json(self) -> "Contract":
        reads_json = self.output is not None and (
            self.output.is_json or self.output.json_schema is not None)
        for i, check in enumerate(self.checks):
            if getattr(check, "field", None) is None:
                continue
            if check.kind in WHOLE_ANSWER_KINDS:
                raise ValueError(
                    f"checks[{i}]: the {check.kind} check reads the whole answer, "
                    "not one field: remove 'field'")
            if not reads_json:
                raise ValueError(
                    f"checks[{i}] reads the field {check.field}, but the contract "
                    "has no JSON output to read it from: add an 'output:' section "
                    "(a schema, or 'json: true'), or remove 'field'")
        return self

    @property
    def schema(self) -> dict[str, Any] | None:
        return self.output.json_schema if self.output else None

    def user_message(self, text: str) -> str:
        return self.template.replace("{input}", text) if self.template else text


# ---- loading, with errors that name the file, the place and the fix ----

def load_contract(path: str | Path) -> Contract:
    """A contract from a YAML (or JSON) file. Raises ``ConfigError`` naming the fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("no such contract file.", file=str(path),
                          fix="give the path of an existing contract YAML file.")
    text = read_text(path)
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)}).",
                          file=str(path), fix="correct the YAML syntax there.") from None
    return parse_contract(raw, source=str(path), text=text, base=path.parent)


def contract_mapping(path: str | Path) -> dict[str, Any]:
    """A contract file as a self-contained mapping (a schema file it names read
    in), for a caller that stores the contract beside its own data. The file is
    validated first, so its errors name the file and the place."""
    path = Path(path)
    load_contract(path)
    raw = dict(load_yaml(read_text(path)))
    _schema_file(raw, str(path), path.parent)
    return raw


def parse_contract(raw: Any, source: str = "<dict>", *, text: str | None = None,
                   base: Path | None = None, name: str | None = None) -> Contract:
    """A contract from a mapping (parsed YAML or inline config)."""
    if isinstance(raw, Contract):
        return raw
    if not isinstance(raw, dict):
        raise ConfigError("a contract must be a mapping with at least 'name'.",
                          file=source, fix="start with 'name: my-contract'.")
    raw = dict(raw)
    if name and "name" not in raw:
        raw["name"] = name
    _schema_file(raw, source, base)
    try:
        contract = Contract.model_validate(raw)
    except ValidationError as exc:
        raise explain(exc, source, text) from None
    contract.source = source
    return contract


def _schema_file(raw: dict[str, Any], source: str, base: Path | None) -> None:
    """``output.schema`` given as a path: read the file it names."""
    output = raw.get("output")
    if not isinstance(output, dict) or not isinstance(output.get("schema"), str):
        return
    path = (base or Path(".")) / output["schema"]
    try:
        loaded = path.read_text(encoding="utf-8")
        schema = orjson.loads(loaded) if path.suffix == ".json" else yaml.safe_load(loaded)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the schema file {path}: {exc}", file=source,
                          key="output.schema",
                          fix="give a path (relative to the contract) of a JSON or "
                              "YAML file holding the schema, or the schema itself."
                          ) from None
    raw["output"] = {**output, "schema": schema}


_FIXES = {
    "missing": "add this key.",
    "extra_forbidden": "remove it or correct its spelling.",
    "literal_error": "use one of the values listed.",
    "union_tag_invalid": "use one of the check kinds listed.",
    "greater_than_equal": "use a larger number.",
    "less_than_equal": "use a smaller number.",
    "int_parsing": "give a whole number.",
    "bool_parsing": "give true or false.",
    "dict_type": "give a mapping (key: value lines).",
    "list_type": "give a list (lines starting with '- ').",
    "string_type": "give a text value.",
    "value_error": "correct the value as the message says.",
}


def explain(exc: ValidationError, source: str, text: str | None) -> ConfigError:
    """pydantic's report as one error: file, place (key path and line), fix."""
    lines = []
    for error in exc.errors():
        loc = [p for p in error["loc"] if not _is_tag(p)]
        key = _key(loc)
        line = _line(text, loc)
        where = f"{key} (line {line})" if line else key
        message = error["msg"].removeprefix("Value error, ")
        fix = _FIXES.get(error["type"], "correct the value.")
        lines.append(f"{where}: {message}. Fix: {fix}")
    more = "" if len(lines) == 1 else "\n  " + "\n  ".join(lines[1:])
    return ConfigError(f"{lines[0]}{more}", file=source)


def _is_tag(part: Any) -> bool:
    """The discriminator tag pydantic puts in a location (e.g. ``urls``)."""
    return isinstance(part, str) and part in check_kinds.OPTIONS


def _key(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "<top level>"


def _line(text: str | None, loc: list[Any]) -> int | None:
    """The line in the YAML where a location is (or its nearest parent)."""
    if not text:
        return None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line


def _child(node: Any, part: Any) -> Any:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == str(part):
                return value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
            and part < len(node.value):
        return node.value[part]
    return None
