"""Types and helpers shared by the advantage estimators.

An estimator is a plain function ``fn(inp: AdvantageInput, **params) -> AdvantageOutput``
registered in ``ADVANTAGES``; its keyword parameters are its settings. B = sequences, T = response tokens (right padded).

Samples whose mask is all zero (e.g. dropped from the loss by a filter) take no part in any
statistic: they are not members of their group and get advantage 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from logics_rl.algorithms.masked import as_float_mask


@dataclass
class AdvantageInput:
    """What every estimator receives.

    token_rewards_BT: float [B, T]. The outcome reward sits on the last valid response token
        (see ``place_outcome_rewards``); dense rewards (e.g. a repetition penalty) on their tokens.
    mask_BT: [B, T] float or bool, 1 on response tokens that count.
    group_index_B: int64 [B]; samples with the same id were generated from the same prompt.
    """

    token_rewards_BT: Tensor
    mask_BT: Tensor
    group_index_B: Tensor

    def __post_init__(self) -> None:
        shape = tuple(self.token_rewards_BT.shape)
        if len(shape) != 2:
            raise ValueError(f"token_rewards_BT must be [B, T], got shape {shape}")
        if tuple(self.mask_BT.shape) != shape:
            raise ValueError(
                f"mask_BT shape {tuple(self.mask_BT.shape)} != token_rewards_BT {shape}"
            )
        if tuple(self.group_index_B.shape) != shape[:1]:
            raise ValueError(
                f"group_index_B shape {tuple(self.group_index_B.shape)} != (B,) = {shape[:1]}"
            )


@dataclass
class AdvantageOutput:
    """advantages_BT: [B, T], zero outside the mask."""

    advantages_BT: Tensor


def place_outcome_rewards(
    scores_B: Tensor, mask_BT: Tensor, token_scores_BT: Tensor | None = None
) -> Tensor:
    """Token rewards [B, T]: each score on its sequence's last valid token, plus dense terms.

    scores_B: [B] outcome scores. mask_BT: [B, T] response mask (float or bool; holes allowed,
    the last valid position is used). token_scores_BT: optional [B, T] dense per-token rewards,
    kept on valid tokens only. A row with no valid token has nowhere to put its score and is 0
    (it contributes nothing to training either way).
    """
    dtype = scores_B.dtype if scores_B.is_floating_point() else torch.float32
    valid_BT = mask_BT.bool()
    B, T = valid_BT.shape
    rewards_BT = torch.zeros(B, T, dtype=dtype, device=valid_BT.device)
    if T == 0:
        return rewards_BT
    pos_BT = torch.arange(T, device=valid_BT.device).expand(B, T)
    last_B = torch.where(valid_BT, pos_BT, -1).max(dim=1).values
    has_B = last_B >= 0
    rows = torch.arange(B, device=valid_BT.device)[has_B]
    rewards_BT[rows, last_B[has_B]] = scores_B.to(dtype)[has_B]
    if token_scores_BT is not None:
        rewards_BT = rewards_BT + token_scores_BT.to(dtype) * valid_BT.to(dtype)
    return rewards_BT


def sequence_scores(token_rewards_BT: Tensor, mask_BT: Tensor) -> Tensor:
    """[B] sum of token rewards over valid tokens (outcome score + dense terms)."""
    return (token_rewards_BT * as_float_mask(mask_BT, token_rewards_BT)).sum(dim=-1)


def valid_rows(mask_BT: Tensor) -> Tensor:
    """[B] bool: sequences with at least one valid token."""
    return mask_BT.bool().any(dim=-1)


@dataclass
class GroupStats:
    """Per-sample view of its group's statistics over valid members (all [B])."""

    count_B: Tensor  # valid members in the sample's group
    mean_B: Tensor
    sum_B: Tensor
    std_B: Tensor  # unbiased (like torch.std); 0 for groups with fewer than 2 valid members


def group_stats(scores_B: Tensor, group_index_B: Tensor, valid_B: Tensor) -> GroupStats:
    """Vectorised group statistics: ``unique`` + ``index_add`` instead of a loop over groups."""
    if scores_B.numel() == 0:
        z = scores_B.new_zeros(0)
        return GroupStats(z, z, z, z)
    _, inv_B = torch.unique(group_index_B, return_inverse=True)
    G = int(inv_B.max()) + 1
    w_B = valid_B.to(scores_B.dtype)
    zeros_G = scores_B.new_zeros(G)
    count_G = zeros_G.index_add(0, inv_B, w_B)
    sum_G = zeros_G.index_add(0, inv_B, scores_B * w_B)
    mean_G = sum_G / count_G.clamp(min=1.0)
    # Two passes (mean, then squared deviations) are stabler than E[x^2] - E[x]^2.
    dev_B = (scores_B - mean_G[inv_B]) * w_B
    sq_G = zeros_G.index_add(0, inv_B, dev_B**2)
    std_G = (sq_G / (count_G - 1.0).clamp(min=1.0)).sqrt()
    return GroupStats(count_G[inv_B], mean_G[inv_B], sum_G[inv_B], std_G[inv_B])


def broadcast(adv_B: Tensor, mask_BT: Tensor) -> Tensor:
    """A per-sequence value on every valid token: [B] -> [B, T], zero outside the mask."""
    return adv_B[:, None] * as_float_mask(mask_BT, adv_B)
