"""GSPO: group sequence policy optimisation — one importance ratio per sequence.

Zheng et al. 2025, arXiv 2507.18071. The ratio is the length-normalised sequence likelihood
ratio, s_i = exp(mean_t(logp - old_logp)) over the valid tokens of sequence i, so a few extreme
token ratios cannot dominate (the motivation: token-level ratios of MoE models are noisy).
Token-level form (GSPO-token, §4.3), with sg = stop-gradient:

    s_it = sg[s_i] * pi_t / sg[pi_t]        (value s_i, gradient s_i * grad log pi_t)
    L_it = max(-A_it s_it, -A_it clip(s_it, 1 - clip_low, 1 + clip_high))

The clip range is tiny (paper: 3e-4 / 4e-4) because it bounds a sequence mean. With
``seq-mean-token-mean`` aggregation the gradient is exactly the paper's GSPO gradient. The mean
log-ratio is clamped to +-log_ratio_clamp before exp.

Shapes: all inputs [B, T] -> loss_BT [B, T]. Metrics are token means (each token of a clipped
sequence counts as clipped); ``ratio_*`` are of s_it.
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


@POLICY_LOSSES.register("gspo")
def gspo(
    inp: PolicyLossInput,
    *,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
    log_ratio_clamp: float = 20.0,
) -> PolicyLossOutput:
    logp_BT = inp.logp_BT
    m_BT = as_float_mask(inp.mask_BT, logp_BT)
    adv_BT = inp.advantages_BT.to(logp_BT.dtype)
    log_ratio_BT = logp_BT - inp.old_logp_BT
    seq_log_ratio_B = masked_mean(log_ratio_BT, m_BT, dim=-1)
    seq_log_ratio_B = seq_log_ratio_B.clamp(-log_ratio_clamp, log_ratio_clamp).detach()
    # Parenthesised so the value is exactly s_i: (logp - sg[logp]) is exactly 0.
    log_s_BT = seq_log_ratio_B[:, None] + (logp_BT - logp_BT.detach())
    s_BT = torch.exp(log_s_BT)
    loss_BT, high_BT, low_BT = clipped_surrogate(s_BT, adv_BT, clip_low, clip_high)
    metrics = common_metrics(log_ratio_BT, s_BT, high_BT, low_BT, m_BT)
    return PolicyLossOutput(loss_BT=zero_outside(loss_BT, m_BT), metrics=metrics)
