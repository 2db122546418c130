"""Executors: where the jobs of an audit run.

An executor takes the list of jobs and reports each result as it arrives. The
``local`` executor runs them in this process on asyncio, through a
``RuntimeCaller`` that consults the response cache, then the runtime (so every
call lands in the ledger with ingress ``audit``). Another executor only needs
to run ``work.run_job`` wherever it likes, with a ``ModelCaller`` there, and
register itself in ``EXECUTORS``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Protocol

from unwalled.audit.cache import Answer, ResponseCache, cache_key
from unwalled.audit.work import ItemResult, Job, ModelCaller, run_job
from unwalled.backends.base import ChatRequest
from unwalled.errors import ConfigError, UnwalledError
from unwalled.runtime import CallInfo, Runtime

OnResult = Callable[[ItemResult], None]


class Executor(Protocol):
    async def run(self, jobs: list[Job], on_result: OnResult) -> list[ItemResult]:
        """Every job's result, in the order of ``jobs``."""
        ...


class RuntimeCaller:
    """Answers from the cache, else from the runtime (recorded in the ledger).

    Calls to an in-process (``local``) backend go one at a time: llama.cpp runs
    them one at a time anyway, and queueing them here keeps the measured
    latency equal to compute time, which is what local models are charged for.
    """

    def __init__(self, runtime: Runtime, routes: dict[str, str],
                 cache: ResponseCache | None, concurrency: int) -> None:
        self.runtime = runtime
        self.routes = routes
        self.cache = cache
        self.calls = 0
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._concurrency = concurrency

    def _limit(self, target: str) -> asyncio.Semaphore:
        backend = target.split("/", 1)[0]
        if backend not in self._limits:
            config = self.runtime.config.backends.get(backend)
            serial = config is not None and config.type == "local"
            self._limits[backend] = asyncio.Semaphore(1 if serial else self._concurrency)
        return self._limits[backend]

    def answered_by(self, target: str) -> tuple[str, ...]:
        """The targets, in order, of the route behind a candidate's target."""
        return tuple(t.target for t in self.runtime.router.route(self.routes[target]).targets)

    async def __call__(self, target: str, request: ChatRequest) -> Answer:
        key = cache_key(target, request, self.answered_by(target))
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        route = self.routes[target]
        async with self._limit(self.runtime.router.route(route).targets[0].target):
            answer = await self._ask(route, request)
        if self.cache is not None:
            self.cache.put(key, target, answer)
        return answer

    async def _ask(self, route: str, request: ChatRequest) -> Answer:
        self.calls += 1
        started = time.perf_counter()
        try:
            response = await self.runtime.complete(route, request,
                                                   CallInfo(ingress="audit"))
        except UnwalledError as exc:
            return Answer(text="", error=exc.message,
                          latency_ms=(time.perf_counter() - started) * 1000)
        return Answer(text=response.text, prompt_tokens=response.usage.prompt_tokens,
                      completion_tokens=response.usage.completion_tokens,
                      latency_ms=(time.perf_counter() - started) * 1000)


def checked_concurrency(concurrency: int) -> int:
    if concurrency < 1:
        raise ConfigError("concurrency must be at least 1.", key="--concurrency",
                          fix="give a whole number of 1 or more.")
    return concurrency


class LocalExecutor:
    """Runs jobs concurrently on this process's event loop."""

    def __init__(self, caller: ModelCaller, concurrency: int = 4) -> None:
        self.caller = caller
        self.concurrency = checked_concurrency(concurrency)

    async def run(self, jobs: list[Job], on_result: OnResult) -> list[ItemResult]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(job: Job) -> ItemResult:
            async with gate:
                result = await run_job(job, self.caller)
            on_result(result)
            return result

        return list(await asyncio.gather(*(one(job) for job in jobs)))


ExecutorFactory = Callable[[ModelCaller, int], Executor]


def _ray_executor(caller: ModelCaller, concurrency: int = 4) -> Executor:
    """Imported on use: Ray is an optional extra (``unwalled[ray]``)."""
    from unwalled.audit.ray_executor import RayExecutor

    return RayExecutor(caller, concurrency)


EXECUTORS: dict[str, ExecutorFactory] = {"local": LocalExecutor, "ray": _ray_executor}


def executor_factory(name: str) -> ExecutorFactory:
    """The executor registered under ``name``; an error lists the known ones."""
    try:
        return EXECUTORS[name]
    except KeyError:
        raise ConfigError(f"unknown executor {name!r}.", key="--executor",
                          fix=f"use one of: {', '.join(sorted(EXECUTORS))}.") from None
