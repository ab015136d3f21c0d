"""RLOO advantage: REINFORCE with a leave-one-out baseline.

Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning
from Human Feedback in LLMs", arXiv 2402.14740 (after Kool et al. 2019):

    A_i = R_i - 1/(k-1) * sum_{j != i} R_j = k/(k-1) * (R_i - mean(R))

over the k valid samples of one prompt. The baseline excludes the sample itself, so it stays
unbiased. R_i is the sum of token rewards; a group with one valid member gets 0.

Shapes: token_rewards_BT, mask_BT [B, T]; group_index_B [B] -> advantages_BT [B, T].
"""

from __future__ import annotations

import torch

from logics_rl.algorithms.advantages.base import (
    AdvantageInput,
    AdvantageOutput,
    broadcast,
    group_stats,
    sequence_scores,
    valid_rows,
)
from logics_rl.algorithms.registries import ADVANTAGES


@ADVANTAGES.register("rloo")
def rloo(inp: AdvantageInput) -> AdvantageOutput:
    scores_B = sequence_scores(inp.token_rewards_BT, inp.mask_BT)
    valid_B = valid_rows(inp.mask_BT)
    g = group_stats(scores_B, inp.group_index_B, valid_B)
    others_mean_B = (g.sum_B - scores_B) / (g.count_B - 1.0).clamp(min=1.0)
    adv_B = scores_B - others_mean_B
    adv_B = torch.where(valid_B & (g.count_B > 1), adv_B, torch.zeros_like(adv_B))
    return AdvantageOutput(advantages_BT=broadcast(adv_B, inp.mask_BT))
