"""Drawing samples: each probe sent through a route as many times as it asks.

Every sample is an ordinary request through the runtime, so it is routed,
retried and recorded in the ledger like any other (ingress ``drift``). Sampled
probes get a fresh random seed each, because a backend that is given no seed
may repeat its seed sequence from one process to the next, which would make two
samples look alike for no reason of the model's.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from unwalled.backends.base import ChatResponse
from unwalled.drift.probes import Probe, ProbeSet
from unwalled.drift.verdicts import judge
from unwalled.errors import DriftError, UnwalledError
from unwalled.runtime import CallInfo, Runtime


@dataclass(slots=True)
class Sample:
    """One answer to one probe, with what drift tests look at."""

    probe: str
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    target: str | None = None
    passed: bool | None = None
    """The contract's verdict; None when the probe has no contract."""
    violations: list[str] = field(default_factory=list)
    logprobs: list[float] | None = None

    @property
    def chars(self) -> int:
        return len(self.text)

    @property
    def mean_logprob(self) -> float | None:
        if not self.logprobs:
            return None
        return sum(self.logprobs) / len(self.logprobs)


def to_sample(probe: Probe, response: ChatResponse) -> Sample:
    sample = Sample(probe=probe.id, text=response.text,
                    prompt_tokens=response.usage.prompt_tokens,
                    completion_tokens=response.usage.completion_tokens,
                    finish_reason=response.finish_reason, target=response.model,
                    logprobs=response.logprobs)
    if probe.contract is not None:
        verdict = judge(response.text, probe.contract)
        sample.passed, sample.violations = verdict.passed, verdict.violations
    return sample


async def draw_samples(runtime: Runtime, route: str, probes: ProbeSet, *,
                       seed: int | None = None, concurrency: int = 4,
                       ingress: str = "drift") -> list[Sample]:
    """Every probe's samples, in probe order. Any failed request stops the draw:
    a sample with holes in it would bias the tests."""
    runtime.router.route(route)  # an unknown route fails here, with its own message
    seeds = random.Random(seed)
    jobs = [(probe, seeds.randrange(2**31)) for probe in probes
            for _ in range(probe.samples)]
    limit = asyncio.Semaphore(concurrency)

    async def one(probe: Probe, sample_seed: int) -> Sample:
        async with limit:
            response = await runtime.complete(route, probe.request(sample_seed),
                                              CallInfo(ingress=ingress))
        return to_sample(probe, response)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(probe, s)) for probe, s in jobs]
    except* UnwalledError as failures:
        first = failures.exceptions[0]
        raise DriftError(
            f"could not draw samples from route {route!r}: {first.message} "
            "Fix the route (or the probe set) and run again.") from first
    return [task.result() for task in tasks]
