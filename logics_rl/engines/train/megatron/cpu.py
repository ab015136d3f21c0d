"""What megatron-core needs to run on a machine without CUDA: applied only there, only here.

megatron-core 0.16 assumes a CUDA device in a few places that have nothing to do with the math:
``torch.cuda.current_device()`` for where rotary frequencies, the global memory buffer and
attention scratch tensors live, ``torch.cuda.synchronize()`` around the pipeline's shape
exchange, and ``device="cuda"`` / ``.cuda()`` in the schedules' bookkeeping tensors and a tied
embedding's last-stage copy. On CPU all of them mean the CPU; the model's arithmetic is
unchanged. Fusions are off and point-to-point sends are not batched
(``engine.transformer_config``), and the RNG tracker is the CPU-safe one.
"""

from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode

_PATCHED = False


def patch_cuda_device() -> None:
    """``torch.cuda.current_device()`` returns the CPU device and ``torch.cuda.synchronize()``
    (pipeline shape exchange) returns at once: CPU ops are synchronous (idempotent; no-op with
    CUDA)."""
    global _PATCHED
    if _PATCHED or torch.cuda.is_available():
        return
    torch.cuda.current_device = lambda: torch.device("cpu")
    torch.cuda.synchronize = lambda device=None: None
    _PATCHED = True


def _is_cuda(device) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.split(":")[0] == "cuda"
    return False


class _CudaToCpu(TorchFunctionMode):
    """Any torch call asked to place a tensor on ``cuda`` places it on the CPU instead."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.cuda:
            return args[0]
        if _is_cuda(kwargs.get("device")):
            kwargs["device"] = torch.device("cpu")
        if func is torch.Tensor.to:
            args = tuple(torch.device("cpu") if _is_cuda(a) else a for a in args)
        return func(*args, **kwargs)


def cpu_mode():
    """A context in which ``device="cuda"`` means the CPU (a no-op context with CUDA)."""
    if torch.cuda.is_available():
        return contextlib.nullcontext()
    return _CudaToCpu()
