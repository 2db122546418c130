"""Drift watch's statistics on synthetic data whose answer is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from unwalled.drift import stats


def test_hamming_kernel_counts_agreeing_positions_padding_included():
    gram = stats.text_gram(["abc", "abd", "ab", "abc"])
    assert gram[0, 3] == 1.0                       # identical
    assert gram[0, 1] == pytest.approx(2 / 3)      # one letter differs
    assert gram[0, 2] == pytest.approx(2 / 3)      # shorter: padding meets 'c'
    assert np.allclose(gram, gram.T) and np.all(np.diag(gram) == 1.0)


def test_word_unit_compares_words_not_letters():
    gram = stats.text_gram(["the cat sat", "the dog sat", "a cat sat"], "word")
    assert gram[0, 1] == pytest.approx(2 / 3)
    assert gram[0, 2] == pytest.approx(2 / 3)
    assert stats.encode(["x y"], "word", length=4).tolist() == [[0, 1, -1, -1]]


def _texts(rng, alphabet, count, length=12):
    return ["".join(rng.choice(list(alphabet), length)) for _ in range(count)]


def _blocks(rng, alphabet_before, alphabet_after, probes=5, per_side=8):
    blocks = []
    for _ in range(probes):
        texts = (_texts(rng, alphabet_before, per_side)
                 + _texts(rng, alphabet_after, per_side))
        blocks.append(stats.Block(stats.text_gram(texts), per_side))
    return blocks


def test_mmd_false_alarms_stay_near_alpha_on_identical_sources():
    rng = np.random.default_rng(7)
    p_values = [stats.mmd_test(_blocks(rng, "abcd", "abcd", per_side=6), 99,
                               rng).p_value for _ in range(150)]
    rate = np.mean(np.array(p_values) < 0.05)
    assert rate <= 0.1, rate  # 0.05 expected; 0.1 is about 3 standard errors
    assert 0.35 < np.median(p_values) < 0.65  # roughly uniform under the null


def test_mmd_catches_a_changed_letter_distribution():
    rng = np.random.default_rng(8)
    p_values = [stats.mmd_test(_blocks(rng, "abcd", "abce"), 199, rng).p_value
                for _ in range(40)]
    assert np.mean(np.array(p_values) < 0.05) >= 0.9


def test_mmd_on_fully_separated_sides_reaches_the_permutation_floor():
    texts = ["aaaa"] * 5 + ["bbbb"] * 5
    result = stats.mmd_test([stats.Block(stats.text_gram(texts), 5)], 999,
                            np.random.default_rng(1))
    # Only 2 of the 252 splits of 10 into 5+5 are as extreme as the observed one.
    assert result.p_value < 0.03
    assert result.statistic == pytest.approx(2.0)  # 1 + 1 - 2 * 0


def test_one_sample_a_side_cannot_be_tested():
    block = stats.Block(stats.text_gram(["a", "b"]), 1)
    assert not block.testable
    assert stats.mmd_test([block], 99).p_value == 1.0


def test_flip_counts_use_leave_one_out_on_the_snapshot():
    flips = stats.count_flips(["A", "A", "B"], ["A", "C"])
    assert flips.reference_answer == "A"
    assert (flips.reference_unstable, flips.reference_judged) == (1, 3)
    assert (flips.flipped, flips.fresh) == (1, 2)
    assert stats.flip_rate_under_null([flips]) == pytest.approx(1.5 / 4)


def test_flip_test_is_an_exact_binomial_tail():
    assert stats.flip_test(3, 3, 0.1) == pytest.approx(0.001)
    assert stats.flip_test(1, 2, 0.5) == pytest.approx(0.75)
    assert stats.flip_test(0, 10, 0.01) == 1.0


def test_pass_rate_uses_fishers_exact_test():
    all_pass, all_fail = [True] * 10, [False] * 10
    assert stats.pass_rate_test(all_pass, all_fail) == pytest.approx(2 / 184756)
    assert stats.pass_rate_test(all_pass, all_pass) == 1.0


def test_length_and_location_tests():
    rng = np.random.default_rng(3)
    before, after = rng.normal(30, 5, 60), rng.normal(36, 5, 60)
    assert stats.length_test(before, after) < 0.01
    assert stats.location_test(before, after) < 0.01
    assert stats.location_test([5, 5, 5], [5, 5]) == 1.0
    same = rng.normal(30, 5, 60)
    assert stats.location_test(before, same) > 0.05


def test_holm_and_benjamini_hochberg_known_values():
    p = [0.01, 0.04, 0.03]
    assert stats.holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert stats.benjamini_hochberg(p).tolist() == pytest.approx([0.03, 0.04, 0.04])
    assert stats.holm([0.5, 0.9]).tolist() == [1.0, 1.0]  # never below a smaller p
    assert stats.holm([0.01, 0.5]).tolist() == [0.02, 0.5]
    assert stats.holm([]).size == 0


def test_spread_statistic_is_the_within_side_similarity_gap():
    # Reference pairs: 6, of which (a, a) and (b, b) agree; fresh pairs: none agree.
    block = stats.Block(stats.text_gram(["a", "a", "b", "b", "a", "b", "c", "d"]), 4)
    result = stats.spread_test([block], 20_000, np.random.default_rng(2))
    assert result.statistic == pytest.approx(1 / 3)
    # The exact permutation p-value, over all 70 ways to pick 4 of 8 as reference.
    gaps = []
    for chosen in itertools.combinations(range(8), 4):
        order = [*chosen, *(i for i in range(8) if i not in chosen)]
        gram = block.gram[np.ix_(order, order)]
        gaps.append(stats.spread_test([stats.Block(gram, 4)], 1,
                                      np.random.default_rng(0)).statistic)
    exact = np.mean(np.abs(gaps) >= 1 / 3 - 1e-12)
    assert result.p_value == pytest.approx(exact, abs=0.01)
    assert result.per_block[0][0] == pytest.approx(1 / 3)


def _tempered(rng, logits, temperature, count):
    weights = np.exp(np.asarray(logits) / temperature)
    return list(rng.choice(list("abcdefgh"), count, p=weights / weights.sum()))


def _collision(logits, temperature):
    weights = np.exp(np.asarray(logits) / temperature)
    return float(((weights / weights.sum()) ** 2).sum())


def test_spread_sees_a_higher_sampling_temperature():
    """Answers drawn from one categorical distribution at temperature 0.7 (the
    snapshot) and 1.0 (fresh). Each side's mean pairwise similarity estimates
    the chance that two answers agree, the sum of squared probabilities,
    without bias; so the statistic's mean is known exactly."""
    rng = np.random.default_rng(11)
    logits = [2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -1.5]
    probes, per_side = 5, 50
    expected = probes * (_collision(logits, 0.7) - _collision(logits, 1.0))
    changed, unchanged = [], []
    for _ in range(40):
        hotter = [stats.Block(stats.text_gram(_tempered(rng, logits, 0.7, per_side)
                                              + _tempered(rng, logits, 1.0, per_side)),
                              per_side) for _ in range(probes)]
        same = [stats.Block(stats.text_gram(_tempered(rng, logits, 0.7, 2 * per_side)),
                            per_side) for _ in range(probes)]
        changed.append(stats.spread_test(hotter, 99, rng))
        unchanged.append(stats.spread_test(same, 99, rng))
    assert expected == pytest.approx(0.4545, abs=0.0001)
    # 40 trials: the standard error of this mean is about 0.023.
    assert np.mean([r.statistic for r in changed]) == pytest.approx(expected, abs=0.07)
    assert np.mean([r.statistic for r in unchanged]) == pytest.approx(0.0, abs=0.07)
    # The statistic's mean is about 3.1 standard deviations from 0 here, which
    # gives a power near 0.87 at alpha 0.05; 40 trials leave some play.
    assert np.mean([r.p_value < 0.05 for r in changed]) >= 0.75
    assert np.mean([r.p_value < 0.05 for r in unchanged]) <= 0.1


