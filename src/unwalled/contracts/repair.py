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
from unwalled.contracts.verdict import AttemptVerdict, CheckResult, Verdict
from unwalled.contracts.verifier import Verifier
from unwalled.errors import UnwalledError

MAX_SCHEMA_IN_PROMPT = 4000
"""Characters of the schema shown in a repair prompt; longer ones are cut."""


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
        result = self.verifier.verify(response.text, response.tool_calls,
                                      canaries=self.canaries, tools=self.tools)
        self.verdict.attempts.append(AttemptVerdict(
            target=target, passed=result.passed, violations=result.violations,
            decoding=self._decoding(response)))
        if result.passed:
            return self._finish(True, self._action(target), response, result)
        on_fail = self.verifier.contract.on_fail
        if self.repairs < on_fail.repair:
            self.repairs += 1
            self.current = self._repair_request(response, result)
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

    def _repair_request(self, response: ChatResponse,
                        result: CheckResult) -> ChatRequest:
        """The conversation so far, the bad answer, and what was wrong with it."""
        problems = "\n".join(f"- {v.path}: {v.message}" for v in result.violations[:20])
        lines = ["Your previous answer broke these rules:", problems]
        schema = self.verifier.contract.schema
        if schema is not None:
            shown = orjson.dumps(schema).decode()[:MAX_SCHEMA_IN_PROMPT]
            lines.append("Answer again with only a JSON value valid against this "
                         f"JSON Schema, and nothing else:\n{shown}")
        else:
            lines.append("Answer again, following every rule.")
        messages = list(self.current.messages) + [
            Message("assistant", response.text or ""),
            Message("user", "\n".join(lines))]
        return self.current.replace(messages=messages)

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
