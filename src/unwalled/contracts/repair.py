"""The repair loop, written once as a state machine that does no I/O.

``RepairLoop`` decides; a driver does the asking. The machine hands out
``Ask`` steps (a request, and the targets to skip) and takes back either an
answer (``answered``) or the route's failure (``failed``), until it hands out
``Done``. ``drive`` runs it with a plain function, ``drive_async`` with a
coroutine function; neither holds any logic of its own::

    loop = RepairLoop(verifier, request, targets)
    step = loop.start()
    while isinstance(step, Ask):
        step = loop.answered(call(step), target)   # or loop.failed(error)

What it decides, per judged answer: pass, or re-ask the same target with the
violations (while that target's repairs last), or fall back to the route's next
target with the original request (when ``on_fail`` says fallback), or reject.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import orjson

from unwalled.backends.base import ChatRequest, ChatResponse, Message
from unwalled.contracts.grammar import decoding_plan
from unwalled.contracts.verdict import AttemptVerdict, CheckResult, Verdict, \
    Violation
from unwalled.contracts.verifier import Verifier
from unwalled.errors import UnwalledError

MAX_SCHEMA_IN_PROMPT = 2000
"""Characters of the schema shown in a repair prompt; longer ones are cut."""
MAX_VIOLATIONS_IN_PROMPT = 5
"""Violations listed in a repair prompt; the rest are counted."""
LONG_ENUM = 8
"""An enum longer than this is not repeated in a repair prompt when the system
prompt lists its values already."""


@dataclass(slots=True)
class Ask:
    """Send ``request`` along the route, skipping the targets in ``skip``."""

    request: ChatRequest
    skip: frozenset[str]


@dataclass(slots=True)
class Done:
    verdict: Verdict
    response: ChatResponse | None = None
    """The answer that passed (or the last one judged, when rejected)."""
    error: UnwalledError | None = None
    """Set when the route itself failed before any answer could pass."""
    result: CheckResult | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and self.verdict.passed


@dataclass
class RepairLoop:
    verifier: Verifier
    request: ChatRequest
    targets: list[str]
    """The route's targets in order, to know when fallback has run out."""
    local_targets: frozenset[str] = frozenset()
    """Targets on the in-process backend, where a schema must become a grammar."""
    canaries: tuple[str, ...] = ()
    skip: set[str] = field(default_factory=set)
    repairs: int = 0
    verdict: Verdict = field(init=False)
    current: ChatRequest = field(init=False)

    def __post_init__(self) -> None:
        contract = self.verifier.contract
        self.verdict = Verdict(contract=contract.name, passed=False, action="pending")
        self.tools = {t.name: t.parameters for t in self.request.tools or ()} or None
        self.free_because: str | None = None
        self.original = self._prepare(self.request)
        self.current = self.original

    # ---- the steps ----

    def start(self) -> Ask:
        return Ask(self.current, frozenset(self.skip))

    def answered(self, response: ChatResponse, target: str) -> Ask | Done:
        cut = response.finish_reason == "length"
        result = self.verifier.verify(response.text, response.tool_calls,
                                      canaries=self.canaries, tools=self.tools, cut=cut)
        self.verdict.attempts.append(AttemptVerdict(
            target=target, passed=result.passed, violations=result.violations,
            decoding=self._decoding(response), cut=cut))
        if result.passed:
            return self._finish(True, self._action(target), response, result)
        on_fail = self.verifier.contract.on_fail
        if self.repairs < on_fail.repair:
            self.repairs += 1
            self.current = self._repair_request(response, result, cut)
            return Ask(self.current, frozenset(self.skip))
        if on_fail.fallback:
            self.skip.add(target)
            if any(t not in self.skip for t in self.targets):
                self.repairs = 0
                self.current = self.original
                return Ask(self.current, frozenset(self.skip))
        action = "reject" if len(self.verdict.attempts) == 1 else "exhausted"
        return self._finish(False, action, response, result)

    def failed(self, error: UnwalledError) -> Done:
        """The route gave no answer at all (every remaining target failed)."""
        self.verdict.passed = False
        self.verdict.action = "error"
        self.verdict.notes.append(f"the route failed: {error.message}")
        return Done(self.verdict, error=error)

    # ---- what it builds ----

    def _prepare(self, request: ChatRequest) -> ChatRequest:
        """The request as the contract wants it: its system prompt, its decoding."""
        contract = self.verifier.contract
        changes: dict[str, Any] = {}
        if contract.system:
            changes["messages"] = with_system(request.messages, contract.system)
        schema = contract.schema
        if contract.decoding == "constrained" and schema is not None \
                and request.json_schema is None:
            use_schema, note = decoding_plan(schema, self.local_targets)
            if use_schema:
                changes["json_schema"] = schema
            else:
                self.free_because = "schema cannot become a grammar"
                self.verdict.notes.append(note)
        return request.replace(**changes) if changes else request

    def _repair_request(self, response: ChatResponse, result: CheckResult,
                        cut: bool = False) -> ChatRequest:
        """The original request, the bad answer, and a short note of what was wrong.

        Every re-ask is built on the original request, not on the previous
        re-ask: the prompt does not grow with each repair, and it starts with the
        system prompt and question the backend has just evaluated, which a local
        model takes from its prefix cache instead of reading them again.
        """
        note = repair_note(result.violations, self.verifier.contract.schema,
                           self.verifier.contract.system or "", cut=cut)
        messages = list(self.original.messages) + [
            Message("assistant", response.text or ""), Message("user", note)]
        return self.original.replace(messages=messages)

    def _finish(self, passed: bool, action: str, response: ChatResponse,
                result: CheckResult) -> Done:
        self.verdict.passed = passed
        self.verdict.action = action
        self.verdict.output = response.text
        self.verdict.parsed = result.parsed
        return Done(self.verdict, response=response, result=result)

    def _action(self, target: str) -> str:
        if len(self.verdict.attempts) == 1:
            return "pass"
        return "fallback" if target != self.verdict.attempts[0].target else "repair"

    def _decoding(self, response: ChatResponse) -> str:
        if response.constrained:
            return "constrained"
        if self.free_because:
            return f"free ({self.free_because})"
        if self.current.json_schema is not None:
            return "free (the backend does not report constraining)"
        return "free"


