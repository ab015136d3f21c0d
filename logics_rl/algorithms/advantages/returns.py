"""Discounted token-level returns, used by REINFORCE++.

Masked positions neither earn reward nor pass return through: a hole in the mask is skipped, as
in verl's ``compute_gae_advantage_return`` / REINFORCE++ (the running value is carried across).
"""

from __future__ import annotations

from torch import Tensor

from logics_rl.algorithms.masked import as_float_mask


def discounted_returns(token_rewards_BT: Tensor, mask_BT: Tensor, gamma: float) -> Tensor:
    """G_t = r_t + gamma * G_{t+1} over valid tokens (reverse scan over T); 0 outside the mask."""
    m_BT = as_float_mask(mask_BT, token_rewards_BT)
    r_BT = token_rewards_BT * m_BT
    out_BT = r_BT.new_zeros(r_BT.shape)
    running_B = r_BT.new_zeros(r_BT.shape[0])
    for t in reversed(range(r_BT.shape[1])):
        m_B = m_BT[:, t]
        running_B = m_B * (r_BT[:, t] + gamma * running_B) + (1.0 - m_B) * running_B
        out_BT[:, t] = running_B * m_B
    return out_BT
