"""Verdicts on probe answers: does an answer satisfy its probe's contract?

A probe's contract is, for now, a JSON Schema, checked the way audits check
theirs (``unwalled.audit.contract.SchemaCheck``: the JSON is taken from the
text leniently, code fences and prose around it tolerated), so that drift
watch and audits agree on what a passing answer is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import orjson

from unwalled.audit.contract import SchemaCheck
from unwalled.drift.probes import ProbeContract


@dataclass(slots=True)
class Verdict:
    passed: bool
    violations: list[str] = field(default_factory=list)


def judge(text: str, contract: ProbeContract) -> Verdict:
    """Check one answer against a contract."""
    check = _check(orjson.dumps(contract.schema_, option=orjson.OPT_SORT_KEYS))
    violations = check.check(text)
    return Verdict(not violations, violations[:5])


@lru_cache(maxsize=256)
def _check(schema_json: bytes) -> SchemaCheck:
    return SchemaCheck(orjson.loads(schema_json))
