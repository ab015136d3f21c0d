"""GRPO advantage: group-relative, normalised outcome scores.

DeepSeekMath, arXiv 2402.03300, §4.1.2 (outcome supervision): A_i = (R_i - mean(R)) / std(R)
over the G samples of one prompt, the same value on every token of sample i.
Dr.GRPO (arXiv 2503.20783) drops the std division (``norm_by_std=False``): the std scales
up the gradient of prompts that are almost always right or almost always wrong.

R_i is the sum of sample i's token rewards (outcome score + dense terms). The std is unbiased
(``torch.std``) and ``epsilon`` is added to it, as verl does. A group with one valid member
gets advantage 0 (verl instead uses mean 0, std 1 there, i.e. A = R; a lone sample carries no
group-relative signal).

Shapes: token_rewards_BT, mask_BT [B, T]; group_index_B [B] -> advantages_BT [B, T].
"""

from __future__ import annotations

from logics_rl.algorithms.advantages.base import (
    AdvantageInput,
    AdvantageOutput,
    broadcast,
    group_stats,
    sequence_scores,
    valid_rows,
)
from logics_rl.algorithms.registries import ADVANTAGES


@ADVANTAGES.register("grpo")
def grpo(
    inp: AdvantageInput, *, norm_by_std: bool = True, epsilon: float = 1e-6
) -> AdvantageOutput:
    scores_B = sequence_scores(inp.token_rewards_BT, inp.mask_BT)
    valid_B = valid_rows(inp.mask_BT)
    g = group_stats(scores_B, inp.group_index_B, valid_B)
    # A lone valid member is its own mean (and has std 0), so its advantage is exactly 0;
    # rows without valid tokens are zeroed by the mask in ``broadcast``.
    adv_B = scores_B - g.mean_B
    if norm_by_std:
        adv_B = adv_B / (g.std_B + epsilon)
    return AdvantageOutput(advantages_BT=broadcast(adv_B, inp.mask_BT))
