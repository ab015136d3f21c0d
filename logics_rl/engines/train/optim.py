"""The optimizer and learning-rate schedule every train engine builds from ``OptimConfig``:
AdamW, linear warm-up, then constant or cosine decay to ``min_lr_ratio``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from logics_rl.config.schema import OptimConfig


def lr_lambda(cfg: OptimConfig, total_steps: int) -> Callable[[int], float]:
    """The lr multiplier of optimizer step ``step`` (0-based)."""

    def fn(step: int) -> float:
        if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "cosine":
            span = max(1, total_steps - cfg.warmup_steps)
            progress = min(1.0, (step - cfg.warmup_steps) / span)
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )
        raise ValueError(f"unknown lr schedule {cfg.schedule!r}; use constant or cosine")

    return fn


def build_optimizer(
    cfg: OptimConfig, params: Iterable[torch.nn.Parameter], total_steps: int, *, fused: bool = False
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``params`` and its schedule over ``total_steps`` optimizer steps.

    ``fused``: one kernel per step over all parameters (plain CPU or CUDA tensors). On CPU the
    default per-tensor loop takes about 2 s per step for a 135M model on two cores, the fused
    kernel 0.1 s (measured here with 150 tensors of 0.9M each).
    """
    optimizer = torch.optim.AdamW(
        list(params),
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        fused=fused or None,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
