"""Routes: ordered targets, retries with backoff, fallback, circuit breaking.

For each target in order: skip it if its circuit is open; try it up to
``1 + retries`` times, waiting between tries (exponential backoff, or the
upstream's Retry-After when it gives one); on an error where a retry cannot
help, stop; when the target is used up, fall back to the next one. Every try is
an ``Attempt``, kept for the ledger.

A stream can fall back only until its first piece has gone to the client.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

from unwalled.backends.base import Backend, ChatRequest, ChatResponse, Delta
from unwalled.config import Config, RouteConfig, TargetConfig
from unwalled.errors import (
    BackendError, BackendProtocolError, BackendTimeout, EgressError, LimitExceededError,
    RequestError, RoutingError, UnknownRouteError,
)
from unwalled.routing.breaker import Breaker, breaker_for, build_breakers
from unwalled.shield.redaction import redact_text


@dataclass(slots=True)
class Attempt:
    """One try of one target."""

    target: str
    outcome: str  # "ok", "error", "circuit_open"
    latency_ms: float = 0.0
    error: str | None = None
    code: str | None = None
    upstream_status: int | None = None


Sleep = Callable[[float], Awaitable[None]]


class Router:
    def __init__(self, config: Config, backends: dict[str, Backend],
                 sleep: Sleep = asyncio.sleep) -> None:
        self.config = config
        self.backends = backends
        self.sleep = sleep
        self.breakers, self._shared_state = build_breakers(config)

    async def close(self) -> None:
        if self._shared_state is not None:
            await self._shared_state.aclose()

    def add_route(self, name: str, route: RouteConfig) -> None:
        """Add a route at run time (audits give each audited target its own)."""
        self.config.routes[name] = route
        self.breakers[name] = breaker_for(name, route, self._shared_state)

    def route(self, name: str) -> RouteConfig:
        try:
            return self.config.routes[name]
        except KeyError:
            raise UnknownRouteError(
                f"no route named {name!r}. Known routes: "
                f"{', '.join(sorted(self.config.routes))}. Use one of those, or add it "
                "under 'routes:' in unwalled.yaml.", param="model") from None

    def prepare(self, route: RouteConfig, request: ChatRequest) -> ChatRequest:
        """Apply the route's max_tokens ceiling (and default)."""
        if request.max_tokens is not None and request.max_tokens < 1:
            raise RequestError(f"max_tokens is {request.max_tokens}; ask for at "
                               "least 1, or leave it out.", param="max_tokens")
        ceiling = route.max_tokens
        if ceiling is None:
            return request
        if request.max_tokens is None:
            return request.replace(max_tokens=ceiling)
        if request.max_tokens > ceiling:
            raise LimitExceededError(
                f"max_tokens {request.max_tokens} is above this route's ceiling of "
                f"{ceiling}. Ask for {ceiling} or fewer.", param="max_tokens")
        return request

    def _backend(self, target: str) -> tuple[Backend, str]:
        backend_name, model = target.split("/", 1)
        return self.backends[backend_name], model

    def _check_egress(self, target: str, backend: Backend,
                      attempts: list[Attempt]) -> None:
        """With ``egress: local-only``, refuse at run time too: a backend can be
        handed to the runtime in code, past the check made at config load."""
        if self.config.egress != "local-only" or not getattr(backend, "remote", False):
            return
        message = (f"target {target} sends data off this machine and egress is "
                   "local-only, so the request was refused before it left. Route to "
                   "a local target, or set 'egress: any'.")
        attempts.append(Attempt(target, "refused", error=message, code="egress_refused"))
        raise EgressError(message, param="model")

    async def _tries(self, route_name: str, skip: frozenset[str],
                     attempts: list[Attempt]) -> AsyncIterator["Try"]:
        """Each try in order. The caller marks a try failed with ``Try.fail``;
        one it does not mark has succeeded, and the caller stops iterating."""
        route = self.route(route_name)
        breaker = self.breakers[route_name]
        last: BackendError | None = None
        for target in route.targets:
            if target.target in skip:
                continue
            backend, model = self._backend(target.target)
            self._check_egress(target.target, backend, attempts)
            timeout = target.timeout or route.timeout
            tries = 1 + (route.retries if target.retries is None else target.retries)
            for attempt_no in range(tries):
                if not await breaker.allow(target.target):
                    attempts.append(Attempt(target.target, "circuit_open",
                                            error="circuit open: target skipped"))
                    break
                attempt = Attempt(target.target, "ok")
                attempts.append(attempt)
                current = Try(attempt, backend, model, timeout, breaker)
                yield current
                if current.error is None:
                    return
                last = current.error
                if not last.retryable:
                    raise _exhausted(route_name, attempts, last)
                wait = _wait(route, attempt_no, last)
                if wait is None or attempt_no + 1 == tries:
                    break
                await self.sleep(wait)
        raise _exhausted(route_name, attempts, last)

    async def complete(self, route_name: str, request: ChatRequest,
                       attempts: list[Attempt],
                       skip: frozenset[str] = frozenset()) -> ChatResponse:
        """The first good answer along the route; ``attempts`` gets every try."""
        async for current in self._tries(route_name, skip, attempts):
            try:
                async with asyncio.timeout(current.timeout):
                    response = await current.backend.complete(request, current.model)
            except TRY_FAILED as exc:
                await current.fail(exc)
                continue
            except asyncio.CancelledError:
                await current.abandon()
                raise
            await current.succeed()
            return response
        raise AssertionError("unreachable: _tries raises when it runs out")

    async def stream(self, route_name: str, request: ChatRequest,
                     attempts: list[Attempt],
                     skip: frozenset[str] = frozenset()) -> AsyncIterator[Delta]:
        """Stream from the first target that produces a first piece."""
        async for current in self._tries(route_name, skip, attempts):
            pieces = current.backend.stream(request, current.model).__aiter__()
            try:
                async with asyncio.timeout(current.timeout):
                    first = await pieces.__anext__()
            except StopAsyncIteration:
                first = Delta(finish_reason="stop")
            except TRY_FAILED as exc:
                await _aclose(pieces)
                await current.fail(exc)
                continue
            except (asyncio.CancelledError, GeneratorExit):
                await _aclose(pieces)
                await current.abandon()
                raise
            # Committed to this target: the client is about to see its answer.
            try:
                yield first
                while True:
                    try:
                        async with asyncio.timeout(current.timeout):
                            piece = await pieces.__anext__()
                    except StopAsyncIteration:
                        break
                    yield piece
            except TRY_FAILED as exc:
                error = await current.fail(exc)
                raise RoutingError(
                    f"route {route_name!r}: the stream from {current.attempt.target} "
                    f"broke off: {error.message}", attempts=attempts, last=error) from None
            except (asyncio.CancelledError, GeneratorExit):
                await current.abandon()  # the client left mid-stream
                raise
            finally:
                await _aclose(pieces)
            await current.succeed()
            return


