"""FilterChain: order, what later filters see, composition of sample decisions, counts, build errors."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from logics_rl.config.schema import Config, FilterTermConfig
from logics_rl.filters import FILTERS, FilterDecision, Group, build_filters
from logics_rl.registry import UnknownPluginError


def group(correct, truncated=None, lengths=None):
    n = len(correct)
    return Group.build(
        [f"r{i}" for i in range(n)],
        scores=correct,
        components={"correct": correct},
        truncated=truncated,
        response_lengths=lengths or [10] * n,
        max_response_length=100,
    )


def test_dapo_chain_counts_and_what_zero_variance_sees():
    chain = build_filters([FilterTermConfig("truncated"), FilterTermConfig("zero_variance")])
    groups = [
        group([1.0, 0.0, 1.0]),  # kept
        group(
            [1.0, 1.0, 0.0], [False, False, True]
        ),  # the wrong one is truncated -> all correct left
        group([0.0, 0.0]),  # all wrong
        group([1.0, 0.0, 0.0, 1.0], [True, False, False, False]),  # one truncated, still mixed
        group([0.0, 1.0], [True, True]),  # all truncated
    ]
    decisions, counts = chain.apply(groups)
    assert [d.keep_group for d in decisions] == [True, False, False, True, False]
    assert [d.reason for d in decisions] == [
        None,
        "zero_variance/all_correct",
        "zero_variance/all_wrong",
        None,
        "truncated/all_truncated",
    ]
    assert (
        decisions[3].keep_samples == [False, True, True, True]
        and decisions[3].sample_reason == "truncated"
    )
    assert decisions[0].keep_samples is None and decisions[0].mask_samples is None
    assert counts == {
        "filter/truncated/samples_dropped/truncated": 2,  # groups 2 and 4
        "filter/zero_variance/all_correct": 1,
        "filter/zero_variance/all_wrong": 1,
        "filter/truncated/all_truncated": 1,
    }


def test_a_dropped_group_is_not_shown_to_later_filters_and_masks_compose():
    seen = []

    @FILTERS.register("_test_record", overwrite=True)
    def record(g: Group) -> FilterDecision:
        seen.append(list(g.responses))
        return FilterDecision(
            True, mask_samples=[r == "r0" for r in g.responses], sample_reason="first"
        )

    cfgs = [
        FilterTermConfig("zero_variance"),
        FilterTermConfig("truncated", {"mode": "mask"}),
        FilterTermConfig("_test_record"),
    ]
    decisions, counts = build_filters(cfgs).apply(
        [group([1.0, 1.0]), group([1.0, 0.0, 1.0], [False, False, True])]
    )
    assert seen == [
        ["r0", "r1", "r2"]
    ]  # only the second group reached it; masked samples stay visible
    assert decisions[1].mask_samples == [True, False, True]
    assert decisions[1].sample_reason == "truncated,_test_record"
    assert counts["filter/truncated/samples_masked/truncated"] == 1
    assert counts["filter/_test_record/samples_masked/first"] == 1


def test_removed_samples_are_hidden_from_later_filters_and_drops_compose():
    chain = build_filters([{"name": "length", "params": {"max_length": 50}}, {"name": "truncated"}])
    g = group([1.0, 0.0, 1.0, 0.0], [False, False, True, True], [10, 60, 20, 70])
    (d,), counts = chain.apply([g])
    assert d.keep_samples == [True, False, False, False]
    assert counts == {
        "filter/length/samples_dropped/too_long": 2,
        "filter/truncated/samples_dropped/truncated": 1,
    }


def test_a_group_left_without_samples_is_dropped():
    @FILTERS.register("_test_drop_rest", overwrite=True)
    def drop_rest(g: Group) -> FilterDecision:  # removes samples but does not drop the group itself
        return FilterDecision(True, keep_samples=[False] * len(g), sample_reason="all_gone")

    chain = build_filters(
        [{"name": "length", "params": {"max_length": 50}}, {"name": "_test_drop_rest"}]
    )
    (d,), counts = chain.apply([group([1.0, 0.0], None, [10, 60])])
    assert d.keep_group is False and d.reason == "_test_drop_rest/all_samples_dropped"
    assert counts == {
        "filter/length/samples_dropped/too_long": 1,
        "filter/_test_drop_rest/samples_dropped/all_gone": 1,
        "filter/_test_drop_rest/all_samples_dropped": 1,
    }


def test_empty_chain_keeps_everything_and_omegaconf_lists_work():
    decisions, counts = build_filters(None).apply([group([1.0, 1.0])])
    assert decisions == [FilterDecision(True)] and counts == {}
    cfg = OmegaConf.merge(
        OmegaConf.structured(Config),
        OmegaConf.create({"filters": [{"name": "zero_variance", "params": {"metric": "score"}}]}),
    )
    chain = build_filters(cfg.filters)
    assert chain.terms[0].params == {"metric": "score"}
    assert chain.apply([group([0.0, 0.0])])[1] == {"filter/zero_variance/same_score": 1}


def test_build_errors_name_the_filter_and_the_nearest():
    with pytest.raises(
        ValueError,
        match=r"filter 1 \('truncated'\): unknown parameter 'mod' \(did you mean 'mode'\?\)",
    ):
        build_filters(
            [FilterTermConfig("zero_variance"), FilterTermConfig("truncated", {"mod": "mask"})]
        )
    with pytest.raises(ValueError, match="mode='cut' is not one of 'drop', 'mask'"):
        build_filters([FilterTermConfig("truncated", {"mode": "cut"})])
    with pytest.raises(UnknownPluginError, match="did you mean 'zero_variance'"):
        build_filters([FilterTermConfig("zero_varience")])


def test_a_bad_decision_names_the_filter():
    @FILTERS.register("_test_bad", overwrite=True)
    def bad(g: Group) -> FilterDecision:
        return FilterDecision(False)

    with pytest.raises(ValueError, match="filter '_test_bad' dropped a group without a reason"):
        build_filters([FilterTermConfig("_test_bad")]).apply([group([1.0, 0.0])])


def test_mappings_become_filter_term_configs_with_schema_defaults():
    chain = build_filters([{"params": {"metric": "score"}}])  # name: the schema's default
    assert [t.name for t in chain.terms] == [FilterTermConfig().name]
    with pytest.raises(
        ValueError, match=r"filter 0: unknown key 'parms' \(did you mean 'params'\?\)"
    ):
        build_filters([{"name": "truncated", "parms": {"mode": "mask"}}])
    with pytest.raises(TypeError, match="filter 0 must be a FilterTermConfig or a mapping"):
        build_filters(["truncated"])
