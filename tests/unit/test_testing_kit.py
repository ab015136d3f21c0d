"""The plugin contract kit on every built-in, on broken plugins, and on the example plugin package
installed from its own pyproject (entry points)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from logics_rl.filters import FilterDecision, Group
from logics_rl.rewards import RewardInput, RewardResult
from logics_rl.testing import check_filter, check_reward

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BUILTIN_REWARDS = [
    ("math_verify", {}),
    ("math_verify", {"fallback": "none"}),
    ("cosine_length", {}),
    ("cosine_length", {"correct_mode": "cosine", "max_length": 32}),
    ("repetition", {}),
    ("repetition", {"mode": "sparse", "ngram_size": 3}),
    ("overlong", {}),
    ("format", {}),
    ("format", {"require_think": True}),
]
BUILTIN_FILTERS = [
    ("zero_variance", {}),
    ("zero_variance", {"metric": "score"}),
    ("truncated", {}),
    ("truncated", {"mode": "mask"}),
    ("repetition", {"threshold": 0.2}),
    ("length", {"min_length": 2, "max_length": 20}),
]


@pytest.mark.parametrize(
    ("name", "params"), BUILTIN_REWARDS, ids=[f"{n}{p or ''}" for n, p in BUILTIN_REWARDS]
)
def test_builtin_rewards_pass_the_kit(name, params):
    results = check_reward(name, **params)
    assert set(results) >= {
        "typical",
        "empty batch",
        "1 MB response",
        "non-ASCII / emoji / surrogates",
        "None ground truths",
    }
    if name == "math_verify":
        assert results["typical"].scores == [1.0, 0.0, 1.0, 0.0, 0.0]
        assert results["None ground truths"].counters["math_verify/no_gold"] == 2


@pytest.mark.parametrize(
    ("name", "params"), BUILTIN_FILTERS, ids=[f"{n}{p or ''}" for n, p in BUILTIN_FILTERS]
)
def test_builtin_filters_pass_the_kit(name, params):
    decisions = check_filter(name, **params)
    if name == "zero_variance" and not params:
        assert decisions["all correct"] == FilterDecision(False, "all_correct")


# --------------------------------------------------------------------------- the kit catches bugs
def wrong_length(batch: RewardInput) -> list[float]:
    return [1.0]


def nan_score(batch: RewardInput) -> list[float]:
    return [float("nan")] * len(batch)


def crashes_on_none(batch: RewardInput) -> list[float]:
    return [float(len(r)) for r in batch.responses]


def mutates(batch: RewardInput) -> list[float]:
    batch.responses.reverse()
    return [0.0] * len(batch)


_calls = [0]


def not_deterministic(batch: RewardInput) -> list[float]:
    _calls[0] += 1
    return [float(_calls[0])] * len(batch)


def misaligned_tokens(batch: RewardInput) -> RewardResult:
    return RewardResult([0.0] * len(batch), token_scores=[[0.0] for _ in batch.responses])


def no_batch_arg(*, scale: float = 1.0) -> list[float]:
    return []


@pytest.mark.parametrize(
    ("fn", "params", "message"),
    [
        (
            wrong_length,
            {},
            "reward 'wrong_length' returned a bad result on the 'typical' batch: .*scores has 1 entries for a batch of 5",
        ),
        (nan_score, {}, r"scores\[0\] is not finite"),
        (
            crashes_on_none,
            {},
            "reward 'crashes_on_none' raised TypeError on the 'None response' batch",
        ),
        (mutates, {}, "modified its input batch"),
        (not_deterministic, {}, "not deterministic: scores differ"),
        (misaligned_tokens, {}, r"token_scores\[0\] has 1 entries but response 0 has \d+ tokens"),
        (wrong_length, {"scale": 2}, "does not accept .*unknown parameter 'scale'"),
        (no_batch_arg, {}, "first positional argument"),
    ],
)
def test_the_kit_catches_broken_rewards(fn, params, message):
    with pytest.raises(AssertionError, match=message):
        check_reward(fn, **params)


def no_reason(group: Group) -> FilterDecision:
    return FilterDecision(keep_group=len(group) > 3)


def wrong_mask(group: Group) -> FilterDecision:
    return FilterDecision(True, keep_samples=[True])


def returns_bool(group: Group) -> bool:
    return True


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (
            no_reason,
            "filter 'no_reason' returned a bad decision on the 'all wrong' group: .*without a reason",
        ),
        (wrong_mask, "keep_samples has 1 entries for a group of 5"),
        (returns_bool, "returned bool; expected a FilterDecision"),
    ],
)
def test_the_kit_catches_broken_filters(fn, message):
    with pytest.raises(AssertionError, match=message):
        check_filter(fn)


# --------------------------------------------------------------------------- example plugin package
def test_example_plugin_package_installs_and_resolves_by_entry_point(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(
        os.path.join(ROOT, "examples", "plugin_package"), src
    )  # keep build files out of the repo
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    script = textwrap.dedent(
        """
        from logics_rl.filters import FILTERS, Group
        from logics_rl.rewards import REWARDS, RewardInput
        from logics_rl.testing import check_filter, check_reward

        assert "keyword_bonus" in REWARDS.names() and "distinct_answers" in FILTERS.names()
        reward = REWARDS.get("keyword_bonus")
        flt = FILTERS.get("distinct_answers")
        assert reward.__module__ == "logics_rl_example_plugin"
        res = reward(RewardInput.build(["Let me verify and CHECK.", "just verify", "nothing"]))
        assert res.scores == [1.0, 0.5, 0.0], res.scores
        same = Group.build([r"\\boxed{4}", r"so \\boxed{4}"], scores=[1.0, 1.0])
        assert flt(same).keep_group is False and flt(same).reason == "too_few_distinct"
        assert flt(Group.build([r"\\boxed{4}", r"\\boxed{5}"])).keep_group is True
        check_reward("keyword_bonus", keywords=["verify"])
        check_filter("distinct_answers", min_distinct=2)
        print("plugin ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), ROOT])}
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "plugin ok" in out.stdout
