"""The hybrid worker: actor (train engine), rollout engine and an optional frozen reference in ONE
Ray actor per rank, sharing its device. The driver sees one group with these calls:

    init_model, generate_sequences, compute_log_prob, compute_ref_log_prob, update_actor,
    sync_weights, parity_probe, save_checkpoint, load_checkpoint, export_hf

Every weight sync is checked: a fixed probe is scored by the train engine and by the rollout
engine, and a difference above the tolerance stops the run with both numbers in the error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from logics_rl.config.schema import AlgorithmConfig, RolloutEngineConfig, TrainEngineConfig
from logics_rl.controller import Dispatch, Worker, register
from logics_rl.controller.dispatch import PAD_META
from logics_rl.engines.rollout.base import RolloutEngine, Sampling
from logics_rl.protocol import Batch
from logics_rl.workers.actor import ActorRole
from logics_rl.workers.reference import ReferenceRole
from logics_rl.workers.rollout import RolloutRole


class WeightSyncError(RuntimeError):
    """The rollout engine's log-probs disagree with the train engine's after a weight sync."""


@dataclass
class HybridSpec:
    """What one hybrid worker builds (derived from the run config by the trainer)."""

    model_path: str
    train: TrainEngineConfig = field(default_factory=TrainEngineConfig)
    rollout: RolloutEngineConfig = field(default_factory=RolloutEngineConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    need_ref: bool = False
    max_model_len: int = 2048  # prompt + response tokens
    total_steps: int = 1  # optimizer steps of the whole run (lr schedule)
    mini_batches: int = 1  # optimizer steps per update_actor call
    epochs: int = 1  # passes over the batch per update_actor call
    seed: int = 0


def build_rollout_engine(spec: HybridSpec, seed: int) -> RolloutEngine:
    if spec.rollout.engine == "vllm":
        from logics_rl.engines.rollout.vllm import VLLMEngine

        return VLLMEngine(
            spec.model_path, spec.rollout, max_model_len=spec.max_model_len, seed=seed
        )
    if spec.rollout.engine == "hf":
        from logics_rl.engines.rollout.hf import HFEngine
        from logics_rl.engines.train.fsdp import resolve_dtype

        # the HF engine runs on the CPU: "auto" is float32 there
        return HFEngine(
            spec.model_path, seed=seed, dtype=resolve_dtype(spec.rollout.dtype, on_gpu=False)
        )
    raise ValueError(f"unknown rollout engine {spec.rollout.engine!r}; use vllm or hf")


def one_row_per_padding_prompt(out: Batch, num_prompts: int, pad: int) -> Batch:
    """Keep one sample per DP padding prompt, so that the controller strips exactly them.

    DP_COMPUTE pads the prompts to a multiple of the data-parallel size (copies at the end) and
    drops as many rows from the end of the collected output; with ``n`` samples per prompt each
    padding prompt yields ``n`` rows, and ``n - 1`` of them would otherwise survive as extra
    samples (e.g. a validation set that does not divide by the number of ranks).
    """
    if not pad:
        return out
    n = len(out) // num_prompts
    real = (num_prompts - pad) * n
    return out[list(range(real)) + [real + j * n for j in range(pad)]]


def probe_sequences(vocab: int, count: int, length: int, seed: int = 1234) -> list[list[int]]:
    """Fixed pseudo-random token sequences, identical on every rank and every step."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (count, length), generator=g).tolist()


def probe_length(spec: HybridSpec) -> int:
    """Probe tokens: vLLM refuses a prompt that leaves no room for one generated token."""
    return max(2, min(spec.rollout.probe_length, spec.max_model_len - 1))


