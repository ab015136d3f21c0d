"""The actor's mini-batches: rows or whole prompt groups, every row once per epoch, seeded."""

from __future__ import annotations

import torch

from logics_rl.config.schema import AlgorithmConfig
from logics_rl.engines.train.base import ParallelInfo
from logics_rl.protocol import Batch
from logics_rl.workers.actor import ActorRole, UpdateSpec


class RecordingEngine:
    """Records the rows of every optimizer step (the actor's split is what is under test; the
    engines' own updates are tested in tests/integration)."""

    parallel = ParallelInfo()

    def __init__(self):
        self.steps: list[list[int]] = []

    def all_reduce_dp(self, tensor):
        return tensor

    def train_step(self, batch, loss_fn, *, temperature, needs_entropy):
        self.steps.append(batch["row"].tolist())
        return {"tokens": float(batch["loss_mask"].sum())}


def train_batch(groups: int, n: int) -> Batch:
    rows = groups * n
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(0))  # groups interleaved
    uid = (torch.arange(rows) // n)[order]
    ones = torch.ones(rows, 3, dtype=torch.bool)
    zeros = torch.zeros(rows, 3)
    tensors = {
        "row": torch.arange(rows),
        "prompt_ids": torch.ones(rows, 2, dtype=torch.long),
        "prompt_mask": torch.ones(rows, 2, dtype=torch.bool),
        "response_ids": torch.ones(rows, 3, dtype=torch.long),
        "response_mask": ones,
        "loss_mask": ones,
        "truncated": torch.zeros(rows, dtype=torch.bool),
        "policy_version": torch.zeros(rows, dtype=torch.long),
        "score": torch.zeros(rows),
        **{k: zeros for k in ("token_rewards", "old_logp", "advantages", "rollout_logp")},
    }
    text = {
        k: ["x"] * rows
        for k in ("prompt", "ground_truth", "data_source", "response", "finish_reason")
    }
    non_tensors = {"uid": [str(int(u)) for u in uid], "extras": [{}] * rows, **text}
    return Batch.from_dict(tensors, non_tensors, meta={"temperature": 1.0, "behaviour": "rollout"})


def test_mini_batches_take_whole_groups_in_a_seeded_order():
    from logics_rl.batches import TrainBatch

    batch = train_batch(groups=6, n=4)
    uid = [int(u) for u in batch["uid"]]
    steps = {}
    for seed in (0, 0, 1):
        engine = RecordingEngine()
        actor = ActorRole(
            engine,
            UpdateSpec(AlgorithmConfig(), mini_batches=3, epochs=2, seed=seed, shuffle="groups"),
        )
        actor.update(TrainBatch(batch))
        assert len(engine.steps) == 6
        for epoch in (engine.steps[:3], engine.steps[3:]):
            assert sorted(r for step in epoch for r in step) == list(range(24))
            for step in epoch:  # 8 rows = exactly 2 whole groups of 4
                groups = {uid[r] for r in step}
                assert len(groups) == 2 and all(uid.count(g) == 4 for g in groups)
                assert sum(uid[r] in groups for r in range(24)) == len(step)
        assert engine.steps[:3] != engine.steps[3:]  # epochs reshuffle
        steps.setdefault(seed, []).append(engine.steps)
    assert steps[0][0] == steps[0][1] and steps[0][0] != steps[1][0]


def test_row_shuffle_mixes_groups():
    from logics_rl.batches import TrainBatch

    batch = train_batch(groups=6, n=4)
    uid = [int(u) for u in batch["uid"]]
    engine = RecordingEngine()
    actor = ActorRole(engine, UpdateSpec(AlgorithmConfig(), mini_batches=3, epochs=1))
    actor.update(TrainBatch(batch))
    assert sorted(r for step in engine.steps for r in step) == list(range(24))
    assert [len(step) for step in engine.steps] == [8, 8, 8]
    # with 24 rows in 3 random parts of 8, some part holds more than two groups
    assert max(len({uid[r] for r in step}) for step in engine.steps) > 2
