"""Verdicts on probe answers: does an answer satisfy its probe's contract?

A probe's contract is checked the way audits check theirs
(``unwalled.audit.contract.build_check``): a JSON Schema, with the JSON taken
from the text leniently (code fences and prose around it tolerated), or every
check of a full contract, so that drift watch, audits and the gateway agree on
what a passing answer is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from unwalled.audit.contract import AnswerCheck, build_check


@dataclass(slots=True)
class Verdict:
    passed: bool
    violations: list[str] = field(default_factory=list)


def judge(text: str, contract: dict[str, Any]) -> Verdict:
    """Check one answer against a probe's contract."""
    check = _check(orjson.dumps(contract, option=orjson.OPT_SORT_KEYS))
    violations = check.check(text)
    return Verdict(not violations, violations[:5])


@lru_cache(maxsize=256)
def _check(contract_json: bytes) -> AnswerCheck:
    return build_check(orjson.loads(contract_json))  # type: ignore[return-value]
