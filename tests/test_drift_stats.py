"""Drift watch's statistics on synthetic data whose answer is known."""

from __future__ import annotations

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
