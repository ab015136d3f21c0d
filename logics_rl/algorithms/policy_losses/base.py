"""Types and helpers shared by the policy losses.

A policy loss is a plain function ``fn(inp: PolicyLossInput, **params) -> PolicyLossOutput``
registered in ``POLICY_LOSSES``; its keyword parameters are its settings. It returns the per-token loss, not an
aggregate: ``aggregation.aggregate`` reduces it with the configured mode and the global norm.

Metrics every loss returns (scalar tensors, detached; means over valid tokens of the call):
    clip_frac_high  tokens whose clipped branch is active at the upper bound (strictly above it)
    clip_frac_low   ... at the lower bound (strictly below it)
    ppo_kl          mean of old_logp - logp (the k1 estimate of KL(old || new))
    ratio_mean      mean importance ratio
    ratio_max       max importance ratio (0 when there is no valid token; ratios are > 0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from logics_rl.algorithms.masked import as_float_mask, masked_mean


@dataclass
class PolicyLossInput:
    """All [B, T]. logp_BT requires grad; the others are constants.

    old_logp_BT: behaviour-policy log-probs from the train engine before this update. On-policy
        (one update per batch) callers pass ``logp_BT.detach()``: the ratio is then exactly 1
        and its gradient is the policy gradient.
    mask_BT: float or bool, 1 on tokens that count.
    """

    logp_BT: Tensor
    old_logp_BT: Tensor
    advantages_BT: Tensor
    mask_BT: Tensor

    def __post_init__(self) -> None:
        shape = tuple(self.logp_BT.shape)
        for name in ("old_logp_BT", "advantages_BT", "mask_BT"):
            other = tuple(getattr(self, name).shape)
            if other != shape:
                raise ValueError(f"{name} shape {other} != logp_BT shape {shape}")


@dataclass
class PolicyLossOutput:
    """loss_BT: [B, T] per-token loss, 0 outside the mask. metrics: scalar tensors."""

    loss_BT: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


def clipped_surrogate(
    ratio_BT: Tensor, adv_BT: Tensor, clip_low: float, clip_high: float
) -> tuple[Tensor, Tensor, Tensor]:
    """PPO's pessimistic surrogate max(-A r, -A clip(r, 1 - low, 1 + high)), written by cases.

    Returns (loss_BT, clipped_high_BT, clipped_low_BT). The clipped branch is active only for
    A > 0 and r > 1 + high, or A < 0 and r < 1 - low; there the loss is the constant
    -A (1 +- eps) and has zero gradient. Everywhere else, including r exactly at a bound, the loss
    is -A r with the full gradient (the max form gives the same values; writing the cases makes the
    boundary explicit instead of relying on how autograd splits ties).
    """
    high_BT = (adv_BT > 0) & (ratio_BT > 1.0 + clip_high)
    low_BT = (adv_BT < 0) & (ratio_BT < 1.0 - clip_low)
    bound_BT = torch.where(high_BT, 1.0 + clip_high, 1.0 - clip_low).to(ratio_BT.dtype)
    loss_BT = torch.where(high_BT | low_BT, -adv_BT * bound_BT, -adv_BT * ratio_BT)
    return loss_BT, high_BT, low_BT


@torch.no_grad()
def common_metrics(
    log_ratio_BT: Tensor,
    ratio_BT: Tensor,
    clipped_high_BT: Tensor,
    clipped_low_BT: Tensor,
    mask_BT: Tensor,
) -> dict[str, Tensor]:
    """The metrics every loss reports (see the module docstring)."""
    m_BT = as_float_mask(mask_BT, ratio_BT)
    return {
        "clip_frac_high": masked_mean(clipped_high_BT.to(m_BT.dtype), m_BT),
        "clip_frac_low": masked_mean(clipped_low_BT.to(m_BT.dtype), m_BT),
        "ppo_kl": masked_mean(-log_ratio_BT, m_BT),
        "ratio_mean": masked_mean(ratio_BT, m_BT),
        "ratio_max": torch.where(m_BT > 0, ratio_BT, torch.zeros_like(ratio_BT)).max()
        if ratio_BT.numel()
        else ratio_BT.new_zeros(()),
    }
