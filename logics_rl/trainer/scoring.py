"""Rewards and dynamic-sampling filters applied to a rollout batch on the driver.

Bridges the batch layout to the plugin kit's plain types (``RewardInput`` / ``Group``) so reward
and filter plugins never see tensors. Both steps return new batches; their inputs are unchanged.
"""

from __future__ import annotations

import torch

from logics_rl.algorithms.advantages import place_outcome_rewards
from logics_rl.batches import (
    DATA_SOURCE,
    EXTRAS,
    GROUND_TRUTH,
    LOSS_MASK,
    PROMPT,
    RESPONSE,
    RESPONSE_IDS,
    RESPONSE_MASK,
    REWARD_PREFIX,
    SCORE,
    TOKEN_REWARDS,
    TRUNCATED,
    RolloutBatch,
    ScoredBatch,
    group_rows,
    reward_components,
)
from logics_rl.filters import FilterChain, Group
from logics_rl.protocol import Batch
from logics_rl.rewards import CompositeReward, RewardInput, RewardResult


def reward_input(rollout: RolloutBatch, max_response_length: int) -> RewardInput:
    """The plugin kit's view of a rollout batch (plain lists, no tensors)."""
    b = rollout.batch
    lengths = rollout.response_lengths.tolist()
    return RewardInput(
        prompts=list(b[PROMPT]),
        responses=list(b[RESPONSE]),
        ground_truths=list(b[GROUND_TRUTH]),
        response_lengths=lengths,
        truncated=b[TRUNCATED].tolist(),
        max_response_length=max_response_length,
        response_token_ids=[b[RESPONSE_IDS][i, : lengths[i]].tolist() for i in range(len(b))],
        data_sources=list(b[DATA_SOURCE]),
        extras=list(b[EXTRAS]),
    )


def dense_scores(result: RewardResult, mask: torch.Tensor) -> torch.Tensor | None:
    """Per-token reward terms as [B, R] (cut to the response width), or None."""
    if result.token_scores is None:
        return None
    dense = torch.zeros(mask.shape, dtype=torch.float32)
    for i, ts in enumerate(result.token_scores):
        if ts:
            n = min(len(ts), mask.shape[1])
            dense[i, :n] = torch.tensor(ts[:n], dtype=torch.float32)
    return dense


def score_batch(
    rollout: RolloutBatch, reward: CompositeReward, max_response_length: int
) -> tuple[Batch, dict[str, float]]:
    """The composite reward: ``score``, ``token_rewards`` (outcome score on the last token plus
    dense terms) and ``reward/<component>`` columns added to a new batch, and its metrics."""
    result = reward(reward_input(rollout, max_response_length))
    scores = torch.tensor(result.scores, dtype=torch.float32)
    mask = rollout.response_mask
    columns = {
        SCORE: scores,
        TOKEN_REWARDS: place_outcome_rewards(scores, mask, dense_scores(result, mask)),
    }
    metrics = {
        "reward/mean": float(scores.mean()),
        "reward/score_max": float(scores.max()),
        "reward/score_min": float(scores.min()),
    }
    for name, values in result.components.items():
        col = torch.tensor(values, dtype=torch.float32)
        columns[REWARD_PREFIX + name] = col
        metrics[REWARD_PREFIX + name] = float(col.mean())
    for name, count in result.counters.items():
        metrics[f"reward/count/{name}"] = float(count)
    return rollout.batch.with_columns(columns), metrics


def filter_groups(batch: Batch, rows: list, max_response_length: int) -> list[Group]:
    """The plugin kit's view of each prompt group of a scored batch."""
    components = reward_components(batch)
    lengths = batch[RESPONSE_MASK].sum(1)
    return [
        Group(
            prompt=str(batch[PROMPT][r[0]]),
            responses=[str(batch[RESPONSE][i]) for i in r],
            scores=batch[SCORE][r].tolist(),
            components={c: batch[REWARD_PREFIX + c][r].tolist() for c in components},
            response_lengths=lengths[r].tolist(),
            truncated=batch[TRUNCATED][r].tolist(),
            max_response_length=max_response_length,
            data_source=str(batch[DATA_SOURCE][r[0]]),
        )
        for r in rows
    ]


def filter_batch(
    batch: Batch, chain: FilterChain, max_response_length: int
) -> tuple[ScoredBatch, dict[str, float], int]:
    """Apply the filter chain per prompt group; returns (kept rows with their ``loss_mask``,
    counts, kept groups)."""
    rows = group_rows(batch)
    decisions, counts = chain.apply(filter_groups(batch, rows, max_response_length))
    keep_rows: list[int] = []
    loss_keep = torch.ones(len(batch), dtype=torch.bool)
    kept_groups = 0
    for r, d in zip(rows, decisions):
        if not d.keep_group:
            continue
        kept_groups += 1
        for j, i in enumerate(r):
            if d.keep_samples is not None and not d.keep_samples[j]:
                continue
            if d.mask_samples is not None and d.mask_samples[j]:
                loss_keep[i] = False
            keep_rows.append(int(i))
    masked = batch.with_columns({LOSS_MASK: batch[RESPONSE_MASK] & loss_keep[:, None]})
    metrics = {k: float(v) for k, v in counts.items()}  # keys are "filter/<term>/<reason>"
    metrics["filter/kept_groups"] = float(kept_groups)
    metrics["filter/dropped_groups"] = float(len(rows) - kept_groups)
    return ScoredBatch(masked[keep_rows]), metrics, kept_groups
