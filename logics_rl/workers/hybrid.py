"""The hybrid worker: actor (train engine), rollout engine and an optional frozen reference in ONE
Ray actor per rank, sharing its device. It composes the roles and calls their methods; the driver
sees one group with these calls:

    init_model, generate_sequences, compute_log_prob, compute_ref_log_prob, update_actor,
    sync_weights, save_checkpoint, load_checkpoint, export_hf

Every weight sync is checked by the parity probe (``weight_sync.py``).
"""

from __future__ import annotations

import base64
import json
import os
import resource
from dataclasses import dataclass, field

import torch

from logics_rl.batches import TrainBatch, temperature_of
from logics_rl.checkpoint import read_json
from logics_rl.config.schema import RolloutConfig, TrainEngineConfig
from logics_rl.controller import Dispatch, Worker, register
from logics_rl.engines.rollout import Sampling, build_rollout_engine
from logics_rl.engines.train import build_train_engine
from logics_rl.protocol import Batch
from logics_rl.workers.actor import ActorRole, UpdateSpec
from logics_rl.workers.reference import ReferenceRole
from logics_rl.workers.rollout import RolloutRole
from logics_rl.workers.weight_sync import WeightSync, probe_length, probe_sequences


@dataclass
class HybridSpec:
    """What one hybrid worker builds (derived from the run config by the trainer)."""

    model_path: str
    actor: TrainEngineConfig = field(default_factory=TrainEngineConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    update: UpdateSpec = field(default_factory=UpdateSpec)
    need_ref: bool = False
    max_model_len: int = 2048  # prompt + response tokens
    total_steps: int = 1  # optimizer steps of the whole run (lr schedule)
    seed: int = 0


def _rng_to_text(state: torch.Tensor) -> str:
    return base64.b64encode(state.numpy().tobytes()).decode("ascii")


def _rng_from_text(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


class HybridWorker(Worker):
    """Actor + rollout (+ reference) on one device; the roles do the work."""

    def __init__(self, spec: HybridSpec):
        super().__init__()
        self.spec = spec
        self.actor: ActorRole | None = None
        self.rollout: RolloutRole | None = None
        self.reference: ReferenceRole | None = None
        self.weight_sync: WeightSync | None = None

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def init_model(self) -> dict[str, float]:
        from transformers import AutoTokenizer

        spec = self.spec
        self.init_distributed()
        tokenizer = AutoTokenizer.from_pretrained(spec.model_path)
        engine = build_train_engine(
            spec.actor, spec.model_path, total_steps=spec.total_steps, seed=spec.seed
        )
        self.actor = ActorRole(engine, spec.update)
        self.parallel = engine.parallel
        if spec.need_ref:
            ref = build_train_engine(spec.actor, spec.model_path, trainable=False, seed=spec.seed)
            self.reference = ReferenceRole(ref)
        rollout = build_rollout_engine(
            spec.rollout,
            spec.model_path,
            max_model_len=spec.max_model_len,
            seed=spec.seed + self.rank,
        )
        self.rollout = RolloutRole(rollout, tokenizer)
        probe = probe_sequences(
            min(len(tokenizer), engine.hf_config.vocab_size),
            spec.rollout.weight_sync.probe_sequences,
            probe_length(spec.rollout.weight_sync, spec.max_model_len),
        )
        self.weight_sync = WeightSync(self.actor, self.rollout, spec.rollout.weight_sync, probe)
        # Different ranks sample differently; the train engine's seeding above must not depend
        # on the rollout engine (vLLM reseeds the global generator when it starts).
        torch.manual_seed(spec.seed + self.rank)
        return {"weight_sync/probe_abs_diff_max": self.weight_sync.check(self.rank)}

    # ------------------------------------------------------------------ rollout
    # every rank has its own rollout engine: ranks of one model-parallel group generate apart
    @register(dispatch=Dispatch.ALL_RANKS)
    def generate_sequences(self, prompts: Batch, sampling: Sampling) -> Batch:
        return self.rollout.generate(prompts, sampling)

    # ------------------------------------------------------------------ log-probs
    @register(dispatch=Dispatch.DP_COMPUTE)
    def compute_log_prob(self, batch: Batch) -> Batch:
        self.rollout.release_memory()
        return self.actor.compute_log_prob(batch, temperature_of(batch))

    @register(dispatch=Dispatch.DP_COMPUTE)
    def compute_ref_log_prob(self, batch: Batch) -> Batch:
        if self.reference is None:
            raise RuntimeError("no reference model was built (need_ref is false)")
        self.rollout.release_memory()
        return self.reference.compute_ref_log_prob(batch, temperature_of(batch))

    # ------------------------------------------------------------------ training
    @register(dispatch=Dispatch.DP_COMPUTE, pad=False)
    def update_actor(self, batch: Batch) -> dict[str, float]:
        self.rollout.release_memory()
        return self.actor.update(TrainBatch(batch))

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def sync_weights(self) -> dict[str, float]:
        """Stream the actor's weights into the rollout engine, then run the parity probe.

        Also reports the peak resident memory of this worker process so far (max over ranks):
        the step's generation and update have run by then."""
        out = self.weight_sync.sync()
        out["memory/worker_peak_rss_gb_max"] = peak_rss_gb()
        return out

    # ------------------------------------------------------------------ checkpoints
    @register(dispatch=Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, path: str) -> None:
        self.actor.save(path)
        state = {
            "torch_rng": _rng_to_text(torch.get_rng_state()),
            "rollout": self.rollout.state_dict(),
            "actor": self.actor.state_dict(),
        }
        with open(os.path.join(path, f"worker_rank{self.rank}.json"), "w", encoding="utf-8") as fh:
            json.dump(state, fh)

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, path: str) -> None:
        self.actor.load(path)
        state = read_json(os.path.join(path, f"worker_rank{self.rank}.json"))
        self.rollout.load_state_dict(state["rollout"])
        self.actor.load_state_dict(state["actor"])
        self.weight_sync.sync()
        # last: nothing above may draw from the generator the rollout engine samples with
        torch.set_rng_state(_rng_from_text(state["torch_rng"]))

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def export_hf(self, path: str) -> None:
        self.actor.export_hf(path)


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
