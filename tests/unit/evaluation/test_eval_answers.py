"""Answer analysis in the math-verify process pool: extracted answers, verdicts equal to the
``math_verify`` reward's, answer classes by math-verify equivalence (``0.5`` and ``\\frac{1}{2}``
vote together), settings taken from the configured reward term, counters."""

from __future__ import annotations

import pytest

from logics_rl.config.schema import RewardConfig, RewardTermConfig
from logics_rl.evaluation.answers import AnswerOptions, analyse
from logics_rl.evaluation.metrics import maj_at_k
from logics_rl.rewards import RewardInput, build_reward, math_verify

GROUPS = [
    [
        r"so \boxed{0.5}",
        r"\boxed{\frac{1}{2}}",
        "the answer is 1/2",
        r"\boxed{3}",
        "no idea",
        r"\boxed{3}",
        r"\boxed{\dfrac12}",
    ],
    [r"\boxed{4}", r"\boxed{5}", r"\boxed{4.0}", "I get 5", "5", r"$x = 4$"],
    [r"\boxed{\{1, 2\}}", r"\boxed{\{2,1\}}", r"\boxed{\{1,3\}}", r"\boxed{[1,2]}"],
]
GOLDS = [r"\frac12", "4", r"\{1,2\}"]


@pytest.fixture(scope="module")
def found():
    return analyse(GOLDS, GROUPS, AnswerOptions())


def test_answers_classes_and_verdicts(found):
    groups, counters = found
    g = groups[0]
    assert g.answers == ["0.5", r"\frac{1}{2}", "1/2", "3", None, "3", r"\frac{1}{2}"]
    assert g.correct == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert g.classes == [0, 0, 0, 1, -1, 1, 0] and g.class_correct == [1.0, 0.0]
    assert maj_at_k(g.classes, g.class_correct, 7) == 1.0
    assert maj_at_k(g.classes, g.class_correct, 6) == 1.0  # 3 votes for 1/2, 2 for 3
    g = groups[1]  # 4 / 4.0 / x = 4 against 5, 5, 5
    assert g.correct == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert g.classes[0] == g.classes[2] and g.classes[1] == g.classes[3] == g.classes[4]
    assert maj_at_k(g.classes, g.class_correct, 6) == 0.5  # 3 against 3: a tie
    assert maj_at_k(g.classes, g.class_correct, 5) == 0.0  # 5 wins 3 to 2
    g = groups[2]  # sets in any order; a closed interval is not a set
    assert g.correct[:2] == [1.0, 1.0] and g.classes[0] == g.classes[1]
    assert g.correct[2:] == [0.0, 0.0] and len(set(g.classes)) == 3
    assert counters == {
        "answers/timeout": 0,
        "answers/error": 0,
        "answers/no_gold": 0,
        "answers/worker_restart": 0,
    }


def test_verdicts_equal_the_reward(found):
    groups, _ = found
    flat = [r for g in GROUPS for r in g]
    golds = [GOLDS[i] for i, g in enumerate(GROUPS) for _ in g]
    want = math_verify(RewardInput.build(flat, ground_truths=golds)).components["correct"]
    assert [c for g in groups for c in g.correct] == want


def test_settings_follow_the_reward_term():
    reward = build_reward(
        RewardConfig(terms=[RewardTermConfig("math_verify", params={"fallback": "none"})])
    )
    opts = AnswerOptions.of_reward(reward, num_workers=1, timeout_s=5.0)
    assert opts.fallback == "none" and opts.strict is True and opts.timeout_s == 5.0
    groups, _ = analyse(["4"], [[r"\boxed{4}", "4"]], opts)
    assert groups[0].correct == [1.0, 0.0] and groups[0].answers == ["4", None]
    default = AnswerOptions.of_reward(
        build_reward(RewardConfig(terms=[RewardTermConfig("format")])), 1, 10.0
    )
    assert default == AnswerOptions(num_workers=1, timeout_s=10.0)


def test_no_gold_is_counted_and_answers_still_vote():
    groups, counters = analyse(
        [None], [[r"\boxed{2}", r"\boxed{2.0}", r"\boxed{3}"]], AnswerOptions()
    )
    g = groups[0]
    assert g.correct == [0.0, 0.0, 0.0] and g.classes == [0, 0, 1]
    assert counters["answers/no_gold"] == 3


def test_fallback_is_checked():
    with pytest.raises(ValueError, match="fallback"):
        analyse(["1"], [["1"]], AnswerOptions(fallback="sometimes"))
