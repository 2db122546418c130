"""Snapshot a route, then check fresh samples against the snapshot.

A check is a two-stage test:

1. **Is there drift?** A small family of route-wide tests (MMD on completions,
   the spread of completions, flips of deterministic probes, contract pass
   rate, answer length, completion tokens, mean log-probability when the
   backend gives it), each pooling every probe, corrected with Holm's method.
   Drift is declared when any adjusted p-value is below ``alpha``; the chance
   of a false alarm on an unchanged route stays at or below ``alpha``.
2. **Which probes moved?** Only after drift is declared: the same tests per
   probe, corrected with Benjamini-Hochberg, name the probes that moved.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from unwalled.drift import stats
from unwalled.drift.probes import Probe, ProbeSet
from unwalled.drift.sampling import Sample, draw_samples
from unwalled.drift.store import Snapshot
from unwalled.errors import DriftError
from unwalled.runtime import Runtime


@dataclass(slots=True)
class TestResult:
    name: str
    p_value: float
    statistic: float = 0.0
    detail: str = ""
    adjusted: float = math.nan


@dataclass(slots=True)
class ProbeResult:
    probe: str
    tests: list[TestResult]
    moved: bool = False
    changes: list[str] = field(default_factory=list)
    """What moved, in words, from the tests that rejected."""


@dataclass(slots=True)
class DriftReport:
    route: str
    alpha: float
    drifted: bool
    p_value: float
    """The smallest Holm-adjusted p-value of the route-wide tests."""
    tests: list[TestResult]
    probes: list[ProbeResult]
    reference_samples: int
    fresh_samples: int
    snapshot_id: str | None = None
    snapshot_ts: float | None = None
    ts: float = field(default_factory=time.time)
    seconds: float = 0.0

    @property
    def moved(self) -> list[ProbeResult]:
        return [probe for probe in self.probes if probe.moved]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class CheckOptions:
    alpha: float = 0.05
    permutations: int = 1000
    kernel: stats.Unit = "word"
    seed: int | None = None
    """Seeds permutations and sample seeds, for a rerun that repeats itself."""
    localise: bool = True
    """Run the per-probe tests that name the probes that moved."""


# ---- the two commands ----

async def take_snapshot(runtime: Runtime, route: str, probes: ProbeSet, *,
                        seed: int | None = None) -> Snapshot:
    """Draw every probe's samples from the route: the reference behaviour."""
    runtime.router.route(route)  # an unknown route stops it before any sampling
    samples = await draw_samples(runtime, route, probes, seed=seed)
    return Snapshot(route=route, probes=probes, samples=samples)


async def run_check(runtime: Runtime, snapshot: Snapshot,
                    options: CheckOptions | None = None) -> DriftReport:
    """Draw as many fresh samples as the snapshot holds and compare them."""
    options = options or CheckOptions()
    started = time.perf_counter()
    fresh = await draw_samples(runtime, snapshot.route, snapshot.probes,
                               seed=options.seed)
    # The permutations take a moment of CPU: keep them off the event loop.
    report = await asyncio.to_thread(compare, snapshot.probes, snapshot.samples, fresh,
                                     options, snapshot.route)
    report.snapshot_id, report.snapshot_ts = snapshot.id, snapshot.ts
    report.seconds = time.perf_counter() - started
    return report


# ---- the comparison ----

@dataclass(slots=True)
class _ProbeSides:
    """One probe's samples on both sides, and its share of the MMD test."""

    probe: Probe
    reference: list[Sample] = field(default_factory=list)
    fresh: list[Sample] = field(default_factory=list)
    mmd: TestResult | None = None
    spread: TestResult | None = None


