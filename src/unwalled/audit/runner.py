"""Run a suite: load and sample the data, fit baselines, run every job, collect.

Each model candidate's target gets a route of its own (``audit:TARGET``, no
fallback), so an answer always comes from the model being audited and the
ledger says which audit target it was. A candidate whose ``target`` names an
existing route uses that route as it is, fallbacks included.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable

from unwalled.audit.baselines import FittedBaseline, fit_baseline, predict_baseline
from unwalled.audit.cache import ResponseCache
from unwalled.audit.executor import Executor, LocalExecutor, OnResult, RuntimeCaller
from unwalled.audit.prompting import choose_shots
from unwalled.audit.suite import Candidate, Dataset, Suite, load_dataset
from unwalled.audit.work import ItemResult, Job, grade, ready
from unwalled.config import RouteConfig, TargetConfig, finish
from unwalled.errors import ConfigError
from unwalled.runtime import Runtime

ROUTE_PREFIX = "audit:"


@dataclass(slots=True)
class AuditRun:
    """Everything an audit produced, before it is summarised."""

    suite: Suite
    dataset: Dataset
    results: dict[str, list[ItemResult]]
    """Per candidate name, one result per item, in item order."""
    train_seconds: dict[str, float] = field(default_factory=dict)
    model_calls: int = 0
    cache_hits: int = 0
    seconds: float = 0.0


def audit_routes(runtime: Runtime, suite: Suite) -> dict[str, str]:
    """The route each model target is called through, added where needed."""
    routes: dict[str, str] = {}
    for candidate in suite.candidates:
        target = candidate.target
        if target is None or target in routes:
            continue
        if target in runtime.config.routes:
            routes[target] = target
            continue
        if "/" not in target:
            raise ConfigError(
                f"candidate {candidate.name!r}: {target!r} is neither a route nor "
                "'backend/model'.", key=f"candidates.{candidate.name}.target",
                fix=f"name a route ({', '.join(sorted(runtime.config.routes))}) or "
                    "a target such as 'local/smollm2-135m'.")
        name = ROUTE_PREFIX + target
        runtime.router.add_route(name, RouteConfig(
            targets=[TargetConfig(target=target)], retries=1,
            description=f"audit of {target}"))
        routes[target] = name
    finish(runtime.config)  # checks every new target names a defined backend/model
    return routes


def plan_jobs(suite: Suite, dataset: Dataset) -> list[Job]:
    """One job per model candidate and item, grouped by candidate.

    Grouping keeps each candidate's prompts adjacent, so a local model reuses
    the prompt prefix (instructions and examples) it has just evaluated.
    """
    labels = tuple(dataset.labels) if dataset.labels is not None else None
    jobs = []
    for candidate in suite.candidates:
        if candidate.baseline:
            continue
        shots = tuple(choose_shots(suite, candidate, dataset.train))
        jobs.extend(Job(suite, candidate, item, shots, labels)
                    for item in dataset.items)
    return jobs


async def run_audit(suite: Suite, runtime: Runtime, *, cache: ResponseCache | None,
                    concurrency: int = 4,
                    executor: Callable[[RuntimeCaller, int], Executor] = LocalExecutor,
                    on_result: OnResult = lambda result: None,
                    dataset: Dataset | None = None) -> AuditRun:
    started = time.perf_counter()
    ready(suite)  # a bad scorer or contract stops the audit before any model call
    dataset = dataset or load_dataset(suite)
    caller = RuntimeCaller(runtime, audit_routes(runtime, suite), cache, concurrency)
    hits_before = cache.hits if cache else 0

    results: dict[str, list[ItemResult]] = {c.name: [] for c in suite.candidates}
    train_seconds: dict[str, float] = {}
    for candidate in suite.candidates:
        if candidate.baseline:
            fitted = await asyncio.to_thread(fit_baseline, suite, candidate,
                                             dataset.train)
            train_seconds[candidate.name] = fitted.train_seconds
            results[candidate.name] = run_baseline(suite, candidate, fitted, dataset,
                                                   on_result)

    jobs = plan_jobs(suite, dataset)
    for result in await executor(caller, concurrency).run(jobs, on_result):
        results[result.candidate].append(result)

    return AuditRun(suite=suite, dataset=dataset, results=results,
                    train_seconds=train_seconds, model_calls=caller.calls,
                    cache_hits=(cache.hits - hits_before) if cache else 0,
                    seconds=time.perf_counter() - started)


def run_baseline(suite: Suite, candidate: Candidate, fitted: FittedBaseline,
                 dataset: Dataset, on_result: OnResult) -> list[ItemResult]:
    labels = tuple(dataset.labels) if dataset.labels is not None else None
    results = []
    for item in dataset.items:
        answer = predict_baseline(suite, fitted, item)
        result = grade(Job(suite, candidate, item, (), labels), answer)
        on_result(result)
        results.append(result)
    return results
