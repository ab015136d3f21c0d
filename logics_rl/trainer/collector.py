"""``RolloutCollector``: the train batch of one RL step, from prompts to kept groups.

Next prompts -> generate (n samples each) -> score -> dynamic-sampling filters, repeated until
``prompts_per_step`` groups survive (DAPO's refill, up to ``max_gen_batches`` rounds, each of
``ceil(oversample x prompts_per_step)`` prompts), then the first ``prompts_per_step`` kept groups
cut to a size every data-parallel rank and mini-batch divides. The next prompt uid is part of the
trainer state, so a resumed run draws the same prompts with the same uids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.console import Console

from logics_rl.batches import UID, RolloutBatch, ScoredBatch
from logics_rl.config.schema import Config
from logics_rl.data.prompts import PromptRecord, to_batch
from logics_rl.data.sampler import EpochSampler
from logics_rl.engines.rollout import Sampling
from logics_rl.errors import TrainingError
from logics_rl.filters import FilterChain
from logics_rl.metrics import merge_weighted
from logics_rl.protocol import Batch
from logics_rl.rewards import CompositeReward
from logics_rl.tracking import PhaseTimer
from logics_rl.trainer.scoring import filter_batch, score_batch


@dataclass
class PromptSource:
    """The train prompts, how they are drawn, and how they are laid out for the workers."""

    records: list[PromptRecord]
    sampler: EpochSampler
    pad_id: int
    width: int  # every prompt batch is left padded to this (the same on every rank)
    next_uid: int = 0

    def take(self, k: int):
        batch = to_batch(
            [self.records[i] for i in self.sampler.take(k)], self.pad_id, self.width, self.next_uid
        )
        self.next_uid += k
        return batch


class RolloutCollector:
    """Generates, scores and filters until one step's batch of prompt groups is full."""

    def __init__(
        self,
        cfg: Config,
        workers,
        prompts: PromptSource,
        reward: CompositeReward,
        filters: FilterChain,
        sampling: Sampling,
        dp_size: int,
        console: Console,
    ):
        self.cfg, self.workers, self.prompts = cfg, workers, prompts
        self.reward, self.filters, self.sampling = reward, filters, sampling
        self.dp_size, self.console = dp_size, console

    def collect(self, step: int, timer: PhaseTimer) -> tuple[ScoredBatch | None, dict[str, float]]:
        """The step's scored batch (None when no group survived) and the collection metrics."""
        t, max_len = self.cfg.trainer, self.cfg.rollout.max_response_length
        target, cap = t.prompts_per_step, t.dynamic_sampling.max_gen_batches
        per_round = math.ceil(target * t.dynamic_sampling.oversample)
        parts, reward_parts, counts, kept, rounds, gen_tokens = [], [], {}, 0, 0, 0.0
        while kept < target:
            if cap > 0 and rounds >= cap:
                self._cap_reached(step, kept, target, rounds)
                break
            rounds += 1
            with timer("generate"):
                out = self.workers.generate_sequences(
                    self.prompts.take(per_round).batch, self.sampling
                )
            rollout = RolloutBatch(out)
            gen_tokens += float(rollout.response_mask.sum())
            with timer("reward"):
                scored, reward_metrics = score_batch(rollout, self.reward, max_len)
                part, filter_metrics, k = filter_batch(scored, self.filters, max_len)
            parts.append(part.batch)
            reward_parts.append((reward_metrics, float(len(rollout))))
            for key, v in filter_metrics.items():
                counts[key] = counts.get(key, 0.0) + v
            kept += k
        metrics = {
            **merge_weighted(reward_parts),
            **counts,
            "batch/gen_rounds": float(rounds),
            "batch/gen_tokens": gen_tokens,
            "batch/kept_groups": float(min(kept, target)),
        }
        batch = ScoredBatch(self._trim(step, Batch.concat(parts), target)) if kept else None
        return batch, metrics

    def _cap_reached(self, step: int, kept: int, target: int, rounds: int) -> None:
        msg = (
            f"step {step}: only {kept}/{target} prompt groups survived the filters after "
            f"{rounds} generation batches (trainer.dynamic_sampling.max_gen_batches)"
        )
        if self.cfg.trainer.dynamic_sampling.on_cap == "stop":
            raise TrainingError(msg + "; stopping (on_cap=stop)")
        self.console.print(
            f"[yellow]warning:[/yellow] {msg}; "
            + ("training on what was kept" if kept else "skipping the update")
        )

    def _trim(self, step: int, batch: Batch, target_groups: int) -> Batch:
        """The first ``target_groups`` groups, cut to a size every rank x mini-batch divides."""
        seen, rows = set(), []
        for i, uid in enumerate(batch[UID]):
            if uid not in seen and len(seen) == target_groups:
                break
            seen.add(uid)
            rows.append(i)
        unit = self.dp_size * self.cfg.trainer.mini_batches_per_step
        rows = rows[: len(rows) - len(rows) % unit]
        if not rows:
            raise TrainingError(
                f"step {step}: fewer kept samples than {unit} (data-parallel ranks x mini-batches)"
            )
        return batch[rows]
