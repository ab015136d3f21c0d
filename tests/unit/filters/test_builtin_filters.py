"""The built-in filters, one group at a time."""

from __future__ import annotations

import pytest

from logics_rl.filters import (
    FilterDecision,
    Group,
    decide,
    length,
    repetition,
    truncated,
    zero_variance,
)


def group(correct, truncated_=None, lengths=None, responses=None, **components):
    n = len(correct)
    return Group.build(
        responses if responses is not None else [f"r{i}" for i in range(n)],
        scores=[2 * c - 1 for c in correct],
        components={"correct": correct, **components},
        response_lengths=lengths if lengths is not None else [10] * n,
        truncated=truncated_,
        max_response_length=100,
    )


def test_zero_variance():
    assert zero_variance(group([1.0, 0.0, 1.0])) == FilterDecision(keep_group=True)
    assert zero_variance(group([1.0, 1.0])) == FilterDecision(False, "all_correct")
    assert zero_variance(group([0.0, 0.0, 0.0])) == FilterDecision(False, "all_wrong")
    assert zero_variance(group([1.0])) == FilterDecision(
        False, "all_correct"
    )  # one sample: no variance
    g = group([1.0, 1.0], length=[0.1, 0.3])
    assert zero_variance(g, metric="length") == FilterDecision(True)
    assert zero_variance(g, metric="length", tol=0.5) == FilterDecision(False, "same_length")
    assert zero_variance(g, metric="score") == FilterDecision(False, "same_score")
    with pytest.raises(KeyError, match="no component 'acc'; available: score, correct, length"):
        zero_variance(g, metric="acc")


def test_truncated_drop_and_mask():
    g = group([1.0, 0.0, 1.0], truncated_=[False, True, False])
    assert truncated(g) == FilterDecision(
        True, keep_samples=[True, False, True], sample_reason="truncated"
    )
    assert truncated(g, mode="mask") == FilterDecision(
        True, mask_samples=[False, True, False], sample_reason="truncated"
    )
    assert truncated(group([1.0, 0.0], truncated_=[True, True])) == FilterDecision(
        False, "all_truncated"
    )
    assert truncated(group([1.0, 0.0])) == FilterDecision(True)


def test_repetition_uses_the_component_or_the_text():
    g = group([1.0, 0.0, 0.0], repetition_ratio=[0.1, 0.9, 0.5])
    assert repetition(g) == FilterDecision(
        True, keep_samples=[True, False, True], sample_reason="repetitive"
    )
    assert repetition(g, threshold=0.05, mode="mask").mask_samples == [True, True, True]
    loop = "I will check again. " * 40
    g = group([0.0, 1.0], responses=[loop, "a short fresh answer with no loops at all"])
    assert repetition(g, ngram_size=4).keep_samples == [False, True]
    assert repetition(group([0.0], responses=[loop]), ngram_size=4) == FilterDecision(
        False, "all_repetitive"
    )


def test_length_bounds():
    g = group([1.0, 0.0, 1.0, 0.0], lengths=[5, 50, 500, 100])
    assert length(g, min_length=10, max_length=100) == FilterDecision(
        True, keep_samples=[False, True, False, True], sample_reason="out_of_bounds"
    )
    assert length(g, max_length=100).sample_reason == "too_long"
    assert length(g, min_length=10, mode="mask") == FilterDecision(
        True, mask_samples=[True, False, False, False], sample_reason="too_short"
    )
    assert length(g, min_length=1000) == FilterDecision(False, "all_out_of_bounds")
    with pytest.raises(ValueError, match="max_length"):
        length(g, min_length=10, max_length=5)


def test_decide_keeps_masks_removes_or_drops():
    assert decide([False, False], "drop", "odd") == FilterDecision(True)
    assert decide([False, False], "mask", "odd") == FilterDecision(True)
    assert decide([True, False], "mask", "odd") == FilterDecision(
        True, mask_samples=[True, False], sample_reason="odd"
    )
    assert decide([True, True], "mask", "odd") == FilterDecision(
        True, mask_samples=[True, True], sample_reason="odd"
    )  # masking never drops the group
    assert decide([True, False], "drop", "odd") == FilterDecision(
        True, keep_samples=[False, True], sample_reason="odd"
    )
    assert decide([True, True], "drop", "odd") == FilterDecision(False, "all_odd")
    assert decide([True], "drop", "odd", group_reason="gone") == FilterDecision(False, "gone")
