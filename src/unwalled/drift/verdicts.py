"""Verdicts on probe answers: does an answer satisfy its probe's contract?

A probe's contract is, for now, a JSON Schema. The answer's JSON is taken from
the text leniently (a code fence or prose around it is tolerated), because the
drift test is about whether the route still *produces* valid data, not about
how it is wrapped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from unwalled.drift.probes import ProbeContract


@dataclass(slots=True)
class Verdict:
    passed: bool
    violations: list[str] = field(default_factory=list)


def judge(text: str, contract: ProbeContract) -> Verdict:
    """Check one answer against a contract."""
    value, found = extract_json(text)
    if not found:
        return Verdict(False, ["the answer holds no JSON value"])
    validator = _validator(orjson.dumps(contract.schema_, option=orjson.OPT_SORT_KEYS))
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    if not errors:
        return Verdict(True)
    return Verdict(False, [_describe(error) for error in errors[:5]])


def extract_json(text: str) -> tuple[Any, bool]:
    """The first JSON object or array in ``text``; ``(None, False)`` if none."""
    stripped = text.strip()
    try:
        return json.loads(stripped), True
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for start, char in enumerate(text):
        if char not in "{[":
            continue
        try:
            value, _end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        return value, True
    return None, False


@lru_cache(maxsize=256)
def _validator(schema_json: bytes) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(orjson.loads(schema_json))


def _describe(error: Any) -> str:
    where = "/".join(str(part) for part in error.path) or "(top level)"
    return f"{where}: {error.message}"[:300]