def with_system(messages: list[Message], system: str) -> list[Message]:
    """The contract's system prompt first, joined with the caller's own if any."""
    if messages and messages[0].role == "system":
        joined = f"{system}\n\n{messages[0].content or ''}".strip()
        return [Message("system", joined)] + list(messages[1:])
    return [Message("system", system)] + list(messages)


def repair_note(violations: list[Violation], schema: dict[str, Any] | None,
                system: str, *, cut: bool = False) -> str:
    """What a re-ask says: the first few violations, then the schema to follow,
    short (a long enum the system prompt already lists is named, not repeated).
    An answer cut off at the length limit is told so: a shorter one can pass."""
    lines = ["Your previous answer broke these rules:"]
    lines += [f"- {v.path}: {v.message}" for v in violations[:MAX_VIOLATIONS_IN_PROMPT]]
    if len(violations) > MAX_VIOLATIONS_IN_PROMPT:
        lines.append(f"- and {len(violations) - MAX_VIOLATIONS_IN_PROMPT} more")
    if cut:
        lines.append("- it was cut off at the length limit: give a shorter answer")
    if schema is None:
        lines.append("Answer again, following every rule.")
        return "\n".join(lines)
    shown = orjson.dumps(shorten_enums(schema, system)).decode()
    if len(shown) > MAX_SCHEMA_IN_PROMPT:
        shown = shown[:MAX_SCHEMA_IN_PROMPT] + " ...(cut)"
    lines.append("Answer again with only JSON valid against this JSON Schema, "
                 f"nothing else:\n{shown}")
    return "\n".join(lines)


def shorten_enums(schema: Any, system: str) -> Any:
    """The schema with each long enum whose values all appear in the system
    prompt replaced by a pointer to it, so a re-ask does not repeat them."""
    if isinstance(schema, list):
        return [shorten_enums(item, system) for item in schema]
    if not isinstance(schema, dict):
        return schema
    shortened: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "enum" and isinstance(value, list) and len(value) > LONG_ENUM \
                and all(str(v) in system for v in value):
            shortened["enum"] = f"one of the {len(value)} values listed in the " \
                                "system prompt"
        elif key in ("enum", "const", "examples", "default"):
            shortened[key] = value
        else:
            shortened[key] = shorten_enums(value, system)
    return shortened


# ---- the two drivers: the same machine, asked through sync or async calls ----

Call = Callable[[Ask], tuple[ChatResponse, str]]
AsyncCall = Callable[[Ask], Awaitable[tuple[ChatResponse, str]]]


def drive(loop: RepairLoop, call: Call) -> Done:
    """Run the loop; ``call(ask)`` returns ``(response, target)`` or raises."""
    step: Ask | Done = loop.start()
    while isinstance(step, Ask):
        try:
            response, target = call(step)
        except UnwalledError as error:
            return loop.failed(error)
        step = loop.answered(response, target)
    return step


async def drive_async(loop: RepairLoop, call: AsyncCall) -> Done:
    """As ``drive``, with ``call`` a coroutine function."""
    step: Ask | Done = loop.start()
    while isinstance(step, Ask):
        try:
            response, target = await call(step)
        except UnwalledError as error:
            return loop.failed(error)
        step = loop.answered(response, target)
    return step
