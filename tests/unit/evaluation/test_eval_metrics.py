"""Evaluation metrics on fixed samples against hand-computed values: avg@k, unbiased pass@k for
every k, maj@k with ties and unanswered samples, lengths, truncation, per data source."""

from __future__ import annotations

from math import comb

import pytest

from logics_rl.evaluation.answers import GroupAnswers
from logics_rl.evaluation.metrics import (
    GroupResult,
    maj_at_k,
    pass_at_k,
    summarize,
    validation_metrics,
    vote_ks,
)


def test_pass_at_k_hand_values():
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - comb(3, 2) / comb(5, 2))  # 0.7
    assert pass_at_k(8, 3, 3) == pytest.approx(1 - 10 / 56)  # 1 - C(5,3)/C(8,3)
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(2, 1, 3)
    with pytest.raises(ValueError, match="0 < k"):
        pass_at_k(2, 1, 0)


def test_pass_at_k_is_the_chance_that_a_random_subset_holds_a_right_sample():
    from itertools import combinations

    right = [1, 0, 0, 1, 0, 0]  # n=6, c=2
    for k in range(1, 7):
        subsets = list(combinations(range(6), k))
        want = sum(any(right[i] for i in s) for s in subsets) / len(subsets)
        assert pass_at_k(6, 2, k) == pytest.approx(want)


def test_maj_at_k_votes_ties_and_no_answers():
    # classes of 5 samples; class 0 is right, 1 and 2 are wrong
    assert maj_at_k([0, 1, 0, -1, 1], [1.0, 0.0], 5) == 0.5  # 0 and 1 tie at 2 votes: half
    assert maj_at_k([0, 1, 0, -1, 1], [1.0, 0.0], 3) == 1.0  # first 3: class 0 has 2 votes
    assert maj_at_k([1, 0, 1, 0, 0], [1.0, 0.0], 4) == 0.5  # tie within the first 4
    assert maj_at_k([1, 0, 1, 0, 0], [1.0, 0.0], 5) == 1.0
    assert maj_at_k([-1, -1, 2], [0.0, 0.0, 1.0], 2) == 0.0  # nobody answered: 0
    assert maj_at_k([-1, -1, 2], [0.0, 0.0, 1.0], 3) == 1.0  # one vote is a majority
    assert maj_at_k([0, 1, 2], [1.0, 0.0, 0.0], 3) == pytest.approx(1 / 3)  # three-way tie


def test_vote_ks():
    assert vote_ks(1) == [1] and vote_ks(4) == [1, 2, 4] and vote_ks(6) == [1, 2, 4, 6]
    assert vote_ks(64) == [1, 2, 4, 8, 16, 32, 64]


def group(source, correct, classes, class_correct, lengths, truncated=None, answers=None):
    n = len(correct)
    return GroupResult(
        data_source=source,
        answers=GroupAnswers(
            answers or [None if c < 0 else str(c) for c in classes],
            [float(c) for c in correct],
            classes,
            class_correct,
        ),
        lengths=lengths,
        truncated=truncated or [False] * n,
        components={"correct": [float(c) for c in correct]},
    )


def test_summarize_by_hand():
    groups = [
        group("a", [1, 0, 0, 1], [0, 1, 1, 0], [1.0, 0.0], [10, 20, 30, 40], [0, 0, 0, 1]),
        group("a", [0, 0, 0, 0], [-1, 0, 0, 1], [0.0, 0.0], [5, 5, 5, 5]),
        group("b", [1, 1, 1, 0], [0, 0, 0, -1], [1.0], [8, 8, 8, 100], [0, 0, 0, 1]),
    ]
    m = summarize(groups)
    assert m["k"] == 4 and m["prompts"] == 3
    assert m["avg@4"] == pytest.approx((0.5 + 0.0 + 0.75) / 3)
    assert m["pass@1"] == pytest.approx((0.5 + 0.0 + 0.75) / 3)  # pass@1 is avg@k
    assert m["pass@2"] == pytest.approx(((1 - 1 / 6) + 0 + 1) / 3)  # C(2,2)/C(4,2) = 1/6
    assert m["pass@4"] == pytest.approx(2 / 3)
    # maj@4: group 1 ties 2-2 (half right), group 2 votes class 0 (wrong), group 3 right
    assert m["maj@4"] == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    # maj@1: the first sample's class: right, no answer, right
    assert m["maj@1"] == pytest.approx(2 / 3)
    assert m["maj@2"] == pytest.approx((0.5 + 0.0 + 1.0) / 3)  # group 1: classes 0 and 1 tie
    assert m["response_length/mean"] == pytest.approx((100 + 20 + 124) / 12)
    assert m["response_length/max"] == 100
    assert m["truncated"] == pytest.approx(2 / 12)
    assert m["no_answer"] == pytest.approx(2 / 12)
    assert m["reward/correct"] == pytest.approx(5 / 12)


def test_validation_metrics_names_and_sources():
    groups = [
        group("a", [1, 0], [0, 1], [1.0, 0.0], [2, 4]),
        group("a", [0, 0], [0, 0], [0.0], [1, 1]),
        group("b", [1, 1], [0, 0], [1.0], [3, 3]),
    ]
    m = validation_metrics(groups)
    assert m["val/avg@k"] == pytest.approx(3 / 6)
    assert m["val/pass@k"] == pytest.approx((1 + 0 + 1) / 3)
    assert m["val/maj@k"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert m["val/a/avg@k"] == pytest.approx((0.5 + 0.0) / 2) and m["val/a/pass@k"] == 0.5
    assert m["val/b/avg@k"] == 1.0 and m["val/b/pass@k"] == 1.0 and m["val/b/maj@k"] == 1.0
    assert m["val/response_length"] == pytest.approx(14 / 6) and m["val/prompts"] == 3.0
    assert m["val/response_length_max"] == 4.0


def test_summarize_needs_samples():
    with pytest.raises(ValueError, match="at least one prompt"):
        summarize([])
