"""Two-sample tests for drift watch: is the fresh sample from the same model?

Every test here compares a *reference* sample (the snapshot) with a *fresh*
one and returns a p-value; none knows about routes or ledgers.

- ``mmd_test``: maximum mean discrepancy with a Hamming kernel on completions,
  after Gao, Liang and Guestrin's model equality testing. Their kernel on
  (prompt, completion) pairs is zero across different prompts, so the MMD
  splits into one block per probe; the statistic is the sum of the blocks and
  the p-value comes from permuting the reference/fresh labels *within* each
  probe (both sides hold the same number of samples of each probe by design).
- ``spread_test``: how alike a side's answers are to each other (the mean
  kernel similarity between two answers of the same side), compared between
  the sides, with the same within-probe permutations. The MMD sees a change
  of *place*; this sees a change of *spread*, such as a provider sampling at
  a higher temperature, which leaves the typical answer where it was but
  makes answers differ more from one another. Its kernel is ``word_set_gram``
  (the Jaccard similarity of the answers' sets of words), which, unlike the
  position-by-position Hamming kernel, still sees two answers share their
  words once one of them has said a word more or fewer.
- ``mean_shift_test``: a stratified permutation test on the difference of
  means, used for the answers' mean log-probability: at a higher temperature
  a model picks tokens it finds less likely.
- ``flip_test``: deterministic (temperature 0) probes should repeat their
  answer. An exact binomial test asks whether fresh answers leave the
  reference answer more often than the snapshot's own answers did.
- ``pass_rate_test`` (Fisher's exact test), ``length_test`` (Kolmogorov-Smirnov)
  and ``location_test`` (Mann-Whitney U) on contract verdicts, lengths and
  token counts.
- ``holm`` and ``benjamini_hochberg`` correct for testing many things at once.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from scipy import stats as scipy_stats

Unit = Literal["char", "word"]
PAD = -1
_WORDS = re.compile(r"\w+|[^\w\s]", re.UNICODE)


# ---- the Hamming kernel ----

def encode(texts: Sequence[str], unit: Unit = "char",
           length: int | None = None) -> np.ndarray:
    """Texts as rows of integer codes, cut or padded (with ``PAD``) to one length.

    ``char`` codes are Unicode code points; ``word`` codes number the words and
    punctuation marks seen in ``texts``, so codes are comparable only within
    one call.
    """
    if unit == "char":
        rows = [np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
                for t in texts]
    else:
        vocabulary: dict[str, int] = {}
        rows = [np.array([vocabulary.setdefault(w, len(vocabulary))
                          for w in _WORDS.findall(t)], dtype=np.int64) for t in texts]
    width = length if length is not None else max((len(r) for r in rows), default=0)
    codes = np.full((len(rows), width), PAD, dtype=np.int64)
    for i, row in enumerate(rows):
        cut = row[:width]
        codes[i, :len(cut)] = cut
    return codes


def hamming_gram(codes: np.ndarray) -> np.ndarray:
    """k(a, b): the share of positions where a and b agree.

    Padding agrees with padding, so two answers that end at the same place are
    more alike than two that do not: length is part of what the kernel sees.
    """
    count, width = codes.shape
    if width == 0:
        return np.ones((count, count))
    gram = np.empty((count, count))
    for i in range(count):
        gram[i] = (codes == codes[i]).mean(axis=1)
    return gram


def text_gram(texts: Sequence[str], unit: Unit = "char",
              length: int | None = None) -> np.ndarray:
    return hamming_gram(encode(texts, unit, length))


def word_set_gram(texts: Sequence[str]) -> np.ndarray:
    """k(a, b): the Jaccard similarity of the sets of (lower-cased) words and
    punctuation marks of a and b; 1 for two empty answers."""
    vocabulary: dict[str, int] = {}
    rows = [{vocabulary.setdefault(word, len(vocabulary))
             for word in _WORDS.findall(text.lower())} for text in texts]
    member = np.zeros((len(rows), len(vocabulary)))
    for i, row in enumerate(rows):
        member[i, list(row)] = 1.0
    shared = member @ member.T
    sizes = member.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - shared
    return np.divide(shared, union, out=np.ones_like(shared), where=union > 0)


# ---- MMD with a permutation p-value ----

@dataclass(slots=True)
class Block:
    """One probe's kernel matrix: rows ``[0, reference)`` are the reference
    samples, the rest are fresh ones."""

    gram: np.ndarray
    reference: int

    @property
    def fresh(self) -> int:
        return self.gram.shape[0] - self.reference

    @property
    def testable(self) -> bool:
        """With one sample a side, swapping labels changes nothing: no test."""
        return self.reference >= 1 and self.fresh >= 1 and self.gram.shape[0] >= 3


@dataclass(slots=True)
class MMDResult:
    statistic: float
    p_value: float
    per_block: list[tuple[float, float]]
    """(MMD², p-value) for each block, in order; (0, 1) for untestable ones."""


def mmd_test(blocks: Sequence[Block], permutations: int = 1000,
             rng: np.random.Generator | None = None) -> MMDResult:
    """Sum of per-block MMD², with a p-value from stratified label permutations."""
    rng = rng or np.random.default_rng()
    observed_total = 0.0
    permuted_total = np.zeros(permutations)
    per_block: list[tuple[float, float]] = []
    for block in blocks:
        if not block.testable:
            per_block.append((0.0, 1.0))
            continue
        observed, permuted = _block_statistics(block, permutations, rng)
        observed_total += observed
        permuted_total += permuted
        per_block.append((observed, _permutation_p(observed, permuted)))
    if not any(block.testable for block in blocks):
        return MMDResult(0.0, 1.0, per_block)
    return MMDResult(observed_total, _permutation_p(observed_total, permuted_total),
                     per_block)


def _block_statistics(block: Block, permutations: int,
                      rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """The biased MMD² (w'Kw with weights +1/n and -1/m) and its permutations."""
    weights = np.concatenate([np.full(block.reference, 1.0 / block.reference),
                              np.full(block.fresh, -1.0 / block.fresh)])
    observed = float(weights @ block.gram @ weights)
    shuffled = rng.permuted(np.tile(weights[:, None], (1, permutations)), axis=0)
    permuted = np.einsum("ib,ib->b", shuffled, block.gram @ shuffled)
    return observed, permuted


# ---- spread: how alike each side's answers are to each other ----

@dataclass(slots=True)
class SpreadResult:
    statistic: float
    """Summed over probes: the reference answers' mean similarity to each other
    minus the fresh answers'. Positive: the fresh answers vary more."""
    p_value: float
    per_block: list[tuple[float, float]]
    """(difference, two-sided p-value) for each block; (0, 1) where a side has
    fewer than two samples."""


def spread_test(blocks: Sequence[Block], permutations: int = 1000,
                rng: np.random.Generator | None = None) -> SpreadResult:
    """A two-sided permutation test on the summed within-side similarity gap.

    Summing the signed per-probe gaps before taking the size makes a change
    that widens (or narrows) every probe's answers add up across probes.
    """
    rng = rng or np.random.default_rng()
    observed_total = 0.0
    permuted_total = np.zeros(permutations)
    per_block: list[tuple[float, float]] = []
    spreadable = [block.reference >= 2 and block.fresh >= 2 for block in blocks]
    for block, usable in zip(blocks, spreadable):
        if not usable:
            per_block.append((0.0, 1.0))
            continue
        labels = np.arange(block.gram.shape[0]) < block.reference
        observed = float(_similarity_gap(block, labels[:, None])[0])
        shuffled = rng.permuted(np.tile(labels[:, None], (1, permutations)), axis=0)
        permuted = _similarity_gap(block, shuffled)
        observed_total += observed
        permuted_total += permuted
        per_block.append((observed, _permutation_p(abs(observed), np.abs(permuted))))
    if not any(spreadable):
        return SpreadResult(0.0, 1.0, per_block)
    return SpreadResult(observed_total,
                        _permutation_p(abs(observed_total), np.abs(permuted_total)),
                        per_block)


def _similarity_gap(block: Block, labels: np.ndarray) -> np.ndarray:
    """For each column of boolean ``labels`` (True: reference), the mean
    similarity of two different reference answers minus that of two fresh ones."""
    diagonal = np.diag(block.gram)

    def within(members: np.ndarray, count: int) -> np.ndarray:
        weights = members.astype(float)
        pairs = (np.einsum("ib,ib->b", weights, block.gram @ weights)
                 - diagonal @ weights)
        return pairs / (count * (count - 1))

    return within(labels, block.reference) - within(~labels, block.fresh)


def _permutation_p(observed: float, permuted: np.ndarray) -> float:
    # The observed labelling counts as one of the permutations, so p > 0.
    tolerance = 1e-12 * max(1.0, abs(observed))
    at_least = int(np.count_nonzero(permuted >= observed - tolerance))
    return (1 + at_least) / (1 + len(permuted))


# ---- a shift of means, within probes ----

def mean_shift_test(groups: Sequence[tuple[Sequence[float], Sequence[float]]],
                    permutations: int = 1000,
                    rng: np.random.Generator | None = None) -> float:
    """Two-sided p-value for the summed per-group (fresh mean - reference mean),
    permuting the labels within each (reference, fresh) group. A group with no
    sample on a side adds nothing."""
    rng = rng or np.random.default_rng()
    observed = 0.0
    permuted = np.zeros(permutations)
    for reference, fresh in groups:
        if len(reference) == 0 or len(fresh) == 0:
            continue
        values = np.concatenate([np.asarray(reference, float),
                                 np.asarray(fresh, float)])
        labels = np.arange(values.size) < len(reference)
        shuffled = rng.permuted(np.tile(labels[:, None], (1, permutations)), axis=0)
        observed += values[len(reference):].mean() - values[:len(reference)].mean()
        permuted += ((values @ ~shuffled) / len(fresh)
                     - (values @ shuffled) / len(reference))
    if not np.any(permuted) and observed == 0.0:
        return 1.0
    return _permutation_p(abs(observed), np.abs(permuted))


# ---- flips of deterministic probes ----

@dataclass(slots=True)
class Flips:
    """How often answers left the reference answer, on each side."""

    reference_answer: str
    reference_unstable: int
    """Snapshot samples that differ from the mode of the *other* snapshot samples."""
    reference_judged: int
    flipped: int
    """Fresh samples that differ from the reference answer."""
    fresh: int


def count_flips(reference: Sequence[str], fresh: Sequence[str]) -> Flips:
    answer = Counter(reference).most_common(1)[0][0]
    unstable = judged = 0
    for i, text in enumerate(reference):
        others = [*reference[:i], *reference[i + 1:]]
        if others:
            judged += 1
            unstable += Counter(others).most_common(1)[0][0] != text
    flipped = sum(text != answer for text in fresh)
    return Flips(answer, unstable, judged, flipped, len(fresh))


def flip_rate_under_null(flips: Sequence[Flips]) -> float:
    """How often a fresh answer may differ by chance, as the snapshot showed it.

    The half-count keeps a few unseen instabilities from being taken as none;
    with no repeated snapshot samples at all it is 0.5, which rightly makes
    a handful of flips weak evidence.
    """
    unstable = sum(f.reference_unstable for f in flips)
    judged = sum(f.reference_judged for f in flips)
    return (unstable + 0.5) / (judged + 1)


def flip_test(flipped: int, fresh: int, null_rate: float) -> float:
    """P(at least ``flipped`` of ``fresh`` differ) when each does at ``null_rate``."""
    if flipped == 0 or fresh == 0:
        return 1.0
    return float(scipy_stats.binom.sf(flipped - 1, fresh, null_rate))


# ---- numbers and verdicts ----

def pass_rate_test(reference: Sequence[bool], fresh: Sequence[bool]) -> float:
    """Fisher's exact test on passes and failures, two-sided."""
    table = [[sum(reference), len(reference) - sum(reference)],
             [sum(fresh), len(fresh) - sum(fresh)]]
    if not reference or not fresh:
        return 1.0
    return float(scipy_stats.fisher_exact(table).pvalue)


def length_test(reference: Sequence[float], fresh: Sequence[float]) -> float:
    """Kolmogorov-Smirnov: has the distribution (shape or place) moved?"""
    if _degenerate(reference, fresh):
        return 1.0
    with warnings.catch_warnings():
        # With many ties scipy falls back from the exact p-value to the
        # asymptotic one and warns; the fallback is what we want.
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation unsuccessful",
                                RuntimeWarning)
        return float(scipy_stats.ks_2samp(reference, fresh).pvalue)


def location_test(reference: Sequence[float], fresh: Sequence[float]) -> float:
    """Mann-Whitney U: does one side tend to be larger?"""
    if _degenerate(reference, fresh):
        return 1.0
    return float(scipy_stats.mannwhitneyu(reference, fresh,
                                          alternative="two-sided").pvalue)


def _degenerate(reference: Sequence[float], fresh: Sequence[float]) -> bool:
    """No samples on a side, or every value the same: nothing to test."""
    if len(reference) == 0 or len(fresh) == 0:
        return True
    values = np.concatenate([np.asarray(reference, float), np.asarray(fresh, float)])
    return bool(np.all(values == values[0]))


# ---- many tests at once ----

def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment: controls the chance of any false alarm."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = (p.size - np.arange(p.size)) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg: controls the share of false alarms among alarms."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    return scipy_stats.false_discovery_control(p, method="bh")
