"""What every check shares: the answer it looks at, its options, how it reports.

A check is built once from its options (patterns compiled, validators made) and
then called for every answer: ``check(answer)`` returns a list of violations,
empty when the answer passes. Building is where the cost goes, so the call
stays cheap.

``Options.field`` points a text check at one string inside the answer's JSON
(a JSON pointer such as ``/query``) instead of the whole text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import orjson
from pydantic import BaseModel, ConfigDict

from unwalled.backends.base import ToolCall
from unwalled.contracts.verdict import Violation


@dataclass(slots=True)
class Answer:
    """One model answer, as the checks see it."""

    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    value: Any = None
    """The JSON value extracted from the text, when there is one."""
    has_value: bool = False
    value_is_valid: bool = False
    """Set when extraction already validated ``value`` against the schema."""
    value_repaired: bool = False
    """Set when ``value`` parsed only after mending its syntax."""
    canaries: tuple[str, ...] = ()
    """Markers planted in this request's prompt, besides the contract's own."""
    tools: dict[str, dict[str, Any]] | None = None
    """Argument schemas of the tools the request offered, by name."""
    cut: bool = False
    """The answer stopped at ``max_tokens`` rather than ending by itself."""


class Options(BaseModel):
    """Options every check takes."""

    model_config = ConfigDict(extra="forbid")

    field: str | None = None
    """A JSON pointer: run this check on that string of the JSON answer."""


class Check:
    """A built check. Subclasses set ``kind`` and implement ``run``."""

    kind = "check"
    reads_calls = False
    """Whether the check reads each tool call's arguments too, besides the text:
    set on the leak checks, since what a model writes into a call leaves the
    system as surely as what it writes in its answer."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.field_optional = False
        """Set by the verifier when the contract's schema lets ``field`` be absent."""

    def __call__(self, answer: Answer) -> list[Violation]:
        pointer = self.options.field
        if pointer is not None:
            problem = field_problem(answer, pointer, self.field_optional)
            if problem is not None:  # fail closed: a field it cannot read is no pass
                return [self.violation(pointer, problem)]
        return self.run(answer)

    def run(self, answer: Answer) -> list[Violation]:
        raise NotImplementedError

    def violation(self, path: str, message: str) -> Violation:
        return Violation(self.kind, path, message)

    def texts(self, answer: Answer) -> Iterator[tuple[str, str]]:
        """``(path, text)`` pairs this check reads: the whole text, or one field."""
        pointer = self.options.field
        if pointer is None:
            yield "text", answer.text
            if self.reads_calls:
                for i, call in enumerate(answer.tool_calls):
                    yield from call_texts(call, f"tool_calls[{i}]")
            return
        found, value = resolve_pointer(answer.value, pointer)
        if answer.has_value and found and isinstance(value, str):
            yield pointer, value


def call_texts(call: ToolCall, where: str) -> Iterator[tuple[str, str]]:
    """A tool call's name and arguments as the leak checks read them: the JSON
    as written, and its strings decoded when escapes (``\\u0040``) hide them."""
    yield f"{where}.name", call.name
    yield f"{where}.arguments", call.arguments
    if "\\" in call.arguments:
        try:
            value = orjson.loads(call.arguments)
        except orjson.JSONDecodeError:
            return
        yield f"{where}.arguments", "\n".join(_strings(value))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def disguised(text: str, find: Any, seen: set[str]) -> list[Any]:
    """Findings that show only once the text's disguises are off (``unmask``):
    ``find`` run on the unmasked text, less the values ``seen`` in it as written."""
    from unwalled.shield.unmask import unmasked

    bare = unmasked(text)
    if bare == text:
        return []
    return [f for f in find(bare) if f.value not in seen]


def field_problem(answer: Answer, pointer: str, optional: bool = False) -> str | None:
    """Why a check pointed at ``pointer`` cannot read it, or None when it can
    (or when it is absent and ``optional``: there is nothing to check)."""
    if not answer.has_value:
        return (f"the answer holds no JSON, so its field {pointer} cannot be "
                "checked; the answer is treated as failing.")
    found, value = resolve_pointer(answer.value, pointer)
    if not found:
        if optional:
            return None
        return (f"the answer's JSON has no field {pointer} to check; give the "
                "contract a schema that says whether it may be left out, or point "
                "the check at a field that is always there.")
    if not isinstance(value, str):
        return (f"the field {pointer} is {type_name(value)}, not text, so the "
                "check cannot read it.")
    return None


def type_name(value: Any) -> str:
    """A JSON type's name with its article, for messages."""
    names = {dict: "an object", list: "an array", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), f"a {type(value).__name__}")


def resolve_pointer(value: Any, pointer: str) -> tuple[bool, Any]:
    """Follow a JSON pointer (RFC 6901). Returns ``(found, value)``."""
    if pointer in ("", "/"):
        return True, value
    for raw in pointer.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def required_by(schema: Any, pointer: str) -> bool:
    """Whether a schema makes every step of ``pointer`` a required property
    (local ``$ref`` followed). Anything it cannot tell counts as required."""
    node = schema
    for raw in pointer.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        node = _followed(schema, node)
        if not isinstance(node, dict):
            return True
        if "properties" in node or "required" in node:
            if part not in node.get("required", ()):
                return False
            node = node.get("properties", {}).get(part)
        elif part.isdigit() and "items" in node:
            node = node["items"]
        else:
            return True
    return True


def _followed(root: Any, node: Any) -> Any:
    for _ in range(32):  # a chain of refs, not a loop
        ref = node.get("$ref") if isinstance(node, dict) else None
        if not isinstance(ref, str) or not ref.startswith("#"):
            return node
        found, node = resolve_pointer(root, ref[1:])
        if not found:
            return None
    return node


def json_path(parts: Any) -> str:
    """A JSON pointer from a sequence of keys and indexes."""
    escaped = [str(p).replace("~", "~0").replace("/", "~1") for p in parts]
    return "/" + "/".join(escaped) if escaped else "/"


def span(start: int, end: int) -> str:
    """The path of a piece of the answer's text."""
    return f"text[{start}:{end}]"


def excerpt(text: str, limit: int = 60) -> str:
    """A short, quoted piece of text for a message."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return repr(text)


def mask(secret: str) -> str:
    """A secret shown only by its first characters, so messages don't leak it."""
    keep = 4 if len(secret) > 12 else 2
    return f"{secret[:keep]}…({len(secret)} chars)"