def compare(probes: ProbeSet, reference: Sequence[Sample], fresh: Sequence[Sample],
            options: CheckOptions | None = None, route: str = "-") -> DriftReport:
    """Test whether ``fresh`` comes from the same behaviour as ``reference``."""
    options = options or CheckOptions()
    rng = np.random.default_rng(options.seed)
    sides = _by_probe(probes, reference, fresh)

    blocks = [stats.Block(stats.text_gram([s.text for s in side.reference + side.fresh],
                                          options.kernel), len(side.reference))
              for side in sides]
    null_flip_rate = _null_flip_rate(sides)
    route_tests = [_mmd(sides, blocks, options, rng), _spread(sides, options, rng),
                   *_family(sides, null_flip_rate, options, rng)]
    _adjust(route_tests, stats.holm)
    drifted = any(test.adjusted < options.alpha for test in route_tests)

    probe_results = [ProbeResult(side.probe.id,
                                 _probe_tests(side, null_flip_rate, options, rng))
                     for side in sides] if options.localise else []
    _name_moved(probe_results, options.alpha, drifted)
    return DriftReport(route=route, alpha=options.alpha, drifted=drifted,
                       p_value=min(test.adjusted for test in route_tests),
                       tests=route_tests, probes=probe_results,
                       reference_samples=len(reference), fresh_samples=len(fresh))


def _by_probe(probes: ProbeSet, reference: Sequence[Sample],
              fresh: Sequence[Sample]) -> list[_ProbeSides]:
    sides = {probe.id: _ProbeSides(probe) for probe in probes}
    for samples, side in ((reference, "reference"), (fresh, "fresh")):
        for sample in samples:
            if sample.probe not in sides:
                raise DriftError(f"a sample answers probe {sample.probe!r}, which the "
                                 "probe set does not have. Take a new snapshot.")
            getattr(sides[sample.probe], side).append(sample)
    empty = [pid for pid, side in sides.items() if not side.reference or not side.fresh]
    if empty:
        raise DriftError(f"probes without samples on one side: {', '.join(empty)}. "
                         "Take a new snapshot with this probe set.")
    return list(sides.values())


def _mmd(sides: list[_ProbeSides], blocks: list[stats.Block], options: CheckOptions,
         rng: np.random.Generator) -> TestResult:
    """The route-wide MMD test; each probe keeps its own block's result."""
    result = stats.mmd_test(blocks, options.permutations, rng)
    for side, block, (value, p) in zip(sides, blocks, result.per_block):
        if block.testable:
            side.mmd = TestResult("mmd", p, value, f"answers differ (MMD² {value:.3f})")
    return TestResult("mmd", result.p_value, result.statistic,
                      f"MMD² {result.statistic:.3f} summed over {len(sides)} probes "
                      f"({options.kernel} Hamming kernel)")


def _spread(sides: list[_ProbeSides], options: CheckOptions,
            rng: np.random.Generator) -> TestResult:
    """The route-wide spread test; each probe keeps its own block's result."""
    blocks = [stats.Block(stats.word_set_gram([s.text for s in side.reference
                                               + side.fresh]), len(side.reference))
              for side in sides]
    result = stats.spread_test(blocks, options.permutations, rng)
    for side, (gap, p) in zip(sides, result.per_block):
        enough = len(side.reference) >= 2 and len(side.fresh) >= 2
        if enough and not side.probe.deterministic:
            side.spread = TestResult("spread", p, gap, _spread_words(gap))
    return TestResult("spread", result.p_value, result.statistic,
                      f"{_spread_words(result.statistic)} (summed over {len(sides)} "
                      "probes, Jaccard similarity of word sets)")


def _spread_words(gap: float) -> str:
    trend = "vary more" if gap > 0 else "vary less"
    return f"answers {trend} than the snapshot's (similarity gap {gap:+.3f})"


def _null_flip_rate(sides: list[_ProbeSides]) -> float:
    flips = [_flips(side) for side in sides if side.probe.deterministic]
    return stats.flip_rate_under_null(flips)


def _flips(side: _ProbeSides) -> stats.Flips:
    return stats.count_flips([s.text for s in side.reference],
                             [s.text for s in side.fresh])


