"""Completing a route under a contract, through the runtime's router and ledger.

``complete_async`` and ``complete_sync`` differ only in the driver they hand
the repair loop to; both record exactly one ledger row for the request, with
every attempt behind it, the contract's name in ``contract`` and the verdict
as JSON in ``verdict``. An answer that broke the contract shows in its
attempt row as ``violated``, with the violations as its error.

The input shield wraps every ask as it wraps a request without a contract
(spotlight, canary, redaction for remote targets), and the answer comes back
with its placeholders restored. A canary the shield planted is judged by the
contract's canary check, so a leak is a violation in the verdict (repaired,
or rejected with a 422) rather than a separate error.
"""

from __future__ import annotations

import asyncio

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

from unwalled.backends.base import ChatRequest, ChatResponse
from unwalled.contracts.repair import Ask, Done, RepairLoop, drive, drive_async
from unwalled.contracts.verdict import Verdict
from unwalled.contracts.verifier import Verifier
from unwalled.errors import ContractError, UnwalledError
from unwalled.routing import Attempt
from unwalled.runtime import CallInfo, Runtime, Spent
from unwalled.shield.session import ShieldSession

T = TypeVar("T")
Portal = Callable[[Awaitable[T]], T]
"""Runs a coroutine to its end from synchronous code (e.g. on a loop thread)."""


@dataclass(slots=True)
class Outcome:
    """An answer that passed its contract."""

    verdict: Verdict
    response: ChatResponse
    parsed: Any

    @property
    def text(self) -> str:
        return self.response.text


@dataclass(slots=True)
class Call:
    """One client request under a contract, in progress."""

    runtime: Runtime
    route: str
    request: ChatRequest
    verifier: Verifier
    info: CallInfo
    stream: bool
    attempts: list[Attempt]
    shield: ShieldSession | None = None
    loop: RepairLoop | None = None
    spent: Spent = field(default_factory=Spent)

    def shielded(self, step: Ask) -> ChatRequest:
        """The ask as it leaves: through the input shield."""
        return self.shield.inbound(step.request) if self.shield else step.request

    def answered(self, response: ChatResponse) -> tuple[ChatResponse, str]:
        """The answer with the shield's placeholders restored, and its target;
        what it cost is added to the request's spend, judged good or not."""
        attempt = self.attempts[-1]
        self.spent.add(self.runtime.config, attempt.target, response.usage,
                       attempt.latency_ms / 1000)
        if self.shield is not None:
            response = self.shield.restore(response)
        return response, attempt.target


def begin(runtime: Runtime, route: str, request: ChatRequest, verifier: Verifier,
          info: CallInfo | None = None, *, canaries: tuple[str, ...] = (),
          stream: bool = False) -> Call:
    """Check the route and limits, and set up the repair loop."""
    call = Call(runtime, route, request, verifier, info or CallInfo(), stream, [])
    try:
        config = runtime.router.route(route)
        call.request = runtime.router.prepare(config, request)
    except UnwalledError as error:
        runtime.record_failure(route, request, call.info, [], error, stream=stream,
                               contract=verifier.contract.name)
        raise
    targets = [t.target for t in config.targets]
    local = frozenset(t for t in targets if _is_local(runtime, t))
    call.shield = runtime.shield(route, call.info)
    if call.shield.canary:
        canaries = (*canaries, call.shield.canary)
    call.loop = RepairLoop(verifier, call.request, targets, local_targets=local,
                           canaries=canaries)
    return call


async def complete_async(runtime: Runtime, route: str, request: ChatRequest,
                         verifier: Verifier, info: CallInfo | None = None, *,
                         canaries: tuple[str, ...] = (), stream: bool = False
                         ) -> Outcome:
    """The route's answer under the contract. Raises ``ContractError`` on reject."""
    call = begin(runtime, route, request, verifier, info, canaries=canaries,
                 stream=stream)

    async def ask(step: Ask) -> tuple[ChatResponse, str]:
        return call.answered(await runtime.router.complete(
            route, call.shielded(step), call.attempts, step.skip))

    try:
        done = await drive_async(call.loop, ask)
    except asyncio.CancelledError as exc:  # the client went away first
        _mark_violations(call.attempts, call.loop.verdict)
        runtime.record_left(route, call.request, call.info, call.attempts, exc,
                            stream=stream, contract=verifier.contract.name,
                            verdict=call.loop.verdict.to_dict(), spent=call.spent)
        raise
    return finish(call, done)


def complete_sync(runtime: Runtime, route: str, request: ChatRequest,
                  verifier: Verifier, portal: Portal, info: CallInfo | None = None, *,
                  canaries: tuple[str, ...] = ()) -> Outcome:
    """As ``complete_async``, driven from synchronous code; each backend call runs
    through ``portal`` on the loop that owns the runtime's connections."""
    call = begin(runtime, route, request, verifier, info, canaries=canaries)

    def ask(step: Ask) -> tuple[ChatResponse, str]:
        return call.answered(portal(runtime.router.complete(
            route, call.shielded(step), call.attempts, step.skip)))

    return finish(call, drive(call.loop, ask))


def finish(call: Call, done: Done) -> Outcome:
    """Record the request in the ledger; return the outcome or raise."""
    verdict = done.verdict
    _mark_violations(call.attempts, verdict)
    record = dict(stream=call.stream, verdict=verdict.to_dict(),
                  contract=verdict.contract, spent=call.spent)
    runtime = call.runtime
    if done.error is not None:
        runtime.record_failure(call.route, call.request, call.info, call.attempts,
                               done.error, **record)
        raise done.error
    if not verdict.passed:
        error = ContractError(verdict.summary(), verdict=verdict)
        runtime.record_failure(call.route, call.request, call.info, call.attempts,
                               error, **record)
        raise error
    runtime.record_success(call.route, call.request, call.info, call.attempts,
                           done.response, **record)
    return Outcome(verdict, done.response, verdict.parsed)


def _mark_violations(attempts: list[Attempt], verdict: Verdict) -> None:
    """Answered attempts, in order, are the judged ones: mark those that failed."""
    answered = [a for a in attempts if a.outcome == "ok"]
    for attempt, judged in zip(answered, verdict.attempts):
        if not judged.passed:
            attempt.outcome = "violated"
            attempt.code = "contract_violation"
            attempt.error = "; ".join(str(v) for v in judged.violations[:5])[:2000]


def _is_local(runtime: Runtime, target: str) -> bool:
    backend = runtime.config.backends.get(target.split("/", 1)[0])
    return backend is not None and backend.type == "local"
