"""REINFORCE++-baseline: group-mean baseline on sequence scores, then global whitening.

Hu et al., arXiv 2501.03262 (the "REINFORCE++-baseline" variant for reasoning tasks, several
samples per prompt): A_i = R_i - mean_group(R), broadcast to the tokens of sample i, then
whitened over all valid tokens of the batch, (A - mean) / (std + epsilon) with the unbiased
std. Subtracting the group mean removes the prompt's difficulty; the global (not per-group) std
avoids amplifying near-constant groups the way GRPO's per-group std does.

R_i is the sum of token rewards. A group with one valid member has mean R_i, so its centred
score is 0 (verl uses a mean of 0 there, i.e. keeps R_i).

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
from logics_rl.algorithms.masked import masked_whiten
from logics_rl.algorithms.registries import ADVANTAGES


@ADVANTAGES.register("reinforce_plus_plus_baseline")
def reinforce_plus_plus_baseline(inp: AdvantageInput, *, epsilon: float = 1e-6) -> AdvantageOutput:
    scores_B = sequence_scores(inp.token_rewards_BT, inp.mask_BT)
    g = group_stats(scores_B, inp.group_index_B, valid_rows(inp.mask_BT))
    centred_BT = broadcast(scores_B - g.mean_B, inp.mask_BT)
    return AdvantageOutput(advantages_BT=masked_whiten(centred_BT, inp.mask_BT, epsilon))
