"""Driver-side reward and filter steps on a rollout batch, without Ray: the columns they add,
the metrics, and that their input is left as it was."""

from __future__ import annotations

import pytest
import torch

from logics_rl.batches import RolloutBatch, ScoredBatch, StageDataError
from logics_rl.filters import build_filters
from logics_rl.protocol import Batch
from logics_rl.rewards import REWARDS, RewardInput, RewardResult, build_reward
from logics_rl.trainer.scoring import filter_batch, score_batch


@REWARDS.register("test_scoring_length", overwrite=True)
def length_reward(batch: RewardInput) -> RewardResult:
    """score = response length / 10; a dense -0.5 on the first token of every response."""
    s = [n / 10 for n in batch.response_lengths]
    return RewardResult(
        scores=s,
        components={"len": s},
        token_scores=[[-0.5] + [0.0] * (n - 1) if n else [] for n in batch.response_lengths],
        counters={"seen": len(s)},
    )


def rollout(lengths: list[int], groups: list[int], width: int = 4) -> RolloutBatch:
    n = len(lengths)
    mask = torch.arange(width)[None] < torch.tensor(lengths)[:, None]
    batch = Batch.from_dict(
        {
            "prompt_ids": torch.ones(n, 2, dtype=torch.long),
            "prompt_mask": torch.ones(n, 2, dtype=torch.bool),
            "response_ids": torch.full((n, width), 7) * mask,
            "response_mask": mask,
            "rollout_logp": torch.zeros(n, width),
            "truncated": torch.tensor([n_ == width for n_ in lengths]),
            "policy_version": torch.zeros(n, dtype=torch.long),
        },
        {
            "uid": groups,
            "prompt": [f"q{g}" for g in groups],
            "ground_truth": ["1"] * n,
            "data_source": ["src"] * n,
            "extras": [{}] * n,
            "response": ["x" * k for k in lengths],
            "finish_reason": ["length" if k == width else "stop" for k in lengths],
        },
        meta={"temperature": 1.0},
    )
    return RolloutBatch(batch)


def test_score_batch_places_rewards_and_leaves_its_input_alone():
    r = rollout([2, 4, 1], [0, 0, 1])
    reward = build_reward({"terms": [{"name": "test_scoring_length"}], "num_workers": 0})
    batch, metrics = score_batch(r, reward, max_response_length=4)
    assert "score" not in r.batch and "token_rewards" not in r.batch  # a new batch
    assert batch["score"].tolist() == pytest.approx([0.2, 0.4, 0.1])
    # outcome score on the last valid token, the dense term on the first
    torch.testing.assert_close(
        batch["token_rewards"],
        torch.tensor([[-0.5, 0.2, 0, 0], [-0.5, 0, 0, 0.4], [-0.5 + 0.1, 0, 0, 0]]),
    )
    assert batch["reward/len"].tolist() == pytest.approx([0.2, 0.4, 0.1])
    assert metrics["reward/mean"] == pytest.approx(0.7 / 3)
    assert metrics["reward/score_max"] == pytest.approx(0.4)
    assert metrics["reward/score_min"] == pytest.approx(0.1)
    assert metrics["reward/count/seen"] == 3.0


def test_filter_batch_keeps_groups_and_sets_the_loss_mask():
    r = rollout([2, 4, 1, 3, 3], [0, 0, 1, 2, 2])
    reward = build_reward({"terms": [{"name": "test_scoring_length"}], "num_workers": 0})
    scored, _ = score_batch(r, reward, max_response_length=4)
    chain = build_filters(
        [
            {"name": "zero_variance", "params": {"metric": "score"}},
            {"name": "truncated", "params": {"mode": "mask"}},
        ]
    )
    kept, metrics, groups = filter_batch(scored, chain, max_response_length=4)
    assert isinstance(kept, ScoredBatch) and "loss_mask" not in scored  # input unchanged
    # group 1 has one sample (no variance), group 2 equal scores: both dropped
    assert groups == 1 and kept["uid"].tolist() == [0, 0]
    assert metrics["filter/kept_groups"] == 1.0 and metrics["filter/dropped_groups"] == 2.0
    # the truncated sample (length 4 = max) stays in its group but out of the loss
    assert kept.loss_mask.sum(1).tolist() == [2, 0]
    assert torch.equal(kept.response_mask, r.response_mask[:2])


def test_views_name_what_is_missing():
    r = rollout([1], [0])
    with pytest.raises(StageDataError, match=r"ScoredBatch needs score, token_rewards, loss_mask"):
        ScoredBatch(r.batch)
    no_temperature = Batch(r.batch.tensors, r.batch.non_tensors, {})
    with pytest.raises(StageDataError, match=r"meta\['temperature'\]"):
        RolloutBatch(no_temperature)
