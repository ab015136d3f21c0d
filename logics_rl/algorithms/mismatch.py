"""Train engine vs rollout engine log-probs on the sampled tokens.

The rollout engine (other kernels, other precision) samples from a slightly different
distribution than the train engine computes; these metrics measure the gap that truncated
importance sampling (``tis.py``) corrects. Shapes: all [B, T].
"""

from __future__ import annotations

import torch


def rollout_mismatch(
    train_logp_BT: torch.Tensor, rollout_logp_BT: torch.Tensor, mask_BT: torch.Tensor
) -> dict[str, float]:
    """|diff| mean / max and the k3 estimate of KL(train || rollout) over valid tokens."""
    m = mask_BT.bool()
    if not m.any():
        return {}
    diff = (train_logp_BT - rollout_logp_BT)[m]
    log_ratio = (rollout_logp_BT - train_logp_BT)[m].clamp(-20, 20)
    k3 = torch.exp(log_ratio) - log_ratio - 1  # KL(train || rollout), Schulman's k3
    return {
        "mismatch/abs_diff_mean": float(diff.abs().mean()),
        "mismatch/abs_diff_max": float(diff.abs().max()),
        "mismatch/k3_kl": float(k3.mean()),
    }
