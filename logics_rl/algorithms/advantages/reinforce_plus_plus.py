"""REINFORCE++ advantage: discounted token returns, whitened over the whole batch.

Hu et al., "REINFORCE++: a simple and efficient approach for aligning large language models",
arXiv 2501.03262. No critic and no per-prompt baseline: the token return
G_t = sum_{s >= t} gamma^(s-t) r_s (``gamma``) is normalised by the mean and std of all valid
tokens of the batch ("global advantage normalisation"), which the paper argues is more stable
than per-prompt normalisation. The paper's per-token KL penalty goes into the token rewards
beforehand (``kl.apply_kl_penalty``), not here.

Whitening: (G - mean) / (std + epsilon), unbiased std over valid tokens.

Shapes: token_rewards_BT, mask_BT [B, T] -> advantages_BT (whitened G) [B, T].
"""

from __future__ import annotations

from logics_rl.algorithms.advantages.base import AdvantageInput, AdvantageOutput
from logics_rl.algorithms.advantages.returns import discounted_returns
from logics_rl.algorithms.masked import masked_whiten
from logics_rl.algorithms.registries import ADVANTAGES


@ADVANTAGES.register("reinforce_plus_plus")
def reinforce_plus_plus(
    inp: AdvantageInput, *, gamma: float = 1.0, epsilon: float = 1e-6
) -> AdvantageOutput:
    returns_BT = discounted_returns(inp.token_rewards_BT, inp.mask_BT, gamma)
    return AdvantageOutput(advantages_BT=masked_whiten(returns_BT, inp.mask_BT, epsilon))
