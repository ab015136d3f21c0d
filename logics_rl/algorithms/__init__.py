"""RL algorithms as small, pure-torch pieces: advantage estimators, policy losses, KL, aggregation.

Nothing here touches Ray or torch.distributed: the driver computes advantages, the train engine
calls ``actor_loss`` per micro-batch with a ``GlobalNorm`` it got from the controller.

    from logics_rl.algorithms import ADVANTAGES, POLICY_LOSSES
    out = ADVANTAGES.get("grpo")(AdvantageInput(token_rewards_BT, mask_BT, group_index_B), cfg)

Shapes: B sequences, T response tokens (right padded); ``mask_BT`` is 1 on tokens that count.
"""

from __future__ import annotations

# ``advantages`` and ``policy_losses`` are imported for their side effect: the built-ins
# register themselves by name in the registries.
from logics_rl.algorithms import advantages, policy_losses  # noqa: F401
from logics_rl.algorithms.registries import ADVANTAGES, POLICY_LOSSES

__all__ = ["ADVANTAGES", "POLICY_LOSSES"]
