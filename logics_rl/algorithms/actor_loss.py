"""The actor's loss for one micro-batch: policy loss (+ TIS) + KL term - entropy bonus, aggregated.

Called by the train engine inside forward/backward, once per micro-batch::

    loss, metrics = actor_loss(ActorLossInput(logp_BT, old_logp_BT, adv_BT, mask_BT), cfg, norm)
    loss.backward()        # the sum over micro-batches and ranks is the mini-batch loss

Per token (all [B, T]):

    l_t = w_t * pg_t  +  kl.loss_coef * k(logp_t, ref_logp_t)  -  entropy_coef * H_t

where pg is the policy loss named by ``policy_loss.name`` (registry ``POLICY_LOSSES``), w the
truncated IS weight when ``policy_loss.tis_cap`` is set (``tis.py``), k the ``kl.estimator``
(added when ``kl.loss_coef > 0``, GRPO's beta) and H the per-token entropy from the engine
(subtracted when ``entropy_coef != 0``; a negative coefficient penalises entropy). The sum is
reduced once with ``policy_loss.loss_agg_mode`` and the mini-batch's ``GlobalNorm``.

On-policy convention: with one update per batch there is no separate behaviour policy, and
callers pass ``old_logp_BT = logp_BT.detach()``. The ratio is then exactly 1 with gradient
grad(logp), so every clipped loss reduces to the plain policy gradient -A grad(logp).

Metrics (python floats, prefixed ``actor/``), one dict per micro-batch. Keys ending in ``_max``
are combined across micro-batches and ranks by max; every other key by a mean weighted by the
micro-batch's valid tokens (``logics_rl.metrics.merge_weighted``). Under that merge:
    actor/loss, actor/pg_loss   the micro-batch's aggregated share times N / n (N = global valid
                                tokens, n = this micro-batch's), so the token-weighted merge
                                gives exactly the mini-batch loss in any aggregation mode
    actor/kl_loss, actor/entropy, actor/clip_frac_high, actor/clip_frac_low, actor/ppo_kl,
    actor/ratio_mean, actor/dual_clip_frac (ppo_clip), actor/tis_weight_mean, actor/tis_clip_frac
                                token means over this micro-batch
    actor/ratio_max             max over this micro-batch
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from logics_rl.algorithms.aggregation import GlobalNorm, aggregate
from logics_rl.algorithms.kl import kl_estimate
from logics_rl.algorithms.masked import as_float_mask, masked_mean
from logics_rl.algorithms.policy_losses.base import PolicyLossInput
from logics_rl.algorithms.registries import POLICY_LOSSES
from logics_rl.algorithms.tis import apply_tis
from logics_rl.config.schema import AlgorithmConfig


@dataclass
class ActorLossInput:
    """One micro-batch, all [B, T].

    logp_BT: current policy log-probs of the response tokens (requires grad).
    old_logp_BT: behaviour policy log-probs from the train engine before the update; on-policy
        pass ``logp_BT.detach()`` (see the module docstring).
    advantages_BT: from the advantage estimator. mask_BT: float or bool, 1 on tokens that count.
    rollout_logp_BT: log-probs reported by the rollout engine; required when TIS is on.
    ref_logp_BT: reference policy log-probs; required when ``kl.loss_coef > 0``.
    entropy_BT: per-token entropy from the engine (with grad); required when
        ``entropy_coef != 0``, logged whenever given.
    """

    logp_BT: Tensor
    old_logp_BT: Tensor
    advantages_BT: Tensor
    mask_BT: Tensor
    rollout_logp_BT: Tensor | None = None
    ref_logp_BT: Tensor | None = None
    entropy_BT: Tensor | None = None


def actor_loss(
    inp: ActorLossInput, cfg: AlgorithmConfig, norm: GlobalNorm
) -> tuple[Tensor, dict[str, float]]:
    """(scalar loss of this micro-batch, metrics); see the module docstring."""
    pl = cfg.policy_loss
    mask_BT = inp.mask_BT
    policy_loss = POLICY_LOSSES.get(pl.name)
    out = policy_loss(
        PolicyLossInput(inp.logp_BT, inp.old_logp_BT, inp.advantages_BT, mask_BT), **pl.params
    )
    pg_BT, metrics = out.loss_BT, dict(out.metrics)

    if pl.tis_cap is not None:
        if inp.rollout_logp_BT is None:
            raise ValueError("policy_loss.tis_cap is set but no rollout log-probs were given")
        pg_BT, tis_metrics = apply_tis(
            pg_BT, inp.old_logp_BT, inp.rollout_logp_BT, mask_BT, pl.tis_cap
        )
        metrics.update(tis_metrics)
    loss_BT = pg_BT

    if cfg.kl.loss_coef > 0:
        if inp.ref_logp_BT is None:
            raise ValueError(
                "kl.loss_coef > 0 needs reference log-probs (ref_logp), none were given"
            )
        kl_BT = kl_estimate(inp.logp_BT, inp.ref_logp_BT, cfg.kl.estimator)
        loss_BT = loss_BT + cfg.kl.loss_coef * kl_BT
        metrics["kl_loss"] = masked_mean(kl_BT.detach(), mask_BT)

    if cfg.entropy_coef != 0:
        if inp.entropy_BT is None:
            raise ValueError("entropy_coef != 0 needs the per-token entropy, none was given")
        loss_BT = loss_BT - cfg.entropy_coef * inp.entropy_BT
    if inp.entropy_BT is not None:
        metrics["entropy"] = masked_mean(inp.entropy_BT.detach(), mask_BT)

    loss = aggregate(loss_BT, mask_BT, pl.loss_agg_mode, norm)

    # Rescale the partial sums so the engine's token-weighted merge yields the mini-batch value.
    local_tokens = as_float_mask(mask_BT, loss).sum()
    scale = norm.num_tokens / local_tokens.clamp(min=1.0)
    with torch.no_grad():
        metrics["loss"] = loss.detach() * scale
        metrics["pg_loss"] = aggregate(pg_BT.detach(), mask_BT, pl.loss_agg_mode, norm) * scale
    names = list(metrics)
    # One device-to-host copy for all metrics instead of one per key.
    values = torch.stack(
        [metrics[k].detach().to(torch.float64).reshape(()) for k in names]
    ).tolist()
    return loss, {f"actor/{k}": v for k, v in zip(names, values)}
