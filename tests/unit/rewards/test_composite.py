"""build_reward / CompositeReward: weights from YAML, parameter checks, components flow, merging."""

from __future__ import annotations

import sys
import types

import pytest
from omegaconf import OmegaConf

from logics_rl.config.schema import RewardConfig, RewardTermConfig
from logics_rl.registry import UnknownPluginError
from logics_rl.rewards import REWARDS, RewardInput, RewardResult, build_reward

YAML = """
reward:
  terms:
    - {name: math_verify, weight: 1.0}
    - {name: cosine_length, weight: 0.5, params: {max_length: 100}}
    - {name: repetition, weight: 2.0, params: {ngram_size: 2, penalty: -0.1}}
    - {name: format, weight: 0.25}
  timeout_s: 5.0
"""


def batch():
    return RewardInput.build(
        [r"\boxed{4}", "I think 5", r"\boxed{7} \boxed{7}"],
        ground_truths=["4", "4", "7"],
        response_token_ids=[[1, 2, 1, 2], [3, 4], [5, 6, 7]],
        response_lengths=[50, 100, 20],
        max_response_length=1000,
    )


def test_yaml_terms_weighted_sum_components_and_token_scores():
    cfg = OmegaConf.merge(OmegaConf.structured(RewardConfig), OmegaConf.create(YAML).reward)
    reward = build_reward(cfg)
    assert [t.label for t in reward.terms] == [
        "math_verify",
        "cosine_length",
        "repetition",
        "format",
    ]
    assert reward.terms[0].params["timeout_s"] == 5.0  # from RewardConfig, not in the term's params
    assert reward.terms[0].params["num_workers"] == 2
    res = reward(batch())
    c = res.components
    assert c["correct"] == [1.0, 0.0, 1.0]
    assert c["length"] == pytest.approx([0.0, 0.0, 0.0 + 0.0])  # correct: max (0); wrong at t=T: 0
    assert c["format"] == [1.0, 0.0, 0.0]  # the third has two boxes
    assert c["repetition"] == pytest.approx([-0.2, 0.0, 0.0])  # tokens 2,3 repeat the bigram (1,2)
    # Outcome part: 1*correct + 0.5*length + 2*0 (dense term) + 0.25*format.
    assert res.scores == pytest.approx([1.25, 0.0, 1.0])
    assert res.token_scores == [pytest.approx([0, 0, -0.2, -0.2]), [0, 0], [0, 0, 0]]  # 2 x -0.1
    assert res.totals == pytest.approx([0.85, 0.0, 1.0])
    assert res.counters["math_verify/timeout"] == 0


def test_later_terms_see_earlier_components():
    seen = {}

    def spy(b: RewardInput) -> list[float]:
        seen.update(b.components)
        return [0.0] * len(b)

    sys.modules["_spy_rewards"] = types.SimpleNamespace(spy=spy)  # an importable "pkg.module"
    reward = build_reward(
        RewardConfig(terms=[RewardTermConfig("format"), RewardTermConfig("_spy_rewards:spy")])
    )
    res = reward(RewardInput.build([r"\boxed{1}", "x"], components={"given": [5.0, 6.0]}))
    assert seen == {"given": [5.0, 6.0], "format": [1.0, 0.0]}
    assert res.components == {
        "format": [1.0, 0.0],
        "spy": [0.0, 0.0],
    }  # a plain list is logged by name


def test_unknown_param_names_the_term_and_the_nearest():
    cfg = RewardConfig(
        terms=[
            RewardTermConfig("math_verify"),
            RewardTermConfig("cosine_length", params={"max_lenght": 5}),
        ]
    )
    with pytest.raises(
        ValueError,
        match=r"reward term 1 \('cosine_length'\): unknown parameter 'max_lenght' \(did you mean 'max_length'\?\)",
    ):
        build_reward(cfg)
    with pytest.raises(ValueError, match="fallback='first' is not one of"):
        build_reward(
            RewardConfig(terms=[RewardTermConfig("math_verify", params={"fallback": "first"})])
        )
    with pytest.raises(UnknownPluginError, match="did you mean 'math_verify'"):
        build_reward(RewardConfig(terms=[RewardTermConfig("math_verfy")]))
    with pytest.raises(ValueError, match="empty"):
        build_reward(RewardConfig(terms=[]))


def test_a_length_term_without_a_correctness_term_before_it_is_a_build_error():
    with pytest.raises(
        ValueError, match=r"needs component\(s\) 'correct'.*terms before it: format"
    ):
        build_reward(
            RewardConfig(terms=[RewardTermConfig("format"), RewardTermConfig("cosine_length")])
        )
    with pytest.raises(ValueError, match="needs component"):
        build_reward(
            RewardConfig(terms=[RewardTermConfig("repetition", params={"mode": "sparse"})])
        )
    build_reward(RewardConfig(terms=[RewardTermConfig("repetition")]))  # dense needs no correctness