def _family(sides: list[_ProbeSides], null_flip_rate: float, options: CheckOptions,
            rng: np.random.Generator) -> list[TestResult]:
    """Flip, pass-rate and number tests, pooling the samples of ``sides``."""
    tests: list[TestResult] = []
    deterministic = [side for side in sides if side.probe.deterministic]
    if deterministic:
        tests.append(_flip_test(deterministic, null_flip_rate))
    judged = [side for side in sides if side.probe.contract is not None]
    if judged:
        tests.append(_pass_rate(judged))
    reference = [s for side in sides for s in side.reference]
    fresh = [s for side in sides for s in side.fresh]
    tests.append(_numbers("length", stats.length_test, "chars",
                          [s.chars for s in reference], [s.chars for s in fresh]))
    tests.append(_numbers("tokens", stats.location_test, "completion tokens",
                          [s.completion_tokens for s in reference],
                          [s.completion_tokens for s in fresh]))
    if all(s.mean_logprob is not None for s in reference + fresh):
        tests.append(_logprob(sides, options, rng))
    return tests


def _logprob(sides: list[_ProbeSides], options: CheckOptions,
             rng: np.random.Generator) -> TestResult:
    """Mean log-probability per answer, compared within each probe: answers to
    different prompts differ in likelihood far more than a change moves them."""
    groups = [([s.mean_logprob or 0.0 for s in side.reference],
               [s.mean_logprob or 0.0 for s in side.fresh]) for side in sides]
    p = stats.mean_shift_test(groups, options.permutations, rng)
    before = _mean([v for group in groups for v in group[0]])
    after = _mean([v for group in groups for v in group[1]])
    return TestResult("logprob", p, after - before,
                      f"mean log-probability per token {before:.2f} -> {after:.2f}")


def _flip_test(sides: list[_ProbeSides], null_flip_rate: float) -> TestResult:
    flips = [_flips(side) for side in sides]
    flipped, total = sum(f.flipped for f in flips), sum(f.fresh for f in flips)
    p = stats.flip_test(flipped, total, null_flip_rate)
    if len(sides) == 1 and flipped:
        now = Counter(s.text for s in sides[0].fresh).most_common(1)[0][0]
        detail = (f"answer changed: {_short(flips[0].reference_answer)} -> "
                  f"{_short(now)} ({flipped} of {total} differ)")
    elif len(sides) == 1:
        detail = f"same answer as the snapshot ({total} of {total})"
    else:
        detail = (f"{flipped} of {total} deterministic answers differ from the "
                  f"snapshot's (chance rate {null_flip_rate:.3f})")
    return TestResult("flip", p, float(flipped), detail)


def _pass_rate(sides: list[_ProbeSides]) -> TestResult:
    before = [bool(s.passed) for side in sides for s in side.reference]
    after = [bool(s.passed) for side in sides for s in side.fresh]
    rate_before, rate_after = _mean(before), _mean(after)
    return TestResult("pass_rate", stats.pass_rate_test(before, after),
                      rate_after - rate_before,
                      f"contract pass rate {rate_before:.2f} -> {rate_after:.2f}")


def _numbers(name: str, test: Callable[[Sequence[float], Sequence[float]], float],
             unit: str, before: Sequence[float], after: Sequence[float]) -> TestResult:
    mean_before, mean_after = _mean(before), _mean(after)
    return TestResult(name, test(before, after), mean_after - mean_before,
                      f"mean {unit} {mean_before:.1f} -> {mean_after:.1f}")


def _probe_tests(side: _ProbeSides, null_flip_rate: float, options: CheckOptions,
                 rng: np.random.Generator) -> list[TestResult]:
    tests = [test for test in (side.mmd, side.spread) if test is not None]
    return tests + _family([side], null_flip_rate, options, rng)


def _name_moved(results: list[ProbeResult], alpha: float, drifted: bool) -> None:
    """Benjamini-Hochberg over every per-probe test. Probes are named only once
    the route-wide stage has declared drift, which keeps the false-alarm rate
    of the whole procedure at alpha."""
    every = [test for result in results for test in result.tests]
    _adjust(every, stats.benjamini_hochberg)
    if not drifted:
        return
    for result in results:
        moved = [test for test in result.tests if test.adjusted < alpha]
        result.moved = bool(moved)
        result.changes = [test.detail for test in moved]


def _adjust(tests: list[TestResult],
            method: Callable[[Sequence[float]], np.ndarray]) -> None:
    for test, value in zip(tests, method([test.p_value for test in tests])):
        test.adjusted = float(value)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _short(text: str, width: int = 40) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= width else flat[:width - 1] + "…")
