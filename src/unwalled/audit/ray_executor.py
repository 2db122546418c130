"""The ``ray`` executor: an audit's model calls run on a Ray cluster.

The driver (the process that runs ``unwalled audit``) keeps everything that
must be decided in one place: it builds each request, answers from the
response cache where it can, grades every answer, stores new answers in the
cache and writes every ledger record. Only the calls themselves travel.

Each worker is a Ray actor that builds its own ``Runtime`` from the audit's
config, without a ledger: an embedded model cannot be shipped, so a worker
loads the GGUF from its own install, once, and keeps it for the whole audit.
It sends back each answer together with the ledger records its runtime made,
and the driver writes them, so the ledger keeps one writer.

All calls to one backend go to one worker, in job order. That keeps the
order in which a backend sees its requests the same as in-process (a scripted
mock answers by position), loads each local model on one worker only, and
keeps prompts that share a prefix together. Work spreads over the workers
backend by backend (at most one worker per CPU of the cluster, each taking
one or more backends); within a backend, calls run ``concurrency`` at a time
(one at a time for an in-process model, as in-process).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from unwalled.audit.cache import Answer, cache_key
from unwalled.audit.executor import OnResult, RuntimeCaller, checked_concurrency
from unwalled.audit.work import ItemResult, Job, grade, request_for
from unwalled.backends.base import ChatRequest
from unwalled.config import Config
from unwalled.errors import ConfigError, UnwalledError
from unwalled.ledger import Record
from unwalled.runtime import CallInfo, Runtime

try:
    import ray
except ImportError:  # the optional extra is not installed
    ray = None

INSTALL_HINT = "pip install 'unwalled[ray]'"


@dataclass(frozen=True, slots=True)
class Call:
    """One model call a worker makes: which job it answers, through which route."""

    position: int
    route: str
    request: ChatRequest


@dataclass(frozen=True, slots=True)
class Reply:
    position: int
    answer: Answer
    records: tuple[Record, ...]
    """What the worker's runtime would have written to the ledger for this call."""


class AuditWorker:
    """Runs calls on a runtime of its own; the driver writes the ledger."""

    def __init__(self, config: Config, concurrency: int) -> None:
        self.runtime = Runtime(config, ledger=None)
        self.concurrency = concurrency

    async def run(self, calls: list[Call]) -> list[Reply]:
        gate = asyncio.Semaphore(1 if self._serial(calls) else self.concurrency)

        async def one(call: Call) -> Reply:
            async with gate:
                return await self._ask(call)

        return list(await asyncio.gather(*(one(call) for call in calls)))

    def _serial(self, calls: list[Call]) -> bool:
        """An in-process model answers one call at a time; queue them here."""
        for call in calls:
            target = self.runtime.router.route(call.route).targets[0].target
            backend = self.runtime.config.backends.get(target.split("/", 1)[0])
            if backend is not None and backend.type == "local":
                return True
        return False

    async def _ask(self, call: Call) -> Reply:
        records: list[Record] = []
        started = time.perf_counter()
        # The runtime reports every record to its listeners; this call's are
        # the ones made while it runs (one per call, whatever happens).
        info = CallInfo(ingress="audit")
        keep = _RecordsOf(info.request_id, records)
        self.runtime.listeners.append(keep)
        try:
            response = await self.runtime.complete(call.route, call.request, info)
            answer = Answer(text=response.text,
                            prompt_tokens=response.usage.prompt_tokens,
                            completion_tokens=response.usage.completion_tokens,
                            latency_ms=(time.perf_counter() - started) * 1000)
        except UnwalledError as exc:
            answer = Answer(text="", error=exc.message,
                            latency_ms=(time.perf_counter() - started) * 1000)
        finally:
            self.runtime.listeners.remove(keep)
        return Reply(call.position, answer, tuple(records))

    async def close(self) -> None:
        await self.runtime.close()


class _RecordsOf:
    """A runtime listener that keeps the records of one request id."""

    def __init__(self, request_id: str, into: list[Record]) -> None:
        self.request_id = request_id
        self.into = into

    def __call__(self, record: Record) -> None:
        if record.id == self.request_id:
            self.into.append(record)


class RayExecutor:
    """Ships the calls the cache cannot answer to Ray workers, one per backend."""

    def __init__(self, caller: RuntimeCaller, concurrency: int = 4) -> None:
        if ray is None:
            raise ConfigError(
                "the ray executor needs Ray, which is not installed.",
                key="--executor", fix=f"run `{INSTALL_HINT}`, or use --executor local.")
        self.caller = caller
        self.concurrency = checked_concurrency(concurrency)

    async def run(self, jobs: list[Job], on_result: OnResult) -> list[ItemResult]:
        results: list[ItemResult | None] = [None] * len(jobs)
        keys: dict[int, str] = {}
        shards: dict[str, list[Call]] = {}
        for position, job in enumerate(jobs):
            target = job.candidate.target or ""
            request = request_for(job)
            keys[position] = cache_key(target, request, self.caller.answered_by(target))
            cached = self._cached(keys[position])
            if cached is not None:
                results[position] = self._finish(job, cached, on_result)
                continue
            call = Call(position, self.caller.routes[target], request)
            shards.setdefault(self._backend(call.route), []).append(call)

        for reply in await self._on_workers(list(shards.values())):
            job = jobs[reply.position]
            self._keep(job, keys[reply.position], reply)
            results[reply.position] = self._finish(job, reply.answer, on_result)
        return [result for result in results if result is not None]

    def _cached(self, key: str) -> Answer | None:
        cache = self.caller.cache
        return cache.get(key) if cache is not None else None

    def _backend(self, route: str) -> str:
        target = self.caller.runtime.router.route(route).targets[0].target
        return target.split("/", 1)[0]

    def _keep(self, job: Job, key: str, reply: Reply) -> None:
        """Write the worker's ledger records here, and cache the answer."""
        self.caller.calls += 1
        for record in reply.records:
            self.caller.runtime._write(record)  # listeners and ledger, as in-process
        if self.caller.cache is not None:
            self.caller.cache.put(key, job.candidate.target or "", reply.answer)

    def _finish(self, job: Job, answer: Answer, on_result: OnResult) -> ItemResult:
        result = grade(job, answer)
        on_result(result)
        return result

    async def _on_workers(self, shards: list[list[Call]]) -> list[Reply]:
        if not shards:
            return []
        _connect()
        worker_class = ray.remote(num_cpus=1)(AuditWorker)
        config = self.caller.runtime.config
        # A worker holds its CPU until the audit ends, so more workers than the
        # cluster has CPUs would wait for ever: share them out instead.
        count = min(len(shards), max(1, int(ray.cluster_resources().get("CPU", 1))))
        workers = [worker_class.remote(config, self.concurrency) for _ in range(count)]
        try:
            batches = [workers[i % count].run.remote(calls)
                       for i, calls in enumerate(shards)]
            replies: list[Reply] = []
            for batch in await asyncio.gather(*batches):
                replies.extend(batch)
            await asyncio.gather(*(worker.close.remote() for worker in workers))
        except ray.exceptions.RayError as exc:
            raise UnwalledError(f"the audit's Ray workers failed: {exc}") from exc
        finally:
            for worker in workers:
                ray.kill(worker)
        return sorted(replies, key=lambda reply: reply.position)


def _connect() -> None:
    """Join the cluster ``RAY_ADDRESS`` names, or start a local one, once."""
    if not ray.is_initialized():
        ray.init(include_dashboard=False, logging_level="WARNING")
