"""The rollout engine protocol: generate, score prompts, take new weights, sleep / wake up.

Log-probs returned by ``generate`` are those of the sampling distribution actually used
(temperature and top-k / top-p applied), so they can be compared with the train engine's
log-probs at the same temperature. ``prompt_logprobs`` is at temperature 1 (the weight-sync probe).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch


@dataclass
class Sampling:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False  # run to max_tokens past EOS (cost benchmarks)


@dataclass
class Generation:
    """``len(prompts) * n`` samples, prompt-major (all samples of prompt 0, then prompt 1...)."""

    response_ids: list[list[int]]
    logprobs: list[list[float]]
    finish_reasons: list[str]  # "stop" (EOS or stop string) | "length" (hit max_tokens)


class RolloutEngine(ABC):
    # Compute dtype of the engine's forward; the default weight-sync tolerance depends on it.
    dtype: torch.dtype = torch.float32

    @abstractmethod
    def generate(self, prompt_ids: list[list[int]], sampling: Sampling) -> Generation: ...

    @abstractmethod
    def prompt_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        """log p(token_t | tokens_<t) for t >= 1 of every sequence, at temperature 1."""

    @abstractmethod
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, float]:
        """Load new weights (HF names); returns ``{"bytes": ..., "seconds": ...}``."""

    def sleep(self) -> None:
        """Free weights and KV cache while training (GPU); a no-op where unsupported."""
        return None

    def wake_up(self) -> None:
        """Undo ``sleep``; a no-op where unsupported."""
        return None

    def state_dict(self) -> dict:
        """Sampling state to checkpoint (for exactly resumable, seeded engines)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


def buckets(
    named_tensors: Iterable[tuple[str, torch.Tensor]],
    bucket_bytes: int,
    dtype: torch.dtype | None = None,
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Group a stream of tensors into lists of at most ``bucket_bytes`` (one tensor may exceed it)."""
    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, tensor in named_tensors:
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and size + nbytes > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, tensor.contiguous()))
        size += nbytes
    if bucket:
        yield bucket
