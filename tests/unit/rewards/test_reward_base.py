"""RewardInput / RewardResult / normalise_result / check_params."""

from __future__ import annotations

import math
from typing import Literal

import pytest

from logics_rl.rewards import RewardInput, RewardResult, check_params, normalise_result


def test_reward_input_checks_lengths():
    with pytest.raises(
        ValueError, match=r"RewardInput.truncated has 1 entries but there are 2 responses"
    ):
        RewardInput(["p", "p"], ["a", "b"], [1, 2], [1, 1], [False], 10)
    with pytest.raises(ValueError, match=r"components\['correct'\]"):
        RewardInput.build(["a"], components={"correct": [1.0, 0.0]})
    b = RewardInput.build(["a b", "c"], response_token_ids=[[1, 2, 3], [4]])
    assert b.response_lengths == [3, 1] and b.max_response_length == 3 and len(b) == 2


def test_normalise_accepts_lists_and_checks_everything():
    b = RewardInput.build(["a", "b"], response_token_ids=[[1], [2, 3]])
    r = normalise_result([1, 0.5], b, "mine")
    assert r.scores == [1.0, 0.5] and r.components == {"mine": [1.0, 0.5]}
    bad = [
        (RewardResult([1.0]), "scores has 1 entries for a batch of 2"),
        (RewardResult([1.0, math.nan]), r"scores\[1\] is not finite"),
        (RewardResult([1.0, 2.0], {"c": [1.0]}), r"components\['c'\] has 1 entries"),
        (
            RewardResult([1.0, 2.0], token_scores=[[0.0], [0.0]]),
            r"token_scores\[1\] has 1 entries but response 1 has 2 tokens",
        ),
        (RewardResult([1.0, "x"]), r"scores\[1\] must be a number"),
        (RewardResult([1.0, 2.0], counters={"n": 1.5}), r"counters\['n'\] must be an int"),
        ("nope", "scores must be a list of 2 floats, got str"),
        (None, "returned NoneType; expected a RewardResult or a list of floats"),
    ]
    for out, msg in bad:
        with pytest.raises((TypeError, ValueError), match=msg):
            normalise_result(out, b, "mine")


def test_check_params():
    def fn(batch, *, mode: Literal["a", "b"] = "a", size: int = 3): ...

    assert check_params(fn, {"mode": "b"}, what="t") == {"mode": "b"}
    with pytest.raises(
        ValueError,
        match=r"t: unknown parameter 'sise' \(did you mean 'size'\?\); valid parameters: mode, size",
    ):
        check_params(fn, {"sise": 1}, what="t")
    with pytest.raises(ValueError, match=r"mode='c' is not one of 'a', 'b'"):
        check_params(fn, {"mode": "c"}, what="t")

    def needs(batch, *, k): ...

    with pytest.raises(ValueError, match="missing required parameter"):
        check_params(needs, {}, what="t")

    def anything(batch, **kw): ...

    assert check_params(anything, {"whatever": 1}, what="t") == {"whatever": 1}
    with pytest.raises(TypeError, match="first positional argument"):
        check_params(lambda *, k=1: None, {}, what="t")
