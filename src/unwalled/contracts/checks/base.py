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
    canaries: tuple[str, ...] = ()
    """Markers planted in this request's prompt, besides the contract's own."""
    tools: dict[str, dict[str, Any]] | None = None
    """Argument schemas of the tools the request offered, by name."""


class Options(BaseModel):
    """Options every check takes."""

    model_config = ConfigDict(extra="forbid")

    field: str | None = None
    """A JSON pointer: run this check on that string of the JSON answer."""


class Check:
    """A built check. Subclasses set ``kind`` and implement ``run``."""

    kind = "check"

    def __init__(self, options: Options) -> None:
        self.options = options

    def __call__(self, answer: Answer) -> list[Violation]:
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
            return
        if not answer.has_value:
            return
        found, value = resolve_pointer(answer.value, pointer)
        if found and isinstance(value, str):
            yield pointer, value


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
