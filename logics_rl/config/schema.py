"""The typed config schema: every setting and its default lives here and only here.

Dataclasses, used as OmegaConf structured configs. Pure Python (no torch): the rewards and
filters plugin kit reads its config types from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# --------------------------------------------------------------------------- algorithm
@dataclass
class AdvantageConfig:
    """Advantage estimation (``logics_rl.algorithms.advantages``)."""

    estimator: str = "grpo"  # registry name, import path or entry point
    norm_by_std: bool = True  # GRPO divides by the group std; False gives Dr.GRPO
    epsilon: float = 1e-6  # added to the std before dividing
    gamma: float = 1.0  # discount (REINFORCE++ returns, GAE)
    lam: float = 1.0  # GAE lambda


@dataclass
class PolicyLossConfig:
    """Policy loss (``logics_rl.algorithms.policy_losses``) and how it is aggregated."""

    name: str = "ppo_clip"
    clip_low: float = 0.2  # epsilon_low
    clip_high: float = 0.2  # epsilon_high; DAPO clip-higher uses 0.28
    dual_clip_c: float | None = 3.0  # dual-clip bound for negative advantages; None disables
    log_ratio_clamp: float = 20.0  # |log pi/pi_old| clamp before exp, for stability
    gspo_clip_low: float = 3e-4  # GSPO sequence-ratio clip range (arXiv 2507.18071)
    gspo_clip_high: float = 4e-4
    cispo_clip_high: float = 0.28  # CISPO upper bound of the IS weight: 1 + this (MiniMax-M1)
    tis_cap: float | None = None  # truncated importance sampling cap C vs rollout log-probs
    loss_agg_mode: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum
    # | seq-mean-token-sum-norm
    loss_norm_const: float | None = (
        None  # constant of seq-mean-token-sum-norm; None: max response length
    )


@dataclass
class KLConfig:
    """KL to the reference policy, as a loss term and/or as a reward penalty."""

    estimator: str = "k3"  # k1 | k2 | k3
    loss_coef: float = 0.0  # > 0 adds beta * KL to the loss (GRPO: 0.04)
    reward_coef: float = 0.0  # > 0 subtracts coef * KL from token rewards
    adaptive: bool = False  # adaptive reward coefficient (Ziegler et al. 2019)
    target: float = 0.1  # adaptive: target KL per sequence
    horizon: int = 10000  # adaptive: horizon in samples


@dataclass
class AlgorithmConfig:
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    policy_loss: PolicyLossConfig = field(default_factory=PolicyLossConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    entropy_coef: float = 0.0  # entropy bonus; Logics-STEM saw entropy explosion with it


# --------------------------------------------------------------------------- rewards, filters
@dataclass
class RewardTermConfig:
    """One weighted term of the composite reward."""

    name: str = "math_verify"  # registry name, import path or entry point
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the reward


@dataclass
class RewardConfig:
    terms: list[RewardTermConfig] = field(default_factory=lambda: [RewardTermConfig()])
    num_workers: int = 2  # scoring processes (math-verify runs in processes, never threads)
    timeout_s: float = 10.0  # hard wall-clock deadline per sample, enforced from outside


@dataclass
class FilterTermConfig:
    """One dynamic-sampling filter."""

    name: str = "zero_variance"
    params: dict[str, Any] = field(default_factory=dict)
