"""KL to the reference policy: per-token estimators, the reward penalty, coefficient controllers.

Estimators of KL(pi || pi_ref) from samples of pi (Schulman, "Approximating KL Divergence",
joschu.net/blog/kl-approx.html), with x = logp - ref_logp per token:

    k1 = x                      unbiased, high variance, can be negative
    k2 = x^2 / 2                biased, low variance, >= 0
    k3 = exp(-x) + x - 1        unbiased, low variance, >= 0 (GRPO's estimator, arXiv 2402.03300)

k3 clamps the log-ratio to +-20 and the result to +-10, as verl's ``low_var_kl``: one token with
a huge ratio must not blow up the loss.

Two ways to use it (``KLConfig``):
  * a loss term, beta * k(logp, ref_logp) per token (GRPO; in ``actor_loss``);
  * a reward penalty, token_rewards - coef * k(old_logp, ref_logp) (PPO-RLHF, REINFORCE++;
    ``apply_kl_penalty``), with a fixed or adaptive coefficient (Ziegler et al. 2019,
    arXiv 1909.08593).

Entropy is computed from the logits by the train engine; only its bonus term lives in
``actor_loss``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from logics_rl.algorithms.masked import as_float_mask, masked_mean, zero_outside
from logics_rl.config.schema import KLEstimator

KL_ESTIMATORS = tuple(KLEstimator.values())


def kl_estimate(logp_BT: Tensor, ref_logp_BT: Tensor, kind: str) -> Tensor:
    """Per-token KL(pi || pi_ref) estimate [B, T] (differentiable in logp_BT)."""
    if kind == "k1":
        return logp_BT - ref_logp_BT
    if kind == "k2":
        return 0.5 * (logp_BT - ref_logp_BT) ** 2
    if kind == "k3":
        log_ratio_BT = (ref_logp_BT - logp_BT).clamp(-20.0, 20.0)
        return (torch.exp(log_ratio_BT) - log_ratio_BT - 1.0).clamp(-10.0, 10.0)
    raise ValueError(f"unknown KL estimator {kind!r}; valid estimators: {', '.join(KL_ESTIMATORS)}")


def apply_kl_penalty(
    token_rewards_BT: Tensor,
    logp_BT: Tensor,
    ref_logp_BT: Tensor,
    mask_BT: Tensor,
    coef: float,
    kind: str,
) -> tuple[Tensor, Tensor]:
    """Subtract ``coef * KL`` from every valid token's reward.

    logp_BT: the behaviour policy's log-probs (``old_logp``), no gradient is taken. Returns the
    new token rewards [B, T] and the KL per sequence (token mean over the sequence) averaged
    over sequences with at least one valid token — the quantity the adaptive controller tracks.
    """
    with torch.no_grad():
        kl_BT = zero_outside(kl_estimate(logp_BT, ref_logp_BT, kind), mask_BT)
        rewards_BT = token_rewards_BT - coef * kl_BT.to(token_rewards_BT.dtype)
        valid_B = mask_BT.bool().any(dim=-1)
        kl_seq_B = masked_mean(kl_BT, as_float_mask(mask_BT, kl_BT), dim=-1)
        kl_seq_mean = masked_mean(kl_seq_B, valid_B)
    return rewards_BT, kl_seq_mean


class FixedKLController:
    """A constant KL reward coefficient."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op; the same interface as ``AdaptiveKLController``."""

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Steer the KL reward coefficient toward a target KL (Ziegler et al. 2019, arXiv 1909.08593).

        e     = clip(KL / target - 1, -0.2, 0.2)
        beta <- beta * (1 + e * n_steps / horizon)

    KL above target raises beta, below lowers it; the clip bounds the change per update.
    ``n_steps`` is the number of samples the KL was measured on.
    """

    def __init__(self, init_kl_coef: float, target_kl: float, horizon: int):
        if target_kl <= 0 or horizon <= 0:
            raise ValueError(
                f"adaptive KL needs target > 0 and horizon > 0, got {target_kl}, {horizon}"
            )
        self.value = float(init_kl_coef)
        self.target = float(target_kl)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])
