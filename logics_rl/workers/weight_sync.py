"""Weight sync from the actor into the rollout engine, and the parity probe that checks it.

After every sync a fixed probe (pseudo-random token sequences, the same on every rank and step)
is scored by both engines at temperature 1; a log-prob difference above the tolerance stops the
run with both numbers, since a rollout engine serving other weights than the ones being trained
makes every importance ratio wrong without any other symptom.
"""

from __future__ import annotations

import torch

from logics_rl.batches import PROMPT_IDS, PROMPT_MASK, RESPONSE_IDS, RESPONSE_MASK
from logics_rl.config.schema import WeightSyncConfig
from logics_rl.errors import LogicsRLError
from logics_rl.protocol import Batch
from logics_rl.workers.actor import ActorRole
from logics_rl.workers.rollout import RolloutRole


class WeightSyncError(LogicsRLError, RuntimeError):
    """The rollout engine's log-probs disagree with the train engine's after a weight sync."""


def probe_sequences(vocab: int, count: int, length: int, seed: int = 1234) -> list[list[int]]:
    """Fixed pseudo-random token sequences, identical on every rank and every step."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (count, length), generator=g).tolist()


def probe_length(cfg: WeightSyncConfig, max_model_len: int) -> int:
    """Probe tokens: vLLM refuses a prompt that leaves no room for one generated token."""
    return max(2, min(cfg.probe_length, max_model_len - 1))


def default_tolerance(actor_dtype: torch.dtype, rollout_dtype: torch.dtype) -> float:
    """1e-3 when both engines compute in float32, else 1.0 (bfloat16 rounding).

    bfloat16 logits of magnitude 16-32 are rounded by up to 0.06-0.12, and the probe's random
    token sequences make large logits: SmolLM2-135M with a bf16-autocast train engine and vLLM
    CPU in bf16 measured a largest difference of 0.43 over 4 x 32 probe tokens. With bf16 on
    either side the probe catches gross errors (a missing, misnamed or mis-sharded tensor moves
    log-probs by nats), not a single stale small update."""
    return 1e-3 if actor_dtype == rollout_dtype == torch.float32 else 1.0


class WeightSync:
    """Streams the actor's weights into the rollout role and checks the result."""

    def __init__(self, actor: ActorRole, rollout: RolloutRole, cfg: WeightSyncConfig, probe):
        self.actor, self.rollout, self.cfg = actor, rollout, cfg
        self.probe = probe
        self.tol = cfg.probe_tol
        if self.tol is None:
            self.tol = default_tolerance(actor.engine.dtype, rollout.dtype)

    def sync(self) -> dict[str, float]:
        """Load the actor's weights into the rollout engine (stamped with the actor's version),
        then run the probe."""
        stats = self.rollout.load_weights(self.actor.export_weights(), self.actor.version)
        out = {f"weight_sync/{k}": float(v) for k, v in stats.items()}
        out["weight_sync/probe_abs_diff_max"] = self.check(rank=self.actor.parallel.dp_rank)
        return out

    def check(self, rank: int) -> float:
        """Max |logp_train - logp_rollout| over the probe; ``WeightSyncError`` past the tolerance."""
        seqs = self.probe
        rollout_lp = torch.tensor(self.rollout.prompt_logprobs(seqs))
        first = torch.tensor([s[:1] for s in seqs])
        rest = torch.tensor([s[1:] for s in seqs])
        batch = Batch.from_dict(
            {
                PROMPT_IDS: first,
                PROMPT_MASK: torch.ones_like(first, dtype=torch.bool),
                RESPONSE_IDS: rest,
                RESPONSE_MASK: torch.ones_like(rest, dtype=torch.bool),
            }
        )
        diff = float((self.actor.score_sequences(batch) - rollout_lp).abs().max())
        if not diff <= self.tol:
            raise WeightSyncError(
                f"weight-sync parity probe failed on rank {rank}: max |logp_train - "
                f"logp_rollout| = {diff:.4g} exceeds the tolerance {self.tol:.4g} "
                f"({len(seqs)} probe sequences of {len(seqs[0])} tokens; "
                "rollout.weight_sync.probe_tol sets it)"
            )
        return diff
