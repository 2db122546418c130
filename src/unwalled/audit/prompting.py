"""From a suite, a candidate and an item to the request a model sees, and back.

``build_request`` and ``read_answer`` are pure: the same inputs give the same
request and the same prediction, which is what makes the response cache and a
distributed executor possible.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from unwalled.audit.suite import Candidate, Item, Suite, render
from unwalled.backends.base import ChatRequest, Message

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def answer_schema(suite: Suite, labels: list[str] | None) -> dict[str, Any] | None:
    """The JSON Schema that constrained decoding enforces, if the suite has one."""
    if suite.output.schema_ is not None:
        return suite.output.schema_
    if suite.output.field and labels:
        return {"type": "object", "required": [suite.output.field],
                "properties": {suite.output.field: {"enum": labels}},
                "additionalProperties": False}
    return None


def wants_json(suite: Suite) -> bool:
    return bool(suite.output.field or suite.output.json_answer)


def choose_shots(suite: Suite, candidate: Candidate, train: list[Item]) -> list[Item]:
    """The candidate's few-shot examples: k train items drawn with the suite's seed.

    Every item gets the same examples, so the prompt prefix repeats and local
    models reuse their cached prefix.
    """
    if not candidate.shots:
        return []
    rng = random.Random(f"{suite.sample.seed}:{candidate.name}")
    return rng.sample(train, min(candidate.shots, len(train)))


def build_request(suite: Suite, candidate: Candidate, item: Item,
                  shots: list[Item], labels: list[str] | None) -> ChatRequest:
    """The chat request for one item: instructions, examples, then the item."""
    messages: list[Message] = []
    system = system_prompt(suite, labels)
    if system:
        messages.append(Message("system", system))
    for shot in shots:
        messages.append(Message("user", render(suite.input, shot.fields)))
        messages.append(Message("assistant", shown_answer(suite, shot.expected)))
    messages.append(Message("user", render(suite.input, item.fields)))
    schema = answer_schema(suite, labels) if candidate.decoding == "constrained" else None
    return ChatRequest(messages=messages,
                       max_tokens=candidate.max_tokens or suite.max_tokens,
                       temperature=suite.temperature, seed=suite.sample.seed,
                       json_schema=schema)


def system_prompt(suite: Suite, labels: list[str] | None) -> str:
    text = suite.instructions
    if "{labels}" in text:
        text = text.replace("{labels}", ", ".join(labels or []))
    return text.strip()


def shown_answer(suite: Suite, expected: Any) -> str:
    """How a correct answer looks in a few-shot example."""
    if suite.output.field:
        return json.dumps({suite.output.field: expected})
    if suite.output.json_answer:
        return expected if isinstance(expected, str) else json.dumps(expected)
    return str(expected)


def read_answer(suite: Suite, text: str) -> Any:
    """The prediction in an answer: a JSON field, a JSON value, or the first line."""
    if not wants_json(suite):
        return first_line(text)
    value = lenient_json(text)
    if suite.output.field:
        if isinstance(value, dict):
            return value.get(suite.output.field)
        # A model that answered with the bare value still answered.
        return first_line(text) if value is None else value
    return value


def first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0].strip() if stripped else ""


def lenient_json(text: str) -> Any:
    """The JSON value in ``text``, tolerating code fences and prose around it."""
    candidates = [text.strip()]
    fenced = _FENCE.search(text)
    if fenced:
        candidates.append(fenced.group(1).strip())
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
    return None
