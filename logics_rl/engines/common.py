"""Engine-agnostic settings shared by train and rollout engines: compute dtype and attention
kernel, resolved from the config's ``auto`` for the device the engine runs on."""

from __future__ import annotations

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def on_gpu() -> bool:
    return torch.cuda.is_available()


def cpu_emulated_dtypes() -> list[str]:
    """The half-precision dtypes this CPU has no matmul instructions for (torch emulates them).

    bfloat16 needs AVX512-BF16 or AMX, float16 AMX-FP16. Emulated, they are not a little slower
    but unusable: on a 2-core AVX2 host a 1024^3 bfloat16 matmul ran at 0.7 GFLOP/s against
    126 in float32, while an AVX512-BF16 host runs bfloat16 at about twice its float32 rate
    (benchmarks/RESULTS.md)."""
    cpu = torch.cpu

    def has(check: str) -> bool:
        fn = getattr(cpu, check, None)
        return bool(fn()) if fn is not None else False

    out = []
    if not (has("_is_avx512_bf16_supported") or has("_is_amx_tile_supported")):
        out.append("bfloat16")
    if not has("_is_amx_fp16_supported"):
        out.append("float16")
    return out


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
