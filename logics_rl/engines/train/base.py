"""The training engine protocol: what workers may ask of FSDP2 or Megatron-core engines.

Batches use the rollout layout (see ``packing.py``): ``prompt_ids``/``prompt_mask`` [B, P] left
padded, ``response_ids``/``response_mask`` [B, R] right padded; batches given to
``forward_backward`` also carry ``loss_mask`` [B, R] (the tokens that count in the loss, which
weight the merged metrics). Per-token outputs are [B, R], aligned with ``response_ids`` and zero
on padding.

Parallelism is described by ``ParallelInfo`` so the single controller can dispatch by
data-parallel rank: a tensor / pipeline parallel engine gives every rank of one model-parallel
group the same data and has exactly one of them return it. Log-probs over a vocab-parallel LM head
and export gathered to HF parameter names are the engine's business; callers see full [B, R]
tensors and ``(hf_name, full_tensor)`` pairs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from logics_rl.protocol import Batch

MODEL_FILES = "hf_config"  # config + tokenizer inside a checkpoint, for offline export

# loss_fn(micro_batch, logp_BT, entropy_BT | None) -> (scalar loss, metrics)
# The loss must already be normalised by global (mini-batch, all ranks) counts, so that the sum
# over micro-batches and ranks is the mini-batch loss (see algorithms.aggregation).
LossFn = Callable[
    [Batch, torch.Tensor, "torch.Tensor | None"], tuple[torch.Tensor, dict[str, float]]
]


@dataclass(frozen=True)
class ParallelInfo:
    dp_rank: int = 0
    dp_size: int = 1
    tp_rank: int = 0
    tp_size: int = 1
    pp_rank: int = 0
    pp_size: int = 1

    @property
    def collects(self) -> bool:
        """Whether this rank returns its data-parallel group's outputs."""
        return self.tp_rank == 0 and self.pp_rank == self.pp_size - 1


class MicroBatchLosses:
    """The loss of each micro-batch of a ``forward_backward`` and the metrics they add up to.

    ``loss(mb, packed, rows, lp, entropy)`` calls the loss function on the micro-batch's
    per-token outputs (``packed.scatter`` back to [B, R]); a stand-in micro-batch (``rows``
    empty: ranks must run the same number of passes) gives its loss times zero and no metrics.
    ``result(n)``: the token-weighted metrics plus ``tokens``, ``loss_tokens`` and
    ``micro_batches``.
    """

    def __init__(self, loss_fn: LossFn, device: torch.device, needs_entropy: bool):
        self.loss_fn, self.device, self.needs_entropy = loss_fn, device, needs_entropy
        self.parts: list[tuple[dict[str, float], float]] = []
        self.tokens, self.loss_tokens = 0, 0.0

    def loss(self, mb: Batch, packed, rows: list[int], lp, entropy) -> torch.Tensor:
        ent_BT = packed.scatter(entropy) if self.needs_entropy else None
        loss, metrics = self.loss_fn(mb.to(self.device), packed.scatter(lp), ent_BT)
        if not rows:
            return loss * 0.0
        self.count(mb, packed.num_tokens, metrics)
        return loss

    def count(self, mb: Batch, tokens: int, metrics: dict[str, float] | None = None) -> None:
        weight = float(mb["loss_mask"].sum())
        if metrics is not None:
            self.parts.append((metrics, weight))
        self.tokens += tokens
        self.loss_tokens += weight

    def result(self, micro_batches: int) -> dict[str, float]:
        from logics_rl.metrics import merge_weighted

        out = merge_weighted(self.parts)
        out.update(
            tokens=float(self.tokens),
            loss_tokens=self.loss_tokens,
            micro_batches=float(micro_batches),
        )
        return out


@dataclass
class LogProbs:
    logp: torch.Tensor  # [B, R]
    entropy: torch.Tensor | None  # [B, R]


