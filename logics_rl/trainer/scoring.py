"""Rewards and dynamic-sampling filters applied to a rollout ``Batch`` on the driver.

Bridges the batch layout to the plugin kit's plain types (``RewardInput`` / ``Group``) so reward
and filter plugins never see tensors.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from logics_rl.algorithms.advantages import place_outcome_rewards
from logics_rl.filters import FilterChain, Group
from logics_rl.metrics import merge_weighted
from logics_rl.protocol import Batch
from logics_rl.rewards import CompositeReward, RewardInput


@dataclass
class Scored:
    batch: Batch  # + "score" [B], "token_rewards" [B, R], "reward/<component>" columns
    metrics: dict[str, float]


def merge_reward_metrics(parts: list[tuple[dict[str, float], float]]) -> dict[str, float]:
    """Reward metrics of several generation rounds, ``(metrics, samples)`` each: means weighted
    by samples, ``reward/max`` the max, ``reward/min`` the min, ``reward/count/*`` summed."""
    out = merge_weighted(parts)
    for key in out:
        values = [m[key] for m, _ in parts if key in m]
        if key == "reward/max":
            out[key] = max(values)
        elif key == "reward/min":
            out[key] = min(values)
        elif key.startswith("reward/count/"):
            out[key] = float(sum(values))
    return out


def response_lengths(batch: Batch) -> torch.Tensor:
    return batch["response_mask"].sum(1)


def score_batch(batch: Batch, reward: CompositeReward, max_response_length: int) -> Scored:
    """Run the composite reward; outcome score on the last token plus dense token terms."""
    lengths = response_lengths(batch).tolist()
    token_ids = [batch["response_ids"][i, : lengths[i]].tolist() for i in range(len(batch))]
    inp = RewardInput(
        prompts=list(batch["prompt"]),
        responses=list(batch["response"]),
        ground_truths=list(batch["ground_truth"]),
        response_lengths=lengths,
        truncated=batch["truncated"].tolist(),
        max_response_length=max_response_length,
        response_token_ids=token_ids,
        data_sources=list(batch["data_source"]),
        extras=list(batch["extras"]),
    )
    result = reward(inp)
    scores = torch.tensor(result.scores, dtype=torch.float32)
    mask = batch["response_mask"]
    dense = None
    if result.token_scores is not None:
        dense = torch.zeros(mask.shape, dtype=torch.float32)
        for i, ts in enumerate(result.token_scores):
            if ts:
                n = min(len(ts), mask.shape[1])
                dense[i, :n] = torch.tensor(ts[:n], dtype=torch.float32)
    batch["score"] = scores
    batch["token_rewards"] = place_outcome_rewards(scores, mask, dense)
    metrics = {
        "reward/mean": float(scores.mean()),
        "reward/max": float(scores.max()),
        "reward/min": float(scores.min()),
    }
    for name, values in result.components.items():
        col = torch.tensor(values, dtype=torch.float32)
        batch[f"reward/{name}"] = col
        metrics[f"reward/{name}"] = float(col.mean())
    for name, count in result.counters.items():
        metrics[f"reward/count/{name}"] = float(count)
    return Scored(batch, metrics)


def groups_of(batch: Batch) -> tuple[list[int], list[np.ndarray]]:
    """Group row indices by ``uid`` (the prompt), in order of first appearance."""
    rows: dict[int, list[int]] = defaultdict(list)
    for i, uid in enumerate(batch["uid"]):
        rows[int(uid)].append(i)
    uids = list(rows)
    return uids, [np.array(rows[u]) for u in uids]


def filter_batch(
    batch: Batch, chain: FilterChain, max_response_length: int
) -> tuple[Batch, dict[str, float], int]:
    """Apply the filter chain per prompt group; returns (kept rows, counts, kept groups)."""
    uids, index = groups_of(batch)
    components = [k.split("/", 1)[1] for k in batch.keys() if k.startswith("reward/")]  # noqa: SIM118
    groups = []
    for rows in index:
        groups.append(
            Group(
                prompt=str(batch["prompt"][rows[0]]),
                responses=[str(batch["response"][i]) for i in rows],
                scores=batch["score"][rows].tolist(),
                components={c: batch[f"reward/{c}"][rows].tolist() for c in components},
                response_lengths=response_lengths(batch)[rows].tolist(),
                truncated=batch["truncated"][rows].tolist(),
                max_response_length=max_response_length,
                data_source=str(batch["data_source"][rows[0]]),
            )
        )
    decisions, counts = chain.apply(groups)
    keep_rows: list[int] = []
    loss_keep = torch.ones(len(batch), dtype=torch.bool)
    kept_groups = 0
    for rows, d in zip(index, decisions):
        if not d.keep_group:
            continue
        kept_groups += 1
        for j, i in enumerate(rows):
            if d.keep_samples is not None and not d.keep_samples[j]:
                continue
            if d.mask_samples is not None and d.mask_samples[j]:
                loss_keep[i] = False
            keep_rows.append(int(i))
    batch["loss_mask"] = batch["response_mask"] & loss_keep[:, None]
    metrics = {k: float(v) for k, v in counts.items()}  # keys are "filter/<term>/<reason>"
    metrics["filter/kept_groups"] = float(kept_groups)
    metrics["filter/dropped_groups"] = float(len(groups) - kept_groups)
    return batch[keep_rows], metrics, kept_groups