class HybridWorker(Worker):
    def __init__(self, spec: HybridSpec):
        super().__init__()
        self.spec = spec
        self.actor: ActorRole | None = None
        self.rollout: RolloutRole | None = None
        self.reference: ReferenceRole | None = None

    def dispatch_info(self) -> tuple[int, int, bool]:
        p = self.actor.engine.parallel if self.actor else None
        if p is None:
            return super().dispatch_info()
        return p.dp_rank, p.dp_size, p.collects

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def init_model(self) -> dict[str, float]:
        from transformers import AutoTokenizer

        from logics_rl.engines.train.fsdp import FSDPEngine

        if self.spec.train.backend != "fsdp":
            raise ValueError(f"unknown train backend {self.spec.train.backend!r}; available: fsdp")
        self.init_distributed()
        seed = self.spec.seed + self.rank
        tokenizer = AutoTokenizer.from_pretrained(self.spec.model_path)
        actor = FSDPEngine(
            self.spec.model_path,
            self.spec.train,
            total_steps=self.spec.total_steps,
            seed=self.spec.seed,
        )
        self.actor = ActorRole(actor, self.spec)
        if self.spec.need_ref:
            ref = FSDPEngine(
                self.spec.model_path, self.spec.train, trainable=False, seed=self.spec.seed
            )
            self.reference = ReferenceRole(ref)
        self.rollout = RolloutRole(build_rollout_engine(self.spec, seed), tokenizer)
        self._probe = probe_sequences(
            min(len(tokenizer), actor.hf_config.vocab_size),
            self.spec.rollout.probe_sequences,
            probe_length(self.spec),
        )
        # Different ranks sample differently; the train engine's seeding above must not depend
        # on the rollout engine (vLLM reseeds the global generator when it starts).
        torch.manual_seed(seed)
        return {"weight_sync/probe_max_abs_diff": self._check_parity()}

    # ------------------------------------------------------------------ rollout
    @register(dispatch=Dispatch.DP_COMPUTE)
    def generate_sequences(self, prompts: Batch, sampling: Sampling) -> Batch:
        self.rollout.engine.wake_up()
        out = self.rollout.generate(prompts, sampling)
        return one_row_per_padding_prompt(out, len(prompts), prompts.meta.get(PAD_META, 0))

    # ------------------------------------------------------------------ log-probs
    @register(dispatch=Dispatch.DP_COMPUTE)
    def compute_log_prob(self, batch: Batch) -> Batch:
        self.rollout.engine.sleep()
        return self.actor.compute_log_prob(batch)

    @register(dispatch=Dispatch.DP_COMPUTE)
    def compute_ref_log_prob(self, batch: Batch) -> Batch:
        if self.reference is None:
            raise RuntimeError("no reference model was built (need_ref is false)")
        self.rollout.engine.sleep()
        return self.reference.compute_ref_log_prob(batch)

    # ------------------------------------------------------------------ training
    @register(dispatch=Dispatch.DP_COMPUTE)
    def update_actor(self, batch: Batch) -> dict[str, float]:
        if batch.meta.get(PAD_META, 0):
            raise ValueError(
                "update_actor got padding rows: the train batch must divide by the data-parallel size"
            )
        self.rollout.engine.sleep()
        return self.actor.update(batch)

    # ------------------------------------------------------------------ weight sync
    @register(dispatch=Dispatch.ONE_TO_ALL)
    def sync_weights(self) -> dict[str, float]:
        """Stream the train engine's weights into the rollout engine, then run the probe."""
        return self._sync()

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def parity_probe(self) -> float:
        """Score the probe with both engines; raise ``WeightSyncError`` past the tolerance."""
        return self._check_parity()

    def _sync(self) -> dict[str, float]:
        self.rollout.engine.wake_up()
        stats = self.rollout.engine.update_weights(self.actor.engine.named_parameters_for_export())
        out = {f"weight_sync/{k}": float(v) for k, v in stats.items()}
        out["weight_sync/probe_max_abs_diff"] = self._check_parity()
        return out

    def _check_parity(self) -> float:
        seqs = self._probe
        rollout_lp = torch.tensor(self.rollout.engine.prompt_logprobs(seqs))
        first = torch.tensor([s[:1] for s in seqs])
        rest = torch.tensor([s[1:] for s in seqs])
        batch = Batch.from_dict(
            {
                "prompt_ids": first,
                "prompt_mask": torch.ones_like(first, dtype=torch.bool),
                "response_ids": rest,
                "response_mask": torch.ones_like(rest, dtype=torch.bool),
            }
        )
        train_lp = self.actor.engine.compute_log_prob(batch).logp
        diff = float((train_lp - rollout_lp).abs().max())
        tol = self.spec.rollout.probe_tol
        if tol is None:  # fp32 only when BOTH engines compute in fp32
            fp32 = self.actor.engine.dtype == self.rollout.engine.dtype == torch.float32
            tol = 1e-3 if fp32 else 0.1
        if not diff <= tol:
            raise WeightSyncError(
                f"weight-sync parity probe failed on rank {self.rank}: max |logp_train - "
                f"logp_rollout| = {diff:.4g} exceeds the tolerance {tol:.4g} "
                f"({len(seqs)} probe sequences of {len(seqs[0])} tokens)"
            )
        return diff

    # ------------------------------------------------------------------ checkpoints
    @register(dispatch=Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, path: str) -> None:
        from logics_rl.engines.train.fsdp import copy_tokenizer_files

        self.actor.engine.save_checkpoint(path)
        if self.rank == 0:  # what export needs besides the weights
            hf_dir = os.path.join(path, "hf_config")
            os.makedirs(hf_dir, exist_ok=True)
            self.actor.engine.hf_config.save_pretrained(hf_dir)
            copy_tokenizer_files(self.spec.model_path, hf_dir)
        state = {
            "torch_rng": torch.get_rng_state(),
            "rollout": self.rollout.engine.state_dict(),
            "actor": self.actor.state_dict(),
        }
        torch.save(state, os.path.join(path, f"worker_rank{self.rank}.pt"))

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, path: str) -> None:
        self.actor.engine.load_checkpoint(path)
        state = torch.load(os.path.join(path, f"worker_rank{self.rank}.pt"), weights_only=False)
        self.rollout.engine.load_state_dict(state["rollout"])
        self.actor.load_state_dict(state["actor"])
        self._sync()
        # last: nothing above may draw from the generator the rollout engine samples with
        torch.set_rng_state(state["torch_rng"])

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def export_hf(self, path: str) -> None:
        self.actor.engine.export_hf(path)
