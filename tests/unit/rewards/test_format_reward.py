"""format: exactly one non-empty, balanced \\boxed{} (optionally after </think>)."""

from __future__ import annotations

from logics_rl.rewards import RewardInput, answer_format
from logics_rl.rewards.boxed import boxed_answers


def test_format_cases():
    responses = [
        r"so \boxed{\frac{1}{2}}",  # ok
        r"\boxed{ }",  # empty
        r"\boxed{1} or \boxed{2}",  # two answers
        "42",  # no box
        r"\boxed{\{1, 2\}}",  # escaped braces inside
        r"\boxed{x^{2}",  # never closed
        r"\fbox{3}",  # fbox counts
        None,
    ]
    res = answer_format(RewardInput.build(responses))
    assert res.scores == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert res.components == {"format": res.scores}
    assert answer_format(
        RewardInput.build([r"\boxed{1} or \boxed{2}"]), exactly_one=False
    ).scores == [1.0]


def test_think_tags():
    responses = [
        r"<think>try \boxed{1}</think> \boxed{2}",
        r"<think>\boxed{2}</think> done",
        r"\boxed{2}",
        r"</think><think>\boxed{2}",
    ]
    assert answer_format(RewardInput.build(responses), require_think=True).scores == [
        1.0,
        0.0,
        0.0,
        0.0,
    ]


def test_boxed_answers_nesting():
    assert boxed_answers(r"\boxed{a \boxed{b}} and \boxed{c}") == [r"a \boxed{b}", "c"]
    assert boxed_answers(r"\boxed {x}") == ["x"]
    assert boxed_answers(r"\boxed{open") == [None]
