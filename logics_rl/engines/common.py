"""Engine-agnostic settings shared by train and rollout engines: compute dtype and attention
kernel, resolved from the config's ``auto`` for the device the engine runs on."""

from __future__ import annotations

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def on_gpu() -> bool:
    return torch.cuda.is_available()


def resolve_dtype(name: str, gpu: bool) -> torch.dtype:
    """``auto`` is bfloat16 on GPU and float32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if gpu else torch.float32
    try:
        return _DTYPES[str(name)]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use auto, {', '.join(_DTYPES)}") from None


def resolve_attn(name: str, gpu: bool) -> str:
    """``auto`` is flash-attn 2 on GPU when installed, else sdpa; eager on CPU.

    On CPU sdpa dispatches to its flash kernel, whose backward with a padding mask is slow at
    the short rows of RL batches: an update of SmolLM2-135M (8 padded rows) took 3.6 s with sdpa
    vs 3.1 s eager in bfloat16, and the tiny quickstart model's attention backward alone was 40 %
    of its update under sdpa (benchmarks/RESULTS.md)."""
    if name != "auto":
        return str(name)
    if gpu:
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            return "sdpa"
    return "eager"
    return "sdpa"
