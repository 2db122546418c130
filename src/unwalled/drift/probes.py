"""Probe sets: the fixed prompts that drift watch sends to a route.

A probe set is a JSONL file, one probe a line::

    {"id": "capital", "prompt": "Capital of France?", "temperature": 0, "samples": 3}
    {"id": "ticket", "messages": [{"role": "system", "content": "..."},
                                  {"role": "user", "content": "..."}],
     "temperature": 0.7, "max_tokens": 32, "samples": 10,
     "contract": {"schema": {"type": "object", "required": ["intent"]}}}
    {"id": "intent", "prompt": "...", "contract": "intent.contract.yaml"}

A probe's ``contract`` judges its answers, as audits judge theirs: a JSON
Schema (``{"schema": {...}}``), a full contract inline (a mapping with
``output``, ``checks`` or ``on_fail``), or the path of a contract file,
relative to the probe file. A file is read in when the set is loaded, so a
snapshot keeps the contract it was judged by, and editing the file changes the
set's digest. Only the contract's checks run: the probe's own prompt is what is
sent, and ``on_fail`` does not re-ask, since drift watch measures the route as
it is.

A probe at temperature 0 is *deterministic*: the flip test expects it to answer
the same way every time. Blank lines and lines starting with ``//`` are skipped.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from unwalled.textfile import read_text
from unwalled.backends.base import ChatRequest, Message
from unwalled.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeMessage(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class Probe(_Strict):
    id: str = Field(min_length=1, max_length=128)
    prompt: str | None = None
    messages: tuple[ProbeMessage, ...] | None = None
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int = Field(32, ge=1, le=4096)
    samples: int = Field(10, ge=1, le=1000)
    """Samples drawn per side: the snapshot and each check draw this many."""
    logprobs: bool = True
    """Ask for token log-probabilities; backends that have none send none."""
    contract: dict[str, Any] | None = None
    """What a valid answer is (see the module's doc); a file is read in on load."""

    @model_validator(mode="after")
    def _one_prompt(self) -> "Probe":
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' is empty")
        return self

    @property
    def deterministic(self) -> bool:
        return self.temperature == 0

    def request(self, seed: int | None = None) -> ChatRequest:
        """The request one sample of this probe sends."""
        if self.messages is not None:
            messages = [Message(m.role, m.content) for m in self.messages]
        else:
            messages = [Message("user", self.prompt)]
        return ChatRequest(messages=messages, max_tokens=self.max_tokens,
                           temperature=self.temperature, top_p=self.top_p,
                           seed=None if self.deterministic else seed,
                           logprobs=self.logprobs)

    def plain(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ProbeSet:
    """An ordered set of probes with unique ids, and a digest of its content."""

    def __init__(self, probes: list[Probe], name: str = "probes") -> None:
        self.probes = probes
        self.name = name
        self.by_id = {probe.id: probe for probe in probes}

    def __iter__(self):  # noqa: ANN204
        return iter(self.probes)

    def __len__(self) -> int:
        return len(self.probes)

    @property
    def digest(self) -> str:
        """Changes whenever a prompt or a sampling setting changes."""
        canonical = orjson.dumps([p.plain() for p in self.probes],
                                 option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(canonical).hexdigest()[:16]

    def to_json(self) -> str:
        return orjson.dumps([p.plain() for p in self.probes]).decode()

    @classmethod
    def from_json(cls, text: str, name: str) -> "ProbeSet":
        return cls([Probe.model_validate(item) for item in orjson.loads(text)], name)

    def with_samples(self, samples: int) -> "ProbeSet":
        """The same probes, each drawing ``samples`` samples per side."""
        return ProbeSet([p.model_copy(update={"samples": samples}) for p in self.probes],
                        self.name)


def load_probes(path: str | Path) -> ProbeSet:
    """Read a JSONL probe set. Raises ``ConfigError`` naming the line and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("no such probe file.", file=str(path),
                          fix="give a JSONL file of probes, e.g. "
                              "examples/drift/probes.jsonl.")
    lines = read_text(path).splitlines()
    return parse_probes(lines, source=str(path), name=path.stem, base=path.parent)


def parse_probes(lines: list[str], source: str = "<probes>",
                 name: str = "probes", base: Path | None = None) -> ProbeSet:
    """Probes from JSONL lines; contract file paths are taken from ``base``."""
    probes: list[Probe] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        probe = _parse_line(line, number, source, base or Path("."))
        if probe.id in seen:
            raise ConfigError(f"probe id {probe.id!r} is already used on line "
                              f"{seen[probe.id]}.", file=source, key=f"line {number}",
                              fix="give every probe its own 'id'.")
        seen[probe.id] = number
        probes.append(probe)
    if not probes:
        raise ConfigError("the probe set has no probes.", file=source,
                          fix="write one JSON object a line, each with a 'prompt'.")
    return ProbeSet(probes, name)


def _parse_line(line: str, number: int, source: str, base: Path) -> Probe:
    where = f"line {number}"
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"is not valid JSON ({exc}).", file=source, key=where,
                          fix="write one complete JSON object on each line.") from exc
    if not isinstance(raw, dict):
        raise ConfigError("is not a JSON object.", file=source, key=where,
                          fix="write an object such as {\"id\": \"x\", \"prompt\": \"...\"}.")
    raw.setdefault("id", f"probe-{number}")
    raw["contract"] = _inline_contract(raw.get("contract"), raw["id"], base,
                                       source, where)
    try:
        probe = Probe.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "probe"
        raise ConfigError(f"{field}: {error['msg']}.", file=source, key=where,
                          fix=_fix_for(error["type"])) from exc
    if probe.contract is not None:
        _check_contract(probe.contract, source, where)
    return probe


def _fix_for(kind: str) -> str:
    return {
        "extra_forbidden": "remove the key; allowed: " + ", ".join(
            f.alias or n for n, f in Probe.model_fields.items()) + ".",
        "missing": "add this key.",
        "value_error": "give exactly one of 'prompt' (text) or 'messages' (a list).",
    }.get(kind, "correct the value.")


def _inline_contract(contract: Any, probe_id: Any, base: Path, source: str,
                     where: str) -> Any:
    """A contract file read in; an inline full contract named after its probe
    unless it has a name of its own."""
    from unwalled.audit.contract import CONTRACT_KEYS
    from unwalled.contracts.model import contract_mapping

    if isinstance(contract, str):
        try:
            return contract_mapping(base / contract)
        except ConfigError as exc:
            raise ConfigError(f"contract: {exc.message}", file=source,
                              key=where) from exc
    if isinstance(contract, dict) and CONTRACT_KEYS & set(contract):
        return {"name": str(probe_id), **contract}
    return contract


def _check_contract(contract: dict[str, Any], source: str, where: str) -> None:
    """Build the contract's check once, so a broken one fails on load, naming
    the line, rather than on the first answer."""
    from unwalled.audit.contract import build_check

    try:
        build_check(contract)
    except ConfigError as exc:
        raise ConfigError(f"contract: {exc.message}", file=source, key=where) from exc