def test_spread_needs_two_samples_a_side():
    block = stats.Block(stats.text_gram(["a", "b", "c"]), 1)
    result = stats.spread_test([block], 99)
    assert (result.statistic, result.p_value) == (0.0, 1.0)
    assert result.per_block == [(0.0, 1.0)]


def test_word_set_kernel_is_the_jaccard_similarity_of_word_sets():
    gram = stats.word_set_gram(["The cat sat.", "the cat ran", "", ""])
    # {the, cat, sat, .} and {the, cat, ran}: 2 shared of 5.
    assert gram[0, 1] == pytest.approx(0.4)
    assert gram[2, 3] == 1.0 and gram[0, 2] == 0.0   # two empty answers are alike
    assert np.all(np.diag(gram) == 1.0)
    # Order and repetition do not matter; a word more or fewer costs little.
    assert stats.word_set_gram(["red rose red", "rose red"])[0, 1] == 1.0


def test_mean_shift_test_permutes_within_groups():
    # [1, 2, 3] against [4, 5, 6]: 2 of the 20 ways to split six values into
    # three and three give a difference of means as large (3 or -3).
    p = stats.mean_shift_test([([1, 2, 3], [4, 5, 6])], 5000, np.random.default_rng(0))
    assert p == pytest.approx(0.1, abs=0.015)
    # A group whose values are all alike adds nothing, nor does a lopsided one.
    padded = [([1, 2, 3], [4, 5, 6]), ([10, 10], [10, 10]), ([7], [])]
    assert stats.mean_shift_test(padded, 5000, np.random.default_rng(0)) == p
    assert stats.mean_shift_test([([5, 5], [5, 5])], 99) == 1.0


def test_mean_shift_test_is_not_fooled_by_groups_at_different_levels():
    """Groups whose levels lie far apart (as answers to different prompts are
    in log-probability) do not hide a small shift within each group."""
    rng = np.random.default_rng(4)
    levels = [-0.5, -1.5, -2.5, -3.5]
    shifted = [(rng.normal(level, 0.2, 10), rng.normal(level - 0.25, 0.2, 10))
               for level in levels]
    same = [(rng.normal(level, 0.2, 10), rng.normal(level, 0.2, 10))
            for level in levels]
    assert stats.mean_shift_test(shifted, 999, rng) < 0.01
    pooled = stats.location_test(np.concatenate([g[0] for g in shifted]),
                                 np.concatenate([g[1] for g in shifted]))
    assert pooled > 0.05  # pooling every group together drowns the shift
    assert stats.mean_shift_test(same, 999, rng) > 0.05
