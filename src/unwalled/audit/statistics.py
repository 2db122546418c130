"""The statistics behind an audit's claims.

- Accuracy of right/wrong scores: Wilson score interval (good at small n and
  near 0 or 1, where the normal interval fails).
- Mean of graded scores (span F1): percentile bootstrap over items.
- Best against each other candidate, on the same items: exact McNemar test
  (binomial on the discordant pairs) for right/wrong scores, paired bootstrap of
  the mean difference for graded ones.
- Against the accuracy target: one-sided; a candidate meets the target unless
  its accuracy is significantly below it at the 5% level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
BOOTSTRAP_ROUNDS = 4000


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float
    method: str


def is_binary(scores: list[float]) -> bool:
    return all(s in (0.0, 1.0) for s in scores)


def wilson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    if n == 0:
        return Interval(0.0, 1.0, "wilson")
    z = float(stats.norm.ppf(1 - (1 - confidence) / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(max(0.0, centre - half), min(1.0, centre + half), "wilson")


def _resampled_means(scores: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(scores), size=(BOOTSTRAP_ROUNDS, len(scores)))
    return scores[picks].mean(axis=1)


def bootstrap(scores: list[float], seed: int = 0,
              confidence: float = 0.95) -> Interval:
    if not scores:
        return Interval(0.0, 1.0, "bootstrap")
    means = _resampled_means(np.asarray(scores, dtype=float), seed)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(low), float(high), "bootstrap")


def interval(scores: list[float], seed: int = 0) -> Interval:
    """95% interval for the mean score: Wilson when scores are right/wrong."""
    if is_binary(scores):
        return wilson(int(sum(scores)), len(scores))
    return bootstrap(scores, seed)


def below_target(scores: list[float], target: float, seed: int = 0) -> float:
    """One-sided p-value for "the true accuracy is below ``target``"."""
    if not scores:
        return 1.0
    if is_binary(scores):
        result = stats.binomtest(int(sum(scores)), len(scores), target,
                                 alternative="less")
        return float(result.pvalue)
    means = _resampled_means(np.asarray(scores, dtype=float), seed)
    return float((np.sum(means >= target) + 1) / (len(means) + 1))


@dataclass(frozen=True, slots=True)
class Comparison:
    method: str
    p_value: float
    difference: float
    """Mean score of the best candidate minus this one's, on the same items."""
    only_best_right: int = 0
    only_other_right: int = 0

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA


def compare(best: list[float], other: list[float], seed: int = 0) -> Comparison:
    """Paired test of two candidates' scores on the same items, in the same order."""
    if len(best) != len(other):
        raise ValueError("paired scores must cover the same items")
    difference = float(np.mean(best) - np.mean(other)) if best else 0.0
    if is_binary(best) and is_binary(other):
        return mcnemar(best, other, difference)
    return paired_bootstrap(best, other, difference, seed)


def mcnemar(best: list[float], other: list[float], difference: float) -> Comparison:
    only_best = sum(1 for a, b in zip(best, other) if a > b)
    only_other = sum(1 for a, b in zip(best, other) if b > a)
    discordant = only_best + only_other
    p = 1.0 if discordant == 0 else float(
        stats.binomtest(only_best, discordant, 0.5).pvalue)
    return Comparison("mcnemar-exact", p, difference, only_best, only_other)


def paired_bootstrap(best: list[float], other: list[float], difference: float,
                     seed: int) -> Comparison:
    """Two-sided p-value from resampled mean differences, centred under no effect."""
    gaps = np.asarray(best, dtype=float) - np.asarray(other, dtype=float)
    if not gaps.any():
        return Comparison("paired-bootstrap", 1.0, difference)
    means = _resampled_means(gaps - gaps.mean(), seed)
    extreme = np.sum(np.abs(means) >= abs(gaps.mean()))
    return Comparison("paired-bootstrap", float((extreme + 1) / (len(means) + 1)),
                      difference)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0
