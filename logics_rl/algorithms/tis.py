"""Truncated importance sampling (TIS) for the rollout / train-engine mismatch.

Yao et al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training"
(fengyao.notion.site/off-policy-rl). The rollout engine (vLLM, other kernels, other precision)
samples from pi_rollout, not from the train engine's pi_old, so the update is off-policy even
with one step per batch. Each token's loss is reweighted by the truncated ratio

    w_t = sg[min(pi_old / pi_rollout, C)] = sg[min(exp(old_logp - rollout_logp), C)]

Truncation at C bounds the variance; the stop-gradient keeps w a constant. Composes with any
policy loss (it multiplies the per-token loss).

Shapes: loss_BT, old_logp_BT, rollout_logp_BT, mask_BT [B, T] -> loss_BT [B, T].
Metrics (token means): ``tis_weight_mean``, ``tis_clip_frac`` (tokens with ratio > C).
"""

from __future__ import annotations

import torch
from torch import Tensor

from logics_rl.algorithms.masked import as_float_mask, masked_mean, zero_outside

# exp() of a log-ratio beyond this overflows float32 long before it matters: the weight is capped.
_LOG_RATIO_CLAMP = 20.0


def tis_weights(old_logp_BT: Tensor, rollout_logp_BT: Tensor, cap: float) -> tuple[Tensor, Tensor]:
    """(weight_BT, truncated_BT): the detached truncated ratio and where the cap is active."""
    if cap <= 0:
        raise ValueError(f"policy_loss.tis_cap must be > 0, got {cap}")
    log_ratio_BT = (
        (old_logp_BT - rollout_logp_BT).detach().clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    )
    ratio_BT = torch.exp(log_ratio_BT)
    return ratio_BT.clamp(max=cap), ratio_BT > cap


def apply_tis(
    loss_BT: Tensor, old_logp_BT: Tensor, rollout_logp_BT: Tensor, mask_BT: Tensor, cap: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """The per-token loss times the TIS weight, plus the TIS metrics."""
    weight_BT, truncated_BT = tis_weights(old_logp_BT, rollout_logp_BT, cap)
    weight_BT = weight_BT.to(loss_BT.dtype)
    m_BT = as_float_mask(mask_BT, loss_BT)
    metrics = {
        "tis_weight_mean": masked_mean(weight_BT, m_BT),
        "tis_clip_frac": masked_mean(truncated_BT.to(m_BT.dtype), m_BT),
    }
    return zero_outside(loss_BT * weight_BT, m_BT), metrics