def test_a_failing_term_scores_zero_and_is_counted(caplog):
    @REWARDS.register("_test_broken", overwrite=True)
    def broken(b: RewardInput) -> RewardResult:
        raise RuntimeError("plugin bug")

    reward = build_reward(
        RewardConfig(
            terms=[RewardTermConfig("format", weight=2.0), RewardTermConfig("_test_broken")]
        )
    )
    res = reward(RewardInput.build([r"\boxed{1}", "x"]))
    assert res.scores == [2.0, 0.0]
    assert res.counters == {"reward/_test_broken/error": 2}
    assert "plugin bug" in caplog.text


def test_a_failing_correctness_term_still_feeds_later_terms(caplog):
    @REWARDS.register("_test_broken_correct", overwrite=True)
    def broken_correct(b: RewardInput) -> RewardResult:
        raise RuntimeError("verifier down")

    broken_correct.provides = ("correct",)
    cfg = RewardConfig(
        terms=[RewardTermConfig("_test_broken_correct"), RewardTermConfig("cosine_length")]
    )
    res = build_reward(cfg)(RewardInput.build(["a"], response_lengths=[0], max_response_length=10))
    assert res.components == {"correct": [0.0], "length": [-10.0]}  # scored as wrong, not a crash
    assert res.counters == {"reward/_test_broken_correct/error": 1}


def test_bad_plugin_output_is_a_counted_error_naming_the_term(caplog):
    @REWARDS.register("_test_short", overwrite=True)
    def short(b: RewardInput) -> list[float]:
        return [1.0]

    res = build_reward(RewardConfig(terms=[RewardTermConfig("_test_short")]))(
        RewardInput.build(["a", "b"])
    )
    assert res.scores == [0.0, 0.0] and res.counters == {"reward/_test_short/error": 2}
    assert "reward '_test_short': scores has 1 entries for a batch of 2" in caplog.text


def test_same_component_twice_is_prefixed_and_labels_are_unique():
    reward = build_reward(
        RewardConfig(
            terms=[
                RewardTermConfig("format"),
                RewardTermConfig("format", params={"exactly_one": False}),
            ]
        )
    )
    assert [t.label for t in reward.terms] == ["format", "format_2"]
    res = reward(RewardInput.build([r"\boxed{1}\boxed{2}"]))
    assert res.components == {"format": [0.0], "format_2/format": [1.0]}


def test_pool_settings_go_only_to_terms_that_ask_for_them():
    @REWARDS.register("_test_has_timeout", overwrite=True)
    def has_timeout(b: RewardInput, *, timeout_s: float = 99.0) -> list[float]:
        return [timeout_s] * len(b)

    @REWARDS.register("_test_asks", overwrite=True)
    def asks(b: RewardInput, *, timeout_s: float = 99.0) -> list[float]:
        return [timeout_s] * len(b)

    asks.from_config = ("timeout_s",)
    cfg = RewardConfig(
        terms=[
            RewardTermConfig("_test_has_timeout"),  # a parameter of that name is not enough
            RewardTermConfig("_test_asks"),
            RewardTermConfig("_test_asks", params={"timeout_s": 1.0}),  # its params win
        ],
        timeout_s=3.0,
    )
    assert [t.params for t in build_reward(cfg).terms] == [
        {},
        {"timeout_s": 3.0},
        {"timeout_s": 1.0},
    ]
    asks.from_config = ("timeout",)
    with pytest.raises(TypeError, match=r"reward term 1 \('_test_asks'\): from_config names"):
        build_reward(cfg)


def test_mappings_become_reward_configs_with_schema_defaults():
    reward = build_reward({"terms": [{"name": "format"}], "num_workers": 1})
    assert reward.terms[0].weight == RewardTermConfig().weight
    mv = build_reward({"terms": [{"name": "math_verify"}]}).terms[0]
    assert mv.params == {
        "num_workers": RewardConfig().num_workers,
        "timeout_s": RewardConfig().timeout_s,
    }
    with pytest.raises(
        ValueError, match=r"reward term 0: unknown key 'wieght' \(did you mean 'weight'\?\)"
    ):
        build_reward({"terms": [{"name": "format", "wieght": 2.0}]})
    with pytest.raises(ValueError, match=r"reward: unknown key 'timeout'"):
        build_reward({"terms": [{"name": "format"}], "timeout": 3.0})
