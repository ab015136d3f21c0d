"""math_verify: hand-checked answers, the fallback, bad inputs, and scoring from a non-main thread."""

from __future__ import annotations

import inspect
import threading

import pytest

from logics_rl.config.schema import RewardConfig
from logics_rl.rewards import RewardInput, math_verify
from logics_rl.rewards._verify_worker import gold_candidates, tex_single_token_args

# (gold, response, expected) -- checked by hand.
CASES = [
    (r"\frac{1}{2}", r"so \boxed{0.5}", 1.0),
    (r"\frac{1}{2}", r"\boxed{\dfrac12}", 1.0),
    ("0.5", r"\boxed{\frac{1}{2}}", 1.0),
    ("0.5", r"\boxed{1/2}", 1.0),
    (r"\frac{\sqrt{2}}{2}", r"\boxed{\frac{1}{\sqrt{2}}}", 1.0),
    (r"\frac{\sqrt{2}}{2}", r"\boxed{\frac{\sqrt2}{2}}", 1.0),
    (r"\frac{3}{4}", r"\boxed{\frac{4}{3}}", 0.0),
    ("(1, 2]", r"\boxed{(1,2]}", 1.0),
    ("(1, 2]", r"\boxed{[1,2)}", 0.0),
    (r"(-\infty, 3)", r"\boxed{(-\infty,3)}", 1.0),
    (r"\{1, 2, 3\}", r"\boxed{\{3, 2, 1\}}", 1.0),
    (r"\{1, 2, 3\}", r"\boxed{\{1, 2\}}", 0.0),
    ("x^2+2x+1", r"\boxed{(x+1)^2}", 1.0),
    (r"2\sqrt{3}", r"\boxed{\sqrt{12}}", 1.0),
    ("10\\%", r"\boxed{0.1}", 1.0),
    ("1000", r"\boxed{1,000}", 1.0),
    ("1", r"\boxed{-1}", 0.0),
    ("42", r"Thinking... 6 * 7 = 42. The answer is \boxed{42}.", 1.0),
    ("42", r"\boxed{43}", 0.0),
    ("42", "no answer at all", 0.0),
    (["6", "-6"], r"\boxed{-6}", 1.0),  # several accepted answers
    ("42", r"\boxed{41} then \boxed{42}", 0.0),  # two boxes read as the set {41, 42}
    (42, r"\boxed{42}", 1.0),  # a non-string gold
]


def score(responses, golds, **params):
    params.setdefault("timeout_s", 10)
    return math_verify(RewardInput.build(responses, ground_truths=golds), **params)


def test_hand_checked_answers():
    res = score([c[1] for c in CASES], [c[0] for c in CASES])
    got = dict(zip([(repr(c[0]), c[1]) for c in CASES], res.scores))
    want = {(repr(c[0]), c[1]): c[2] for c in CASES}
    assert got == want
    assert res.components["correct"] == res.scores
    assert res.counters == {
        "math_verify/timeout": 0,
        "math_verify/error": 0,
        "math_verify/no_gold": 0,
        "math_verify/worker_restart": 0,
    }


def test_gold_is_passed_first():
    # verify() is not symmetric: a relation gold accepts the interval as the prediction, but an
    # interval gold does not accept a relation (math-verify compares set vs relation only when the
    # PREDICTION is a set). Swapping the arguments would flip both results.
    assert score([r"\boxed{(1, 2)}", r"\boxed{1 < x < 2}"], ["1 < x < 2", "(1, 2)"]).scores == [
        1.0,
        0.0,
    ]
    assert score([r"\boxed{3}"], [r"\boxed{3}"]).scores == [1.0]  # an already boxed gold is kept


@pytest.mark.parametrize(
    ("fallback", "expected"),
    [
        ("last_number", [1.0, 1.0, 0.0, 1.0]),
        ("latex", [0.0, 1.0, 0.0, 1.0]),
        ("none", [0.0, 0.0, 0.0, 1.0]),
    ],
)
def test_fallback(fallback, expected):
    responses = [
        "I got 17 first and then 42",
        r"so $x = 42$",
        "I got 42 first and then 17",
        r"\boxed{42}",
    ]
    assert score(responses, ["42"] * 4, fallback=fallback).scores == expected


def test_bad_inputs_score_zero_without_raising():
    one_mb = "blah " * 200_000 + r"\boxed{42}"
    responses = [
        None,
        "",
        "   ",
        one_mb,
        "\ud800\udfff broken surrogates",
        r"\boxed{42}",
        r"\boxed{42}",
        r"\boxed{",
        "\x00" * 100,
    ]
    golds = ["42", "42", "42", "7", "42", None, "", "42", "42"]
    res = score(responses, golds)
    assert res.scores == [0.0] * len(responses)
    assert res.counters["math_verify/no_gold"] == 2
    assert res.counters["math_verify/error"] == 0 and res.counters["math_verify/timeout"] == 0
    assert score([one_mb, "\ud800" + r"\boxed{42}"], ["42", "42"]).scores == [1.0, 1.0]


def test_empty_batch():
    res = score([], [])
    assert res.scores == [] and res.components == {"correct": []}


def test_scores_correctly_from_a_non_main_thread():
    # The pitfall: math-verify's SIGALRM timeouts raise outside the main thread, and wrappers
    # that swallowed the error scored everything 0. Here scoring happens in worker processes.
    out = {}

    def run():
        out["pool"] = score([r"\boxed{\frac12}", r"\boxed{3}"], ["0.5", "4"]).scores
        out["in_process"] = score(
            [r"\boxed{\frac12}", r"\boxed{3}"], ["0.5", "4"], num_workers=0
        ).scores

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    assert out == {"pool": [1.0, 0.0], "in_process": [1.0, 0.0]}


def test_in_process_mode_on_the_main_thread():
    assert score([r"\boxed{\dfrac12}", "7"], ["0.5", "8"], num_workers=0).scores == [1.0, 0.0]


def test_duplicates_are_scored_once_and_mapped_back():
    res = score([r"\boxed{2}", r"\boxed{3}", r"\boxed{2}", r"\boxed{2}"], ["2", "2", "3", "2"])
    assert res.scores == [1.0, 0.0, 0.0, 1.0]


def test_helpers():
    assert gold_candidates("42") == (r"\boxed{42}",)
    assert gold_candidates(r"$\frac{1}{2}$") == (r"$\frac{1}{2}$",)
    assert gold_candidates(["1", None, ""]) == (r"\boxed{1}",)
    assert (
        gold_candidates(None) is None
        and gold_candidates("  ") is None
        and gold_candidates(float("nan")) is None
    )
    assert (
        tex_single_token_args(r"\dfrac12 + \frac{a}b + \sqrt3 + \sqrt[3]x + \frac{1}{2}")
        == r"\dfrac{1}{2} + \frac{a}{b} + \sqrt{3} + \sqrt[3]{x} + \frac{1}{2}"
    )
    assert tex_single_token_args(r"\frac\pi2") == r"\frac{\pi}{2}"


def test_bad_params_are_errors():
    with pytest.raises(ValueError, match="fallback"):
        score(["1"], ["1"], fallback="first")
    with pytest.raises(ValueError, match="timeout_s"):
        score(["1"], ["1"], timeout_s=0)


def test_pool_settings_default_to_the_schema_and_come_from_the_config():
    params = inspect.signature(math_verify).parameters
    assert params["num_workers"].default == RewardConfig().num_workers
    assert params["timeout_s"].default == RewardConfig().timeout_s
    assert math_verify.from_config == ("num_workers", "timeout_s")  # build_reward passes them
