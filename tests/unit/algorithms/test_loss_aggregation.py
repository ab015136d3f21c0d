"""Loss aggregation: hand values per mode, and exactness under any micro-batch / rank split."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from logics_rl.algorithms.aggregation import (
    LOSS_AGG_MODES,
    GlobalNorm,
    aggregate,
    global_norm_of,
    norm_counts,
)

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
MASK = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]]).bool()


def test_global_norm_of_counts_tokens_and_nonempty_sequences():
    assert global_norm_of(norm_counts(MASK), norm_const=4) == GlobalNorm(
        num_tokens=5, num_seqs=2, norm_const=4.0
    )
    assert global_norm_of(norm_counts(MASK.float())) == GlobalNorm(5, 2, 1.0)


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("token-mean", (1 + 2 + 4 + 5 + 6) / 5),  # 18 / 5 tokens
        ("seq-mean-token-mean", ((1 + 2) / 2 + (4 + 5 + 6) / 3) / 2),  # empty row not counted
        ("seq-mean-token-sum", (3 + 15) / 2),
        ("seq-mean-token-sum-norm", (3 + 15) / (2 * 4)),
    ],
)
def test_aggregate_hand_values(mode, expected):
    out = aggregate(LOSS, MASK, mode, GlobalNorm(num_tokens=5, num_seqs=2, norm_const=4.0))
    assert out.item() == pytest.approx(expected)


def test_aggregate_uses_the_global_counts_not_the_local_ones():
    # The first row alone, as one micro-batch of the 3-row mini-batch above.
    norm = GlobalNorm(num_tokens=5, num_seqs=2, norm_const=4.0)
    assert aggregate(LOSS[:1], MASK[:1], "token-mean", norm).item() == pytest.approx(3 / 5)
    assert aggregate(LOSS[:1], MASK[:1], "seq-mean-token-mean", norm).item() == pytest.approx(
        1.5 / 2
    )


def test_aggregate_ignores_garbage_outside_the_mask():
    loss = LOSS.clone()
    loss[0, 2], loss[2, 0] = float("inf"), float("nan")
    for mode in LOSS_AGG_MODES:
        assert torch.isfinite(aggregate(loss, MASK, mode, GlobalNorm(5, 2, 4.0)))


def test_aggregate_with_nothing_valid_is_zero_and_differentiable():
    loss = torch.ones(2, 2, requires_grad=True)
    for mode in LOSS_AGG_MODES:
        out = aggregate(loss, torch.zeros(2, 2), mode, GlobalNorm(0, 0))
        assert out.item() == 0.0 and out.requires_grad


def test_unknown_mode_lists_the_valid_modes():
    with pytest.raises(
        ValueError,
        match="token-mean, seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm",
    ):
        aggregate(LOSS, MASK, "seq-mean", GlobalNorm(5, 2))


@pytest.mark.parametrize(
    "kwargs", [dict(num_tokens=-1, num_seqs=0), dict(num_tokens=1, num_seqs=1, norm_const=0.0)]
)
def test_global_norm_validates(kwargs):
    with pytest.raises(ValueError):
        GlobalNorm(**kwargs)


@st.composite
def split_batches(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    B = draw(st.integers(1, 8))
    T = draw(st.integers(1, 6))
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    holes = torch.rand(B, T, generator=g) < 0.15  # masked samples / holes, not only padding
    mask = (torch.arange(T)[None, :] < lengths[:, None]) & ~holes
    # Rows go to rank 0 or rank 1, then each rank cuts its rows into micro-batches.
    rank_of = draw(st.lists(st.integers(0, 1), min_size=B, max_size=B))
    cuts = draw(st.lists(st.integers(1, B), max_size=3))
    return seed, B, T, mask, rank_of, cuts


def micro_batches(rows: list[int], cuts: list[int]) -> list[list[int]]:
    bounds = sorted({c for c in cuts if 0 < c < len(rows)})
    edges = [0, *bounds, len(rows)]
    return [rows[a:b] for a, b in zip(edges, edges[1:])]


@settings(max_examples=60, deadline=None)
@given(split_batches(), st.sampled_from(LOSS_AGG_MODES), st.floats(0.5, 64.0))
def test_sum_over_micro_batches_and_ranks_equals_the_full_batch(batch, mode, norm_const):
    seed, B, T, mask, rank_of, cuts = batch
    g = torch.Generator().manual_seed(seed + 1)
    theta = torch.randn(B, T, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(B, T, generator=g, dtype=torch.float64)
    per_token = lambda rows: torch.tanh(theta[rows]) * weights[rows]  # noqa: E731

    norm = global_norm_of(norm_counts(mask), norm_const)
    full = aggregate(per_token(list(range(B))), mask, mode, norm)
    (full_grad,) = torch.autograd.grad(full, theta)

    total = torch.zeros((), dtype=torch.float64)
    for rank in (0, 1):
        rows = [i for i in range(B) if rank_of[i] == rank]
        for mb in micro_batches(rows, cuts):
            total = total + aggregate(per_token(mb), mask[mb], mode, norm)
    (split_grad,) = torch.autograd.grad(total, theta)  # every row is in exactly one micro-batch
    torch.testing.assert_close(total, full.detach())
    torch.testing.assert_close(split_grad, full_grad)
