"""Advantage estimators: hand-computed values, group semantics, invariances."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from logics_rl.algorithms import ADVANTAGES
from logics_rl.algorithms.advantages import AdvantageInput, place_outcome_rewards
from logics_rl.algorithms.advantages.returns import discounted_returns

EPS = 1e-6  # the estimators' default epsilon, written into the expected values below


def close(a, b, atol=1e-6):
    torch.testing.assert_close(a, torch.as_tensor(b, dtype=a.dtype), atol=atol, rtol=1e-5)


def outcome_input(scores, lengths, groups, T=3):
    """Right-padded rows with the score on the last valid token."""
    mask = torch.tensor([[1.0] * n + [0.0] * (T - n) for n in lengths])
    return AdvantageInput(
        place_outcome_rewards(torch.tensor(scores), mask), mask, torch.tensor(groups)
    )


# --------------------------------------------------------------------------- place_outcome_rewards
def test_place_outcome_rewards_last_token_and_dense_terms():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0]]).bool()
    dense = torch.tensor([[0.1, 0.2, 0.3, 9.0], [0.5, 9.0, 9.0, 9.0], [0.0] * 4, [1.0] * 4])
    out = place_outcome_rewards(torch.tensor([1.0, 2.0, 3.0, 4.0]), mask, dense)
    expected = [
        [0.1, 0.2, 1.3, 0.0],  # score on t=2, dense kept on valid tokens only
        [2.5, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 3.0],  # a hole: the last valid position is t=3
        [0.0, 0.0, 0.0, 0.0],  # no valid token: nowhere to put the score
    ]
    close(out, expected)
    assert out.dtype == torch.float32


def test_place_outcome_rewards_integer_scores_become_float():
    out = place_outcome_rewards(torch.tensor([1, 0]), torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    assert out.dtype == torch.float32
    close(out, [[0.0, 1.0], [0.0, 0.0]])


# --------------------------------------------------------------------------- grpo
def test_grpo_hand_values():
    # group 7: scores 1, 0 -> mean .5, unbiased std sqrt(.5); group 3: one sample; group 5: equal.
    inp = outcome_input([1.0, 0.0, 1.0, 1.0, 1.0], [2, 3, 1, 1, 2], [7, 7, 3, 5, 5])
    out = ADVANTAGES.get("grpo")(inp)
    a = 0.5 / (math.sqrt(0.5) + EPS)
    expected = [[a, a, 0], [-a, -a, -a], [0, 0, 0], [0, 0, 0], [0, 0, 0]]
    close(out.advantages_BT, expected)


def test_grpo_three_member_group_unbiased_std():
    inp = outcome_input([1.0, 0.0, 1.0], [1, 1, 1], [0, 0, 0], T=1)
    out = ADVANTAGES.get("grpo")(inp, epsilon=0.0)
    # mean 2/3; unbiased var = (1/9 + 4/9 + 1/9) / 2 = 1/3
    s = math.sqrt(1 / 3)
    close(out.advantages_BT, [[(1 / 3) / s], [(-2 / 3) / s], [(1 / 3) / s]])


def test_dr_grpo_no_std_and_dense_rewards_count():
    mask = torch.ones(2, 2)
    rewards = torch.tensor([[-0.5, 1.0], [0.0, 0.0]])  # a dense penalty on token 0 of row 0
    inp = AdvantageInput(rewards, mask, torch.tensor([0, 0]))
    out = ADVANTAGES.get("grpo")(inp, norm_by_std=False)
    close(out.advantages_BT, [[0.25, 0.25], [-0.25, -0.25]])  # scores .5, 0; mean .25


def test_grpo_masked_sample_is_not_a_group_member():
    # Row 2 was dropped from the loss (all-zero mask): it must not shift its group's baseline.
    rewards = torch.tensor([[1.0], [0.0], [5.0]])
    mask = torch.tensor([[1.0], [1.0], [0.0]])
    out = ADVANTAGES.get("grpo")(
        AdvantageInput(rewards, mask, torch.tensor([1, 1, 1])), norm_by_std=False
    )
    close(out.advantages_BT, [[0.5], [-0.5], [0.0]])


def test_grpo_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="group_index_B"):
        AdvantageInput(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="mask_BT"):
        AdvantageInput(torch.zeros(2, 3), torch.ones(2, 2), torch.zeros(2, dtype=torch.long))


# --------------------------------------------------------------------------- rloo
def test_rloo_hand_values():
    inp = outcome_input([3.0, 1.0, 2.0, 4.0], [1, 2, 1, 1], [0, 0, 0, 1], T=2)
    out = ADVANTAGES.get("rloo")(inp)
    # 3 - (1+2)/2 = 1.5 ; 1 - (3+2)/2 = -1.5 ; 2 - (3+1)/2 = 0 ; lone sample -> 0
    close(out.advantages_BT, [[1.5, 0.0], [-1.5, -1.5], [0.0, 0.0], [0.0, 0.0]])


# --------------------------------------------------------------------------- reinforce++
def test_reinforce_plus_plus_discounted_and_whitened():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    out = ADVANTAGES.get("reinforce_plus_plus")(
        AdvantageInput(rewards, mask, torch.tensor([0, 1])), gamma=0.5
    )
    # returns [[.25, .5, 1], [.5, 1, 0]]; valid returns .25 .5 1 .5 1: mean .65, squared deviations sum .45, unbiased var .1125
    std = math.sqrt(0.1125) + EPS
    close(
        out.advantages_BT, [[-0.4 / std, -0.15 / std, 0.35 / std], [-0.15 / std, 0.35 / std, 0.0]]
    )


def test_holes_in_the_mask_are_skipped_by_the_return_recursion():
    # A masked position inside a response (e.g. a tool output) neither earns reward nor blocks
    # the return recursion: the running value is carried across it.
    rewards = torch.tensor([[0.5, 9.0, 1.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    close(discounted_returns(rewards, mask, 0.5), [[0.5 + 0.5 * 1.0, 0.0, 1.0]])


def test_reinforce_plus_plus_baseline_hand_values():
    # group 0: scores 1 (2 tokens), 0 (1 token) -> centred .5, -.5 ; group 1: one sample -> 0
    inp = outcome_input([1.0, 0.0, 1.0], [2, 1, 2], [0, 0, 1])
    out = ADVANTAGES.get("reinforce_plus_plus_baseline")(inp)
    # token values .5 .5 -.5 0 0: mean .1, deviations .4 .4 -.6 -.1 -.1, squares sum .7, var .175
    std = math.sqrt(0.175) + EPS
    close(
        out.advantages_BT,
        [[0.4 / std, 0.4 / std, 0], [-0.6 / std, 0, 0], [-0.1 / std, -0.1 / std, 0]],
    )


# --------------------------------------------------------------------------- properties
ESTIMATORS = ["grpo", "rloo", "reinforce_plus_plus", "reinforce_plus_plus_baseline"]


@st.composite
def grouped_batches(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    B = draw(st.integers(1, 10))
    T = draw(st.integers(1, 5))
    groups = draw(st.lists(st.integers(0, 3), min_size=B, max_size=B))
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    scores = torch.randint(0, 3, (B,), generator=g).float()
    dense = torch.randn(B, T, generator=g) * 0.1
    rewards = place_outcome_rewards(scores, mask, dense)
    perm = torch.randperm(B, generator=g)
    return AdvantageInput(rewards, mask, torch.tensor(groups)), perm


@settings(max_examples=30, deadline=None)
@given(grouped_batches(), st.sampled_from(ESTIMATORS))
def test_permuting_rows_permutes_advantages(batch, name):
    inp, perm = batch
    relabel = {0: 11, 1: -4, 2: 1000, 3: 5}  # group ids are labels, not positions
    groups = torch.tensor([relabel[int(i)] for i in inp.group_index_B[perm]])
    permuted = AdvantageInput(inp.token_rewards_BT[perm], inp.mask_BT[perm], groups)
    params = {"gamma": 0.9} if name == "reinforce_plus_plus" else {}
    a = ADVANTAGES.get(name)(inp, **params)
    b = ADVANTAGES.get(name)(permuted, **params)
    torch.testing.assert_close(b.advantages_BT, a.advantages_BT[perm], atol=1e-5, rtol=1e-5)
    assert torch.all(a.advantages_BT[inp.mask_BT == 0] == 0)


def naive_group_advantage(
    inp: AdvantageInput, kind: str, norm_by_std: bool, eps: float
) -> torch.Tensor:
    """Loop-per-sample oracle for grpo / rloo, written independently of the estimator code."""
    scores = [
        float((inp.token_rewards_BT[i] * inp.mask_BT[i]).sum()) for i in range(len(inp.mask_BT))
    ]
    valid = [bool(inp.mask_BT[i].sum() > 0) for i in range(len(inp.mask_BT))]
    adv = []
    for i, gi in enumerate(inp.group_index_B.tolist()):
        members = [j for j, gj in enumerate(inp.group_index_B.tolist()) if gj == gi and valid[j]]
        if not valid[i] or len(members) < 2:
            adv.append(0.0)
            continue
        xs = torch.tensor([scores[j] for j in members], dtype=torch.float64)
        if kind == "rloo":
            adv.append(scores[i] - (xs.sum().item() - scores[i]) / (len(members) - 1))
        else:
            a = scores[i] - xs.mean().item()
            adv.append(a / (xs.std().item() + eps) if norm_by_std else a)
    return torch.tensor(adv)[:, None] * inp.mask_BT


@settings(max_examples=30, deadline=None)
@given(grouped_batches(), st.sampled_from([("grpo", True), ("grpo", False), ("rloo", False)]))
def test_vectorised_group_estimators_match_a_loop(batch, case):
    inp, _ = batch
    name, norm_by_std = case
    params = {"norm_by_std": norm_by_std} if name == "grpo" else {}
    out = ADVANTAGES.get(name)(inp, **params)
    expected = naive_group_advantage(inp, name, norm_by_std, EPS)
    torch.testing.assert_close(out.advantages_BT, expected.float(), atol=1e-4, rtol=1e-4)