class Try:
    """One try in progress: where to send it, and how it ended."""

    def __init__(self, attempt: Attempt, backend: Backend, model: str, timeout: float,
                 breaker: Breaker) -> None:
        self.attempt = attempt
        self.backend = backend
        self.model = model
        self.timeout = timeout
        self.breaker = breaker
        self.error: BackendError | None = None
        self.started = time.perf_counter()

    async def succeed(self) -> None:
        self.attempt.latency_ms = (time.perf_counter() - self.started) * 1000
        await self.breaker.success(self.attempt.target)

    async def abandon(self) -> None:
        """The caller went away during this try: neither the target's success
        nor its failure, and a half-open trial it was is over."""
        attempt = self.attempt
        attempt.outcome, attempt.code = "cancelled", "client_closed_request"
        attempt.error = "the caller went away before this try was done"
        attempt.latency_ms = (time.perf_counter() - self.started) * 1000
        await self.breaker.release(attempt.target)

    async def fail(self, exc: BaseException) -> BackendError:
        error = _as_backend_error(exc, self.attempt.target, self.timeout)
        self.error = error
        attempt = self.attempt
        attempt.outcome, attempt.error, attempt.code = "error", error.message, error.code
        attempt.upstream_status = error.upstream_status
        attempt.latency_ms = (time.perf_counter() - self.started) * 1000
        if error.retryable:
            await self.breaker.failure(attempt.target)
        else:
            await self.breaker.release(attempt.target)
        return error


UNFIT = (KeyError, IndexError, TypeError, ValueError, AttributeError)
"""What reading an upstream answer of the wrong shape raises (a list where the
wire format has an object, a string for a count): a protocol error of that
target, retried and recorded like malformed JSON, not a 500 with no record."""
TRY_FAILED = (BackendError, TimeoutError, *UNFIT)


def _as_backend_error(exc: BaseException, target: str, timeout: float) -> BackendError:
    error = _mapped(exc, target, timeout)
    # What an upstream says about its failure (an error body, a stream's error
    # event, an excerpt of malformed JSON) may echo a key or a prompt: it goes
    # to the client and the ledger only with secrets and personal data replaced.
    # Addresses stay: "cannot reach 10.0.0.7:8000" is about the config, not a person.
    error.message = redact_text(error.message, keep=frozenset({"IP"}))
    error.args = (error.message,)
    return error


def _mapped(exc: BaseException, target: str, timeout: float) -> BackendError:
    if isinstance(exc, BackendError):
        exc.target = exc.target or target
        return exc
    if isinstance(exc, UNFIT):
        return BackendProtocolError(
            f"{target} answered in a shape its wire format does not have "
            f"({type(exc).__name__}: {str(exc)[:200]}).", target=target, retryable=True)
    return BackendTimeout(f"{target} gave no answer within {timeout:g} s "
                          "(the route's timeout).", target=target)


def _wait(route: RouteConfig, attempt_no: int, error: BackendError) -> float | None:
    """Seconds before the next try, or None to move on to the next target now."""
    if error.retry_after is not None:
        if error.retry_after > route.backoff.max_retry_after:
            return None
        return error.retry_after
    backoff = route.backoff
    delay = min(backoff.max, backoff.initial * backoff.multiplier ** attempt_no)
    return delay * (0.5 + random.random() / 2)


def _exhausted(route: str, attempts: list[Attempt],
               last: BackendError | None) -> RoutingError:
    tried = "; ".join(f"{a.target}: {a.error}" for a in attempts if a.outcome != "ok")
    fix = "" if last is None or not last.retryable else \
        " Check that the upstream is running, or add a fallback target to the route."
    return RoutingError(f"route {route!r} failed on every target ({tried}).{fix}",
                        attempts=attempts, last=last)


async def _aclose(pieces: AsyncIterator[Delta]) -> None:
    close = getattr(pieces, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # closing a broken stream must not mask its error
            pass
