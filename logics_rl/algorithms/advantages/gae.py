"""GAE: generalised advantage estimation with a critic.

Schulman et al. 2015, "High-Dimensional Continuous Control Using Generalized Advantage
Estimation", arXiv 1506.02438:

    delta_t = r_t + gamma * V_{t+1} - V_t          (V after the last valid token is 0)
    A_t     = delta_t + gamma * lam * A_{t+1}
    returns = A + V                                  (the critic's regression target)

then the advantages are whitened over all valid tokens of the batch, (A - mean) / (std +
cfg.epsilon), unbiased std, as verl and OpenRLHF do (the returns are not whitened). Masked
positions are skipped by the recursion (value and advantage carried across a hole).

Shapes: token_rewards_BT, values_BT, mask_BT [B, T] -> advantages_BT, returns_BT [B, T].
"""

from __future__ import annotations

from logics_rl.algorithms.advantages.base import AdvantageInput, AdvantageOutput
from logics_rl.algorithms.masked import as_float_mask, masked_whiten
from logics_rl.algorithms.registries import ADVANTAGES
from logics_rl.config.schema import AdvantageConfig


@ADVANTAGES.register("gae")
def gae(inp: AdvantageInput, cfg: AdvantageConfig) -> AdvantageOutput:
    if inp.values_BT is None:
        raise ValueError("the 'gae' advantage estimator needs values_BT (critic values), got None")
    r_BT = inp.token_rewards_BT
    m_BT = as_float_mask(inp.mask_BT, r_BT)
    v_BT = inp.values_BT.to(r_BT.dtype) * m_BT
    r_BT = r_BT * m_BT
    adv_BT = r_BT.new_zeros(r_BT.shape)
    next_value_B = r_BT.new_zeros(r_BT.shape[0])
    last_gae_B = r_BT.new_zeros(r_BT.shape[0])
    for t in reversed(range(r_BT.shape[1])):
        m_B = m_BT[:, t]
        delta_B = r_BT[:, t] + cfg.gamma * next_value_B - v_BT[:, t]
        gae_B = delta_B + cfg.gamma * cfg.lam * last_gae_B
        # On a masked position keep what came from the right, so holes are skipped.
        next_value_B = m_B * v_BT[:, t] + (1.0 - m_B) * next_value_B
        last_gae_B = m_B * gae_B + (1.0 - m_B) * last_gae_B
        adv_BT[:, t] = last_gae_B * m_B
    returns_BT = (adv_BT + v_BT) * m_BT
    return AdvantageOutput(
        advantages_BT=masked_whiten(adv_BT, m_BT, cfg.epsilon), returns_BT=returns_BT
    )
