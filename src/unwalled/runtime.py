"""The engine every surface shares: config, backends, router and ledger.

The gateway, the CLI and the Python client all call ``Runtime.complete`` or
``Runtime.stream``; both record exactly one ledger row per call, whatever
happens, with every attempt behind it.
"""

from __future__ import annotations

import logging
import time
import os
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

from unwalled.backends import build_backend
from unwalled.backends.base import Backend, ChatRequest, ChatResponse, Delta, Usage
from unwalled.config import Config, load_config
from unwalled.contracts.book import ContractBook
from unwalled.errors import RoutingError, UnwalledError, as_unwalled
from unwalled.ledger import AttemptRecord, Ledger, Record
from unwalled.routing import Attempt, Router, cost
from unwalled.shield.redaction import redact_text
from unwalled.shield.session import ShieldSession

log = logging.getLogger("unwalled")


@dataclass(slots=True)
class CallInfo:
    """What the caller knows about one request, for the ledger."""

    ingress: str = "python"
    request_id: str = field(default_factory=lambda: os.urandom(16).hex())
    key_id: str | None = None
    started: float = field(default_factory=time.perf_counter)
    canary: bool = False
    """Plant a canary in the system prompt for this request (see ``shield``)."""


class Runtime:
    def __init__(self, config: Config, ledger: Ledger | None = None,
                 backends: dict[str, Backend] | None = None) -> None:
        self.config = config
        self.backends = backends or {name: build_backend(name, b)
                                     for name, b in config.backends.items()}
        self.router = Router(config, self.backends)
        self.contracts = ContractBook(config)
        """The config's named contracts, and each route's."""
        self.ledger = ledger
        self._remote: dict[int, bool] = {}
        """Per route config: does any target send data off this machine?"""
        self.listeners: list[Callable[[Record], None]] = []
        """Called with every record, e.g. to update metrics."""

    @classmethod
    def from_config(cls, path: str | None = None, *, ledger: bool = True) -> "Runtime":
        config = load_config(path)
        return cls(config, Ledger(config.ledger.url, writer=config.ledger.writer)
                   if ledger else None)

    async def complete(self, route: str, request: ChatRequest,
                       info: CallInfo | None = None) -> ChatResponse:
        info = info or CallInfo()
        attempts: list[Attempt] = []
        try:
            request = self.router.prepare(self.router.route(route), request)
            shield = self.shield(route, info)
            response = await self.router.complete(route, shield.inbound(request),
                                                  attempts)
            response = shield.outbound(response)
        except UnwalledError as exc:
            self.record_failure(route, request, info, attempts, exc, stream=False)
            raise
        except Exception as exc:
            error = as_unwalled(exc, "answering", log)
            self.record_failure(route, request, info, attempts, error, stream=False)
            raise error from exc
        except BaseException as exc:  # cancelled: the client went away first
            self.record_left(route, request, info, attempts, exc, stream=False)
            raise
        self.record_success(route, request, info, attempts, response, stream=False)
        return response

    async def stream(self, route: str, request: ChatRequest,
                     info: CallInfo | None = None) -> AsyncIterator[Delta]:
        """Stream pieces; the last piece carries usage. Recorded when it ends."""
        info = info or CallInfo()
        attempts: list[Attempt] = []
        pieces: list[Delta] = []
        try:
            request = self.router.prepare(self.router.route(route), request)
            shield = self.shield(route, info)
            async for piece in shield.stream(self.router.stream(
                    route, shield.inbound(request), attempts)):
                pieces.append(piece)
                yield piece
        except UnwalledError as exc:
            self.record_failure(route, request, info, attempts, exc, stream=True)
            raise
        except Exception as exc:
            error = as_unwalled(exc, "answering", log)
            self.record_failure(route, request, info, attempts, error, stream=True)
            raise error from exc
        except BaseException as exc:  # the client went away mid-stream
            self.record_left(route, request, info, attempts, exc, stream=True,
                             spent=self._spent_so_far(request, attempts, pieces, info))
            raise
        from unwalled.backends.base import collect

        answer = collect(pieces, attempts[-1].target if attempts else route)
        self.record_success(route, request, info, attempts, answer, stream=True)

    def _spent_so_far(self, request: ChatRequest, attempts: list[Attempt],
                      pieces: list[Delta], info: CallInfo) -> Spent | None:
        """What the pieces a client got before it left cost (estimated: the
        upstream's own count comes with its last piece)."""
        if not pieces or not attempts:
            return None
        from unwalled.backends.base import estimate_usage, output_text

        spent = Spent()
        spent.add(self.config, attempts[-1].target, estimate_usage(
            request, "".join(output_text(p) for p in pieces)),
            time.perf_counter() - info.started)
        return spent

    async def warm(self) -> None:
        """Load what the routes' targets need before the first request (the
        embedded model takes about a second to load, more on a busy machine)."""
        for route in self.config.routes.values():
            for target in route.targets:
                name, model = target.target.split("/", 1)
                warm = getattr(self.backends.get(name), "warm", None)
                if warm is not None:
                    await warm(model)

    def shield(self, route: str, info: CallInfo) -> ShieldSession:
        """The input shield for one request; redaction only if a target is remote."""
        config = self.config.routes[route]
        remote = self._remote.get(id(config))
        if remote is None:
            remote = self._remote[id(config)] = any(
                getattr(self.backends.get(t.target.split("/", 1)[0]), "remote", False)
                for t in config.targets)
        return ShieldSession(self.config.shield, remote=remote, canary=info.canary)

    # ---- the ledger ----

    def record_success(self, route: str, request: ChatRequest, info: CallInfo,
                       attempts: list[Attempt], response: ChatResponse, *,
                       stream: bool, verdict: object = None,
                       contract: str | None = None, spent: Spent | None = None
                       ) -> Record:
        """``spent``: what every answer behind this one cost (a contract's
        repairs and fallbacks); without it, this answer's own usage."""
        target = attempts[-1].target if attempts else None
        latency = (time.perf_counter() - info.started) * 1000
        if spent is None:
            spent = Spent()
            if target:
                spent.add(self.config, target, response.usage or Usage(),
                          latency / 1000)
        record = Record(
            id=info.request_id, ingress=info.ingress, route=route, status=200,
            outcome="ok", latency_ms=latency, target=target, stream=stream,
            prompt_tokens=spent.usage.prompt_tokens,
            completion_tokens=spent.usage.completion_tokens,
            usage_estimated=spent.usage.estimated, key_id=info.key_id,
            cost=spent.cost, contract=contract, verdict=verdict,
            attempts=[_attempt(a) for a in attempts],
        )
        self._store_text(record, request, response.text)
        self._write(record)
        return record

    def record_left(self, route: str, request: ChatRequest, info: CallInfo,
                    attempts: list[Attempt], exc: BaseException, *, stream: bool,
                    **extra: object) -> Record:
        """A request whose client went away before its answer was done (499)."""
        return self.record_failure(
            route, request, info, attempts,
            UnwalledError("the client went away before its answer was done "
                          f"({type(exc).__name__})"),
            stream=stream, status=CLIENT_LEFT, **extra)

    def record_failure(self, route: str | None, request: ChatRequest | None,
                       info: CallInfo, attempts: list[Attempt], error: UnwalledError,
                       *, stream: bool, status: int | None = None,
                       verdict: object = None, contract: str | None = None,
                       spent: Spent | None = None) -> Record:
        """``spent``: what the answers given before the failure cost (a
        contract's rejected answers), recorded as the request's tokens and cost."""
        if isinstance(error, RoutingError) and not attempts:
            attempts = error.attempts
        spent = spent or Spent()
        record = Record(
            id=info.request_id, ingress=info.ingress, route=route,
            status=status or error.status,
            outcome=_outcome(status or error.status),
            latency_ms=(time.perf_counter() - info.started) * 1000,
            target=attempts[-1].target if attempts else None, stream=stream,
            error=error.message[:2000], error_code=error.code, key_id=info.key_id,
            prompt_tokens=spent.usage.prompt_tokens,
            completion_tokens=spent.usage.completion_tokens,
            usage_estimated=spent.usage.estimated, cost=spent.cost,
            contract=contract, verdict=verdict,
            attempts=[_attempt(a) for a in attempts],
        )
        if request is not None:
            self._store_text(record, request, None)
        self._write(record)
        return record

    def _store_text(self, record: Record, request: ChatRequest,
                    completion: str | None) -> None:
        mode = self.config.ledger.store
        if mode == "none":
            return
        record.prompt = "\n".join(f"{m.role}: {m.content or ''}"
                                  for m in request.messages)
        record.completion = completion
        if mode == "redacted":
            record.scrub = redact_text  # by the ledger's writer, off the request path

    def _write(self, record: Record) -> None:
        # One line a request only at DEBUG: the ledger is the request log, and
        # formatting a line cost more than any other step of a proxied request.
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s route=%s target=%s status=%d outcome=%s ms=%.1f",
                      record.ingress, record.route, record.target, record.status,
                      record.outcome, record.latency_ms)
        for listener in self.listeners:
            listener(record)
        if self.ledger is not None:
            self.ledger.record(record)

    async def close(self) -> None:
        for backend in self.backends.values():
            await backend.close()
        await self.router.close()
        if self.ledger is not None:
            self.ledger.close()


@dataclass(slots=True)
class Spent:
    """Tokens and dollars a request has spent so far, over all its answers."""

    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0

    def add(self, config: Config, target: str, usage: Usage, seconds: float) -> None:
        self.usage = Usage(self.usage.prompt_tokens + usage.prompt_tokens,
                           self.usage.completion_tokens + usage.completion_tokens,
                           self.usage.estimated or usage.estimated)
        self.cost += cost(config, target, usage, seconds)


CLIENT_LEFT = 499
"""The status recorded when the client went away before its answer was done."""


def _outcome(status: int) -> str:
    if status == CLIENT_LEFT:
        return "cancelled"  # neither refused nor failed: nobody was left to answer
    return "rejected" if status < 500 else "error"


def _attempt(a: Attempt) -> AttemptRecord:
    return AttemptRecord(target=a.target, outcome=a.outcome, latency_ms=a.latency_ms,
                         error=a.error, error_code=a.code,
                         upstream_status=a.upstream_status)
