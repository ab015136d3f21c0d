"""Reducing a per-token loss [B, T] to the scalar that is back-propagated.

A mini-batch is split into micro-batches (token budget) and across data-parallel ranks. Every
normaliser here is a GLOBAL count over the whole mini-batch (``GlobalNorm``, computed once on
the controller or by an all-reduce), so each micro-batch returns its partial sum and

    sum over micro-batches and ranks of aggregate(loss_mb, mask_mb, mode, norm) == full-batch loss

exactly, gradient included, however the batch is split. (Averaging per-micro-batch means
instead would weight tokens by how the batch happened to be cut.)

Modes (n_i = valid tokens of sequence i, N = norm.num_tokens, S = norm.num_seqs):
    token-mean               sum_i sum_t l_it / N                DAPO (arXiv 2503.14476)
    seq-mean-token-mean      sum_i (sum_t l_it / n_i) / S        original GRPO (arXiv 2402.03300)
    seq-mean-token-sum       sum_i sum_t l_it / S
    seq-mean-token-sum-norm  sum_i sum_t l_it / (S * norm_const) Dr.GRPO (arXiv 2503.20783): a
                             constant (e.g. the max response length) instead of n_i, so long
                             and short answers get the same per-token weight. (verl divides by
                             norm_const only; the 1/S here is Dr.GRPO's 1/G.)
Sequences with no valid token contribute 0 and are not counted in S.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from logics_rl.algorithms.masked import as_float_mask, zero_outside
from logics_rl.config.schema import LossAggMode

LOSS_AGG_MODES = tuple(LossAggMode.values())


@dataclass(frozen=True)
class GlobalNorm:
    """Normalisers of one mini-batch, over all micro-batches and all data-parallel ranks.

    num_tokens: valid response tokens in the mini-batch.
    num_seqs: sequences in the mini-batch with at least one valid token.
    norm_const: the constant of ``seq-mean-token-sum-norm`` (e.g. the max response length).
    """

    num_tokens: int
    num_seqs: int
    norm_const: float = 1.0

    def __post_init__(self) -> None:
        if self.num_tokens < 0 or self.num_seqs < 0:
            raise ValueError(f"GlobalNorm counts must be >= 0, got {self}")
        if not self.norm_const > 0:
            raise ValueError(f"GlobalNorm.norm_const must be > 0, got {self.norm_const}")


def norm_counts(mask_BT: Tensor) -> Tensor:
    """[valid tokens, sequences with a valid token] of a mask [B, T], as float64 [2]: what
    data-parallel callers count on their shard and sum over the ranks."""
    valid_BT = mask_BT.bool()
    return torch.tensor([valid_BT.sum(), valid_BT.any(dim=-1).sum()], dtype=torch.float64)


def global_norm_of(counts: Tensor, norm_const: float = 1.0) -> GlobalNorm:
    """The ``GlobalNorm`` from summed ``norm_counts``."""
    return GlobalNorm(
        num_tokens=int(counts[0]), num_seqs=int(counts[1]), norm_const=float(norm_const)
    )


def aggregate(loss_BT: Tensor, mask_BT: Tensor, mode: str, norm: GlobalNorm) -> Tensor:
    """This micro-batch's share of the mini-batch loss (a scalar; see the module docstring).

    loss_BT: [B, T] per-token loss. mask_BT: [B, T] float or bool. With zero global counts
    (nothing valid anywhere) the result is 0 and still part of the graph.
    """
    if mode not in LOSS_AGG_MODES:
        raise ValueError(
            f"unknown loss_agg_mode {mode!r}; valid modes: {', '.join(LOSS_AGG_MODES)}"
        )
    loss_BT = zero_outside(loss_BT, mask_BT)
    if mode == "token-mean":
        return loss_BT.sum() / max(norm.num_tokens, 1)
    seq_sum_B = loss_BT.sum(dim=-1)
    if mode == "seq-mean-token-mean":
        seq_tokens_B = as_float_mask(mask_BT, loss_BT).sum(dim=-1)
        return (seq_sum_B / seq_tokens_B.clamp(min=1.0)).sum() / max(norm.num_seqs, 1)
    if mode == "seq-mean-token-sum":
        return seq_sum_B.sum() / max(norm.num_seqs, 1)
    return seq_sum_B.sum() / (max(norm.num_seqs, 1) * norm.norm_const)
