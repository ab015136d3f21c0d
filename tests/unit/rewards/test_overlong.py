"""overlong: DAPO soft punishment in its three regions and at the boundaries."""

from __future__ import annotations

import pytest

from logics_rl.rewards import RewardInput, overlong


def score(lengths, **params):
    b = RewardInput.build(
        ["x"] * len(lengths), response_lengths=lengths, max_response_length=20_480
    )
    return overlong(b, **params).scores


def test_dapo_regions_and_boundaries():
    # DAPO: L_max = 20480, L_cache = 4096, soft region (16384, 20480).
    got = score([0, 16_383, 16_384, 16_385, 18_432, 20_479, 20_480, 25_000], cache_length=4096)
    assert got == pytest.approx([0.0, 0.0, 0.0, -1 / 4096, -0.5, -4095 / 4096, -1.0, -1.0])


def test_defaults_and_penalty_factor():
    # cache_length defaults to 20% of max_length (the batch limit unless given).
    assert score([800, 900, 1000], max_length=1000) == pytest.approx([0.0, -0.5, -1.0])
    assert score([900], max_length=1000, penalty_factor=2.0) == pytest.approx([-1.0])
    assert score([16_384 + 2048]) == pytest.approx([-0.5])  # batch limit 20480, cache 4096


def test_bad_cache_length():
    with pytest.raises(ValueError, match="cache_length"):
        score([1], max_length=100, cache_length=200)