class TrainEngine(ABC):
    """A causal LM being trained (or a frozen reference, when built without an optimizer).

    Built by ``logics_rl.engines.train.build_train_engine``; callers never name the class.
    """

    kind: ClassVar[str]  # the ``actor.engine`` value that selects it; recorded in checkpoints
    model_path: str  # the HF directory it was loaded from (its tokenizer goes into exports)
    parallel: ParallelInfo  # this rank's place in the data / tensor / pipeline layout
    hf_config: Any  # the HF ``PretrainedConfig`` of the model (names, vocab, tied embeddings)
    dtype: torch.dtype  # compute dtype of the forward (parameters may be kept in float32)

    @abstractmethod
    def all_reduce_dp(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the data-parallel group, in place (identity with one rank).

        Global loss normalisers use it: summing over the whole world would count every
        tensor / pipeline parallel rank of one data-parallel rank again.
        """

    @abstractmethod
    def compute_log_prob(
        self, batch: Batch, *, temperature: float, with_entropy: bool = False
    ) -> LogProbs:
        """Log-probs (and entropy) of the response tokens under the current weights, no grad.

        ``temperature`` divides the logits: pass the one the samples were drawn at, so the
        log-probs are those of the sampling distribution."""

    @abstractmethod
    def forward_backward(
        self, batch: Batch, loss_fn: LossFn, *, temperature: float, needs_entropy: bool = False
    ) -> dict[str, float]:
        """Accumulate gradients on this rank's part of a mini-batch (no optimizer step).

        Micro-batches by token budget; the sum of losses over micro-batches and data-parallel
        ranks is the mini-batch loss. Returns loss-function metrics (token-weighted means;
        ``*_max`` keys maxed) plus ``tokens`` (packed tokens processed) and ``micro_batches``.
        """

    @abstractmethod
    def optimizer_step(self) -> dict[str, float]:
        """Clip, step, zero gradients, advance the lr schedule; returns ``grad_norm`` and ``lr``."""

    def train_step(
        self, batch: Batch, loss_fn: LossFn, *, temperature: float, needs_entropy: bool = False
    ) -> dict[str, float]:
        """``forward_backward`` then ``optimizer_step``."""
        out = self.forward_backward(
            batch, loss_fn, temperature=temperature, needs_entropy=needs_entropy
        )
        out.update(self.optimizer_step())
        return out

    @abstractmethod
    def named_parameters_for_export(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full tensors under HF names, one at a time (collective: every rank must iterate)."""

    @abstractmethod
    def save_checkpoint(self, path: str) -> None:
        """Sharded model + optimizer + scheduler state under ``path`` (collective), plus what
        ``export_offline`` needs (the model config and tokenizer) and ``engine.json`` naming
        the engine kind."""

    def write_checkpoint_meta(self, path: str) -> None:
        """What every engine's checkpoint holds besides its shards (rank 0 writes it):
        ``scheduler.json``, the model config and tokenizer (``MODEL_FILES``) and
        ``engine.json`` naming the engine kind."""
        import json
        import os

        from logics_rl.models.hf import save_model_files

        scheduler = getattr(self, "scheduler", None)
        if scheduler is not None:
            with open(os.path.join(path, "scheduler.json"), "w", encoding="utf-8") as fh:
                json.dump(scheduler.state_dict(), fh)
        save_model_files(self.hf_config, self.model_path, os.path.join(path, MODEL_FILES))
        with open(os.path.join(path, "engine.json"), "w", encoding="utf-8") as fh:
            json.dump({"engine": self.kind}, fh)

    @abstractmethod
    def load_checkpoint(self, path: str) -> None:
        """Restore what ``save_checkpoint`` wrote (collective)."""

    @abstractmethod
    def export_hf(self, path: str) -> None:
        """A HF model directory (config, weights, tokenizer) loadable by transformers and vLLM."""

    @classmethod
    @abstractmethod
    def export_offline(cls, checkpoint: str, out_dir: str) -> None:
        """A HF model directory from a checkpoint this engine kind wrote: one process, no Ray,
        no process group (``python -m logics_rl.export``)."""

    optimizer: Any = None  # torch optimizer (None: a frozen engine)
    scheduler: Any = None  # its lr schedule

    def _setup(self, model_path: str, cfg: Any, trainable: bool) -> None:
        """What every engine's constructor starts with: the process group must exist (the worker
        group's), then the device and compute dtype for where it runs."""
        import torch.distributed as dist

        from logics_rl.engines.common import on_gpu, resolve_dtype

        if not dist.is_initialized():
            raise RuntimeError(
                f"{type(self).__name__} needs torch.distributed initialised "
                "(Worker.init_distributed)"
            )
        self.cfg, self.model_path, self.trainable = cfg, model_path, trainable
        self.on_gpu = on_gpu()
        self.device = (
            torch.device("cuda", torch.cuda.current_device())
            if self.on_gpu
            else torch.device("cpu")
        )
        self.dtype = resolve_dtype(cfg.dtype, self.on_gpu)

    def _step_if_finite(self, grad_norm: float, lr: float) -> dict[str, float]:
        """The end of ``optimizer_step`` (gradients already clipped): step unless the norm is
        NaN / inf (then count it), zero the gradients, advance the schedule."""
        finite = math.isfinite(grad_norm)
        if finite:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return {"grad_norm": grad_norm, "lr": lr, "skipped_steps": 0.0 if finite else 1.0}

    @property
    def lr(self) -> float:
        """The learning rate the next step will use."""
        return float(self.optimizer.param_groups[0]["lr"]) if self.optimizer else 0.0
