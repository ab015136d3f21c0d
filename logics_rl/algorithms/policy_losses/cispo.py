"""CISPO: clipped importance-sampling-weight policy optimisation.

MiniMax-M1, arXiv 2506.13585, §3.1. REINFORCE with a clipped, stop-gradient IS weight instead of
a clipped surrogate, so no token is ever dropped from the gradient (PPO's clip zeroes the
gradient of the rare "fork" tokens whose ratio moves most, which hurt long-CoT training):

    r   = exp(clamp(logp - old_logp, +-log_ratio_clamp))
    L_t = -sg[min(r, 1 + clip_high)] * A_t * logp_t

No lower bound (the paper sets eps_low^IS large). The loss value is not a surrogate objective;
its gradient is -w A grad(logp). The paper normalises by all tokens of the batch
(``token-mean``).

Shapes: all inputs [B, T] -> loss_BT [B, T]. ``clip_frac_high`` counts tokens with
r > 1 + clip_high (either sign of A); ``clip_frac_low`` is always 0.
"""

from __future__ import annotations

import torch

from logics_rl.algorithms.masked import as_float_mask, zero_outside
from logics_rl.algorithms.policy_losses.base import (
    PolicyLossInput,
    PolicyLossOutput,
    common_metrics,
)
from logics_rl.algorithms.registries import POLICY_LOSSES


@POLICY_LOSSES.register("cispo")
def cispo(
    inp: PolicyLossInput, *, clip_high: float = 0.28, log_ratio_clamp: float = 20.0
) -> PolicyLossOutput:
    logp_BT = inp.logp_BT
    adv_BT = inp.advantages_BT.to(logp_BT.dtype)
    log_ratio_BT = (logp_BT - inp.old_logp_BT).clamp(-log_ratio_clamp, log_ratio_clamp)
    ratio_BT = torch.exp(log_ratio_BT)
    upper = 1.0 + clip_high
    weight_BT = ratio_BT.clamp(max=upper).detach()
    loss_BT = -weight_BT * adv_BT * logp_BT
    m_BT = as_float_mask(inp.mask_BT, loss_BT)
    high_BT = ratio_BT > upper
    metrics = common_metrics(log_ratio_BT, ratio_BT, high_BT, torch.zeros_like(high_BT), m_BT)
    return PolicyLossOutput(loss_BT=zero_outside(loss_BT, m_BT), metrics=metrics)
