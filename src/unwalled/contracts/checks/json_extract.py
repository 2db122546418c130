"""JSON out of messy model text.

Models wrap JSON in code fences (with or without a language tag), put prose
before and after it, give several fenced blocks, or damage the syntax a little
(a trailing comma, single quotes, a missing closing brace). ``extract`` finds
every candidate, in order of how deliberate it looks (the whole text, fenced
blocks, then bare ``{...}``/``[...]`` spans in prose), parses each strictly and
then with ``json_repair``, and keeps the first that the caller's test accepts
(the schema, when there is one), else the first that parsed at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

import orjson

from unwalled.contracts.checks.base import Answer, Check, Options
from unwalled.contracts.verdict import Violation

FENCE = re.compile(r"(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+.-]*)[^\n]*\n"
                   r"(?P<body>.*?)(?:\n[ \t]*(?P=fence)|\Z)", re.S)
OPENERS = {"{": "}", "[": "]"}
MAX_CANDIDATES = 16


@dataclass(slots=True)
class Extracted:
    value: Any
    source: str
    """Where it came from: ``whole text``, ``code block 2``, ``text at 14``."""
    repaired: bool


def extract(text: str, accept: Callable[[Any], bool] | None = None,
            repair: bool = True) -> Extracted | None:
    """The best JSON value in ``text``, or None when there is none.

    Under a schema whose answer is a bare string (an intent label, say), text
    holding no JSON at all is taken as that string, once stripped."""
    first: Extracted | None = None
    for source, piece in candidates(text):
        found = parse(piece, source, repair)
        if found is None:
            continue
        if accept is None or accept(found.value):
            return found
        first = first or found
    stripped = text.strip()
    if first is None and accept is not None and stripped and accept(stripped):
        return Extracted(stripped, "whole text, as a string", repaired=False)
    return first


def candidates(text: str) -> Iterator[tuple[str, str]]:
    """Pieces of text that may hold the JSON, most deliberate first."""
    stripped = text.strip()
    if stripped:
        yield "whole text", stripped  # a scalar (42, "refund", true) only as the whole
    count = 0
    for number, match in enumerate(FENCE.finditer(text), start=1):
        lang = match.group("lang").lower()
        if lang in ("", "json", "json5", "jsonc", "javascript", "js"):
            count += 1
            yield f"code block {number}", match.group("body")
    for start, piece in bracketed_spans(text):
        count += 1
        if count > MAX_CANDIDATES:
            return
        yield f"text at {start}", piece


def bracketed_spans(text: str) -> Iterator[tuple[int, str]]:
    """Top-level ``{...}`` and ``[...]`` spans, matched outside JSON strings.

    An unclosed span runs to the end of the text, so that a repair can close it.
    """
    i, n = 0, len(text)
    while i < n:
        start = _next_opener(text, i)
        if start < 0:
            return
        end = _matching_close(text, start)
        yield start, text[start:end]
        i = end if end > start + 1 else start + 1


def _next_opener(text: str, i: int) -> int:
    braces, brackets = text.find("{", i), text.find("[", i)
    found = [p for p in (braces, brackets) if p >= 0]
    return min(found) if found else -1


def _matching_close(text: str, start: int) -> int:
    stack: list[str] = []
    in_string = escaped = False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in OPENERS:
            stack.append(OPENERS[c])
        elif stack and c == stack[-1]:
            stack.pop()
            if not stack:
                return i + 1
    return len(text)


def parse(piece: str, source: str, repair: bool) -> Extracted | None:
    try:
        return Extracted(orjson.loads(piece), source, repaired=False)
    except orjson.JSONDecodeError:
        pass
    if not repair or source == "whole text" and piece[:1] not in OPENERS:
        return None
    import json_repair

    try:
        value = json_repair.loads(piece)
    except Exception:  # the repair library gave up: treat as no JSON here
        return None
    # json_repair answers "" (or a bare scalar) when it found nothing structured.
    if not isinstance(value, (dict, list)) or not value and piece.strip()[:1] not in OPENERS:
        return None
    return Extracted(value, source, repaired=True)


class JsonOptions(Options):
    kind: Literal["json"] = "json"
    repair: bool = True
    """Mend minor syntax damage (trailing commas, quotes, unclosed braces)."""
    prose: bool = True
    """Accept prose around the JSON; when false the whole text must be the JSON."""


class JsonCheck(Check):
    """The answer must contain JSON (the verifier extracts it; this reports it)."""

    kind = "json"
    options: JsonOptions

    def run(self, answer: Answer) -> list[Violation]:
        if not answer.has_value:
            return [self.violation("text", "the answer holds no JSON value; answer "
                                           "with one JSON object and nothing else.")]
        if answer.cut and answer.value_repaired:
            # Closing a cut answer's brackets makes it parse, not complete: the
            # rest of a string or of a list is missing, so the value is untrusted.
            return [self.violation("text", "the answer was cut off at max_tokens "
                                           "before its JSON was complete; raise "
                                           "max_tokens or ask for a shorter answer.")]
        return []

    def extract(self, text: str, accept: Callable[[Any], bool] | None,
                cut: bool = False) -> tuple[Extracted | None, list[Violation]]:
        """``cut``: the answer stopped at max_tokens; JSON that parses as written
        is preferred then, since a mended one may be missing its end."""
        found = extract(text, accept, repair=False) if cut else None
        if found is None or (accept is not None and not accept(found.value)):
            found = extract(text, accept, self.options.repair)
        if found is None or self.options.prose or found.source.startswith("whole text"):
            return found, []
        return None, [self.violation("text", f"the JSON is inside {found.source} with "
                                             "other text around it; answer with the "
                                             "JSON alone.")]


def build(options: JsonOptions) -> JsonCheck:
    return JsonCheck(options)
