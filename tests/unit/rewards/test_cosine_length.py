"""cosine_length: values at t = 0, T/2, T, truncated; constant vs cosine correct answers."""

from __future__ import annotations

import math

import pytest

from logics_rl.rewards import MissingComponentError, RewardInput, cosine_length
from logics_rl.rewards.cosine import cos_fn


def batch(lengths, correct, truncated=None, max_len=1000):
    return RewardInput.build(
        ["x"] * len(lengths),
        response_lengths=lengths,
        truncated=truncated,
        max_response_length=max_len,
        components={"correct": correct},
    )


def test_wrong_answers_earn_more_with_longer_chains_of_thought():
    res = cosine_length(batch([0, 500, 1000], [0.0, 0.0, 0.0]))
    assert res.scores == pytest.approx([-10.0, -5.0, 0.0])  # -10 at t=0, halfway at T/2, 0 at T
    assert res.components == {"length": res.scores}
    # Quarter points follow the cosine: -10 + 10 * (1 - cos(pi/4)) / 2 ... from the formula.
    assert cosine_length(batch([250], [0.0])).scores[0] == pytest.approx(
        0 + 0.5 * (-10 - 0) * (1 + math.cos(math.pi / 4))
    )


def test_correct_answers_get_the_maximum_and_truncated_get_exceed():
    res = cosine_length(
        batch(
            [0, 500, 1000, 1000, 300], [1.0, 1.0, 1.0, 1.0, 0.0], [False, False, False, True, True]
        )
    )
    assert res.scores == [0.0, 0.0, 0.0, -10.0, -10.0]
    assert cosine_length(batch([10], [1.0]), correct_value=1.0).scores == [1.0]


def test_demystify_mode_scales_correct_answers():
    res = cosine_length(batch([0, 500, 1000], [1.0] * 3), correct_mode="cosine")
    assert res.scores == pytest.approx([2.0, 1.5, 1.0])


def test_max_length_param_and_clipping():
    # T = 100 from params; lengths beyond T are clipped to T.
    assert cosine_length(batch([50, 400], [0.0, 0.0]), max_length=100).scores == pytest.approx(
        [-5.0, 0.0]
    )
    assert cos_fn(-5, 10, 0.0, -10.0) == -10.0


def test_needs_a_correctness_component():
    b = RewardInput.build(["x"], response_lengths=[3], max_response_length=10)
    with pytest.raises(MissingComponentError, match="needs component 'correct'.*math_verify"):
        cosine_length(b)
    assert cosine_length(RewardInput.build([], max_response_length=10)).scores == []
