"""Policy losses, one per file, registered in ``POLICY_LOSSES`` on import.

Every loss: ``fn(inp: PolicyLossInput, **params) -> PolicyLossOutput`` with a per-token loss
[B, T] (aggregated separately, see ``aggregation``); ``params`` come from
``algorithm.policy_loss.params`` and are checked against the signature when the run is built.

    ppo_clip   clipped surrogate, clip-higher, dual clip   arXiv 1707.06347, 2503.14476, 1912.09729
    gspo       sequence-level ratio, token-level form     arXiv 2507.18071
    cispo      clipped stop-gradient IS weight REINFORCE  arXiv 2506.13585
"""

from __future__ import annotations

from logics_rl.algorithms.policy_losses.base import PolicyLossInput, PolicyLossOutput
from logics_rl.algorithms.policy_losses.cispo import cispo
from logics_rl.algorithms.policy_losses.gspo import gspo
from logics_rl.algorithms.policy_losses.ppo_clip import ppo_clip

__all__ = ["PolicyLossInput", "PolicyLossOutput", "cispo", "gspo", "ppo_clip"]
