"""PPO clipped surrogate with decoupled clip range (DAPO clip-higher) and dual clip.

PPO: Schulman et al. 2017, arXiv 1707.06347. Clip-higher: DAPO, arXiv 2503.14476 — a wider upper
bound (1 + 0.28) lets low-probability tokens grow, which keeps entropy from collapsing.
Dual clip: Ye et al. 2020, arXiv 1912.09729 — for A < 0 a ratio far above 1 would make the loss
unbounded; it is capped at -A * c (verl's ``clip_ratio_c``):

    r       = exp(clamp(logp - old_logp, +-log_ratio_clamp))
    L       = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))
    L       = min(L, -A c)            for A < 0 (dual clip; constant, zero gradient where active)

Shapes: all inputs [B, T] -> loss_BT [B, T]. Extra metric: ``dual_clip_frac``.
"""

from __future__ import annotations

import torch

from logics_rl.algorithms.masked import as_float_mask, masked_mean, zero_outside
from logics_rl.algorithms.policy_losses.base import (
    PolicyLossInput,
    PolicyLossOutput,
    clipped_surrogate,
    common_metrics,
)
from logics_rl.algorithms.registries import POLICY_LOSSES


@POLICY_LOSSES.register("ppo_clip")
def ppo_clip(
    inp: PolicyLossInput,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip_c: float | None = 3.0,
    log_ratio_clamp: float = 20.0,
) -> PolicyLossOutput:
    """clip_low / clip_high: epsilon_low / epsilon_high (DAPO clip-higher: 0.28 high).
    dual_clip_c: the dual-clip bound for negative advantages (> 1), None disables it."""
    c = dual_clip_c
    if c is not None and c <= 1.0:
        raise ValueError(f"policy_loss dual_clip_c must be > 1 (or None to disable), got {c}")
    adv_BT = inp.advantages_BT.to(inp.logp_BT.dtype)
    log_ratio_BT = (inp.logp_BT - inp.old_logp_BT).clamp(-log_ratio_clamp, log_ratio_clamp)
    ratio_BT = torch.exp(log_ratio_BT)
    loss_BT, high_BT, low_BT = clipped_surrogate(ratio_BT, adv_BT, clip_low, clip_high)
    dual_BT = torch.zeros_like(high_BT)
    if c is not None:
        # Active only where -A r > -A c, i.e. r > c (strictly), for A < 0.
        dual_BT = (adv_BT < 0) & (ratio_BT > c)
        loss_BT = torch.where(dual_BT, -adv_BT * c, loss_BT)
    m_BT = as_float_mask(inp.mask_BT, loss_BT)
    metrics = common_metrics(log_ratio_BT, ratio_BT, high_BT, low_BT, m_BT)
    metrics["dual_clip_frac"] = masked_mean(dual_BT.to(m_BT.dtype), m_BT)
    return PolicyLossOutput(loss_BT=zero_outside(loss_BT, m_BT), metrics=metrics)
