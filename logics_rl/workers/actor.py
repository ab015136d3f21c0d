"""The actor role: the policy being trained (a train engine and the policy-update loop).

``update`` takes this rank's part of the train batch, cuts it into ``mini_batches`` equal parts
(one optimizer step each) for ``epochs`` passes, and normalises every mini-batch's loss by counts
summed over the data-parallel ranks, so the update is the same however the batch is split. Each
pass shuffles the rows, or whole prompt groups (rows sharing a ``uid``; ``shuffle="groups"``), so
that the samples of a prompt train in the same optimizer step and the engine runs their prompt
once.

The policy version is the number of updates applied: samples carry the version of the weights
that drew them, and an update that treats samples as on-policy refuses any of another version.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from logics_rl.algorithms.actor_loss import ActorLossInput, actor_loss
from logics_rl.algorithms.aggregation import GlobalNorm, global_norm_of, norm_counts
from logics_rl.batches import (
    ADVANTAGES,
    ENTROPY,
    LOSS_MASK,
    OLD_LOGP,
    POLICY_VERSION,
    REF_LOGP,
    RESPONSE_IDS,
    ROLLOUT_LOGP,
    Behaviour,
    StageDataError,
    TrainBatch,
    group_rows,
)
from logics_rl.config.schema import AlgorithmConfig
from logics_rl.engines.train.base import ParallelInfo, TrainEngine
from logics_rl.metrics import merge_weighted
from logics_rl.protocol import Batch

LOGP = "logp"  # compute_log_prob's column: the current weights' log-probs


@dataclass(frozen=True)
class UpdateSpec:
    """How one ``update`` call trains: the algorithm, and the mini-batch / epoch schedule."""

    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    mini_batches: int = 1  # optimizer steps per pass over the batch
    epochs: int = 1  # passes over the batch
    seed: int = 0  # seeds the mini-batch shuffle
    shuffle: str = "rows"  # rows | groups (trainer.mini_batch_shuffle)


class ActorRole:
    """The trained policy: log-probs, the update loop, its weights and checkpoints."""

    def __init__(self, engine: TrainEngine, spec: UpdateSpec):
        self.engine = engine
        self.spec = spec
        self.updates = 0  # update() calls so far: the policy version, and the shuffle seed

    @property
    def version(self) -> int:
        return self.updates

    @property
    def parallel(self) -> ParallelInfo:
        return self.engine.parallel

    @property
    def hf_config(self):
        return self.engine.hf_config

    def state_dict(self) -> dict:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])

    # ------------------------------------------------------------------ log-probs
    def compute_log_prob(self, batch: Batch, temperature: float) -> Batch:
        """``logp`` and ``entropy`` [B, R] of the responses under the current weights."""
        out = self.engine.compute_log_prob(batch, temperature=temperature, with_entropy=True)
        return Batch.from_dict({LOGP: out.logp, ENTROPY: out.entropy})

    def score_sequences(self, batch: Batch) -> torch.Tensor:
        """[B, R] log-probs at temperature 1 (the weight-sync probe)."""
        return self.engine.compute_log_prob(batch, temperature=1.0).logp

    # ------------------------------------------------------------------ update
    def update(self, train: TrainBatch) -> dict[str, float]:
        spec = self.spec
        batch = train.batch
        if len(batch) % spec.mini_batches:
            raise ValueError(
                f"this rank's {len(batch)} rows do not split into {spec.mini_batches} mini-batches"
            )
        if train.behaviour == Behaviour.on_policy:
            self._check_on_policy(train)
        t0 = time.perf_counter()
        results: list[tuple[dict[str, float], float]] = []
        for epoch in range(spec.epochs):
            for part in self._shuffled(batch, epoch).chunk(spec.mini_batches):
                metrics = self.engine.train_step(
                    part,
                    self._loss_fn(part, train.behaviour),
                    temperature=train.temperature,
                    # entropy every step, bonus or not: Logics-STEM reports entropy explosion
                    needs_entropy=True,
                )
                results.append((metrics, float(part[LOSS_MASK].sum())))
        self.updates += 1
        out = self._merge(results)
        # the update's own time on this rank; the driver's time/update adds dispatch and transfer
        out["actor/update/seconds"] = time.perf_counter() - t0
        return out

    def _check_on_policy(self, train: TrainBatch) -> None:
        """On-policy means: every sample drawn by the current weights, and one optimizer step."""
        spec = self.spec
        if spec.mini_batches > 1 or spec.epochs > 1:
            raise StageDataError(
                f"an on-policy train batch (no behaviour log-probs) allows one optimizer step, "
                f"got {spec.mini_batches} mini-batches x {spec.epochs} epochs"
            )
        versions = set(train[POLICY_VERSION].tolist())
        if versions != {self.version}:
            raise StageDataError(
                f"samples of policy versions {sorted(versions)} reached an actor at version "
                f"{self.version} without behaviour log-probs: the importance ratio would be "
                "taken as 1 for stale samples (recompute or keep the rollout log-probs)"
            )

    def _shuffled(self, batch: Batch, epoch: int) -> Batch:
        spec = self.spec
        if spec.epochs == 1 and spec.mini_batches == 1:
            return batch
        g = torch.Generator().manual_seed(
            spec.seed * 1_000_003 + self.updates * 1009 + epoch * 31 + self.parallel.dp_rank
        )
        if spec.shuffle == "rows":
            return batch[torch.randperm(len(batch), generator=g)]
        groups = group_rows(batch)
        order = torch.randperm(len(groups), generator=g).tolist()
        return batch[np.concatenate([groups[i] for i in order])]

    def _global_norm(self, part: Batch) -> GlobalNorm:
        """The mini-batch's loss normalisers, counted over every data-parallel rank's part."""
        counts = self.engine.all_reduce_dp(norm_counts(part[LOSS_MASK]))
        const = self.spec.algorithm.policy_loss.loss_norm_const
        if const is None:
            const = float(part[RESPONSE_IDS].shape[1])
        return global_norm_of(counts, const)

    def _loss_fn(self, part: Batch, behaviour: Behaviour):
        """The engine's per-micro-batch loss for one mini-batch (its global norm fixed here)."""
        norm, algo = self._global_norm(part), self.spec.algorithm
        on_policy = behaviour == Behaviour.on_policy

        def loss_fn(mb: Batch, logp_BT: torch.Tensor, entropy_BT: torch.Tensor | None):
            inp = ActorLossInput(
                logp_BT=logp_BT,
                old_logp_BT=logp_BT.detach() if on_policy else mb[OLD_LOGP],
                advantages_BT=mb[ADVANTAGES],
                mask_BT=mb[LOSS_MASK],
                rollout_logp_BT=mb[ROLLOUT_LOGP],
                ref_logp_BT=mb.get(REF_LOGP),
                entropy_BT=entropy_BT,
            )
            return actor_loss(inp, algo, norm)

        return loss_fn

    def _merge(self, results: list[tuple[dict[str, float], float]]) -> dict[str, float]:
        merged = merge_weighted(results)
        # engine counters are totals over the mini-batches, not means
        for key in ("tokens", "loss_tokens", "micro_batches", "skipped_steps"):
            merged[key] = sum(m.get(key, 0.0) for m, _ in results)
        out = {k if k.startswith("actor/") else f"actor/{k}": v for k, v in merged.items()}
        out["actor/optimizer_steps"] = float(self.spec.epochs * self.spec.mini_batches)
        return out

    # ------------------------------------------------------------------ weights, checkpoints
    def export_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full tensors under HF names, one at a time (collective: every rank iterates)."""
        return self.engine.named_parameters_for_export()

    def save(self, path: str) -> None:
        self.engine.save_checkpoint(path)

    def load(self, path: str) -> None:
        self.engine.load_checkpoint(path)

    def export_hf(self, path: str) -> None:
        self.engine.export_hf(path)
