"""The actor role: the policy being trained (a train engine + the policy-update loop).

``update`` takes this rank's part of the train batch, cuts it into ``mini_batches`` equal parts
(one optimizer step each) for ``epochs`` passes, and normalises every mini-batch's loss by counts
summed over all data-parallel ranks, so the update is the same however the batch is split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from logics_rl.algorithms.actor_loss import ActorLossInput, actor_loss
from logics_rl.algorithms.aggregation import GlobalNorm
from logics_rl.engines.train.base import TrainEngine
from logics_rl.metrics import merge_weighted
from logics_rl.protocol import Batch

if TYPE_CHECKING:
    from logics_rl.workers.hybrid import HybridSpec


def rollout_mismatch(
    old_logp: torch.Tensor, rollout_logp: torch.Tensor, mask: torch.Tensor
) -> dict[str, float]:
    """Train engine vs rollout engine on the sampled tokens: |diff| mean / max and k3 KL."""
    m = mask.bool()
    if not m.any():
        return {}
    diff = (old_logp - rollout_logp)[m]
    log_ratio = (rollout_logp - old_logp)[m].clamp(-20, 20)
    k3 = torch.exp(log_ratio) - log_ratio - 1  # KL(train || rollout), Schulman's k3
    return {
        "mismatch/abs_diff_mean": float(diff.abs().mean()),
        "mismatch/abs_diff_max": float(diff.abs().max()),
        "mismatch/k3_kl": float(k3.mean()),
    }


def loss_mask_of(batch: Batch) -> torch.Tensor:
    """Tokens that count in the loss: ``loss_mask`` when a filter masked samples, else the response."""
    return batch.get("loss_mask", batch["response_mask"])


class ActorRole:
    def __init__(self, engine: TrainEngine, spec: HybridSpec):
        self.engine = engine
        self.spec = spec
        self.updates = 0  # update() calls so far: seeds the mini-batch shuffle

    def state_dict(self) -> dict:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])

    def compute_log_prob(self, batch: Batch) -> Batch:
        temperature = float(batch.meta.get("temperature", 1.0))
        out = self.engine.compute_log_prob(batch, temperature=temperature, with_entropy=True)
        return Batch.from_dict({"old_logp": out.logp, "entropy": out.entropy})

    def _global_norm(self, part: Batch) -> GlobalNorm:
        mask = loss_mask_of(part).float()
        counts = torch.tensor([mask.sum(), (mask.sum(1) > 0).sum()], dtype=torch.float64)
        if self.engine.parallel.dp_size > 1:
            dist.all_reduce(counts)
        const = self.spec.algorithm.policy_loss.loss_norm_const
        if const is None:
            const = float(part["response_ids"].shape[1])
        return GlobalNorm(
            num_tokens=int(counts[0]), num_seqs=int(counts[1]), norm_const=float(const)
        )

    def update(self, batch: Batch) -> dict[str, float]:
        spec = self.spec
        if len(batch) % spec.mini_batches:
            raise ValueError(
                f"this rank's {len(batch)} rows do not split into {spec.mini_batches} mini-batches"
            )
        algo = spec.algorithm
        results: list[tuple[dict[str, float], float]] = []
        rank = self.engine.parallel.dp_rank
        for epoch in range(spec.epochs):
            g = torch.Generator().manual_seed(
                spec.seed * 1_000_003 + self.updates * 1009 + epoch * 31 + rank
            )
            order = (
                torch.randperm(len(batch), generator=g)
                if spec.epochs > 1 or spec.mini_batches > 1
                else None
            )
            shuffled = batch[order] if order is not None else batch
            for part in shuffled.chunk(spec.mini_batches):
                norm = self._global_norm(part)

                def loss_fn(
                    mb: Batch, logp_BT: torch.Tensor, entropy_BT: torch.Tensor | None, norm=norm
                ):
                    inp = ActorLossInput(
                        logp_BT=logp_BT,
                        old_logp_BT=mb["old_logp"] if "old_logp" in mb else logp_BT.detach(),
                        advantages_BT=mb["advantages"],
                        mask_BT=loss_mask_of(mb),
                        rollout_logp_BT=mb.get("rollout_logp"),
                        ref_logp_BT=mb.get("ref_logp"),
                        entropy_BT=entropy_BT,
                    )
                    return actor_loss(inp, algo, norm)

                # entropy every step, bonus or not: Logics-STEM reports entropy explosion in RLVR
                metrics = self.engine.train_step(part, loss_fn, needs_entropy=True)
                results.append((metrics, float(loss_mask_of(part).sum())))
        self.updates += 1
        merged = merge_weighted(results)
        # engine counters are totals over the mini-batches, not means
        for key in ("tokens", "loss_tokens", "micro_batches", "skipped_steps"):
            merged[key] = sum(m.get(key, 0.0) for m, _ in results)
        out = {k if k.startswith("actor/") else f"actor/{k}": v for k, v in merged.items()}
        out["actor/optimizer_steps"] = float(spec.epochs * spec.mini_batches)
        return out
