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

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from logics_rl.protocol import Batch

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


@dataclass
class LogProbs:
    logp: torch.Tensor  # [B, R]
    entropy: torch.Tensor | None  # [B, R]


class TrainEngine(ABC):
    """A causal LM being trained (or a frozen reference, when built without an optimizer).

    Built by ``logics_rl.engines.train.build_train_engine``; callers never name the class.
    """

    kind: ClassVar[str]  # the ``actor.engine`` value that selects it; recorded in checkpoints
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

    @property
    @abstractmethod
    def lr(self) -> float:
        """The learning rate the next step will use."""
