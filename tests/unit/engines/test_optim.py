"""The learning-rate schedule every train engine uses, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from logics_rl.config.schema import OptimConfig
from logics_rl.engines.train.optim import build_optimizer, lr_lambda


def test_linear_warmup_then_constant():
    f = lr_lambda(OptimConfig(warmup_steps=4, schedule="constant"), total_steps=100)
    assert [f(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_decays_to_the_floor_after_warmup():
    cfg = OptimConfig(warmup_steps=2, schedule="cosine", min_lr_ratio=0.1)
    f = lr_lambda(cfg, total_steps=12)  # 10 decay steps after warm-up
    assert f(0) == 0.5 and f(1) == 1.0
    assert f(2) == pytest.approx(1.0)  # the decay starts at the top
    mid = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))
    assert f(7) == pytest.approx(mid)  # half way: (7 - 2) / 10
    assert f(12) == pytest.approx(0.1) and f(50) == pytest.approx(0.1)  # held at the floor


def test_build_optimizer_steps_the_schedule():
    p = torch.nn.Parameter(torch.zeros(3))
    opt, sched = build_optimizer(
        OptimConfig(lr=0.1, warmup_steps=2, betas=[0.8, 0.9], weight_decay=0.0), [p], 10
    )
    assert opt.param_groups[0]["betas"] == (0.8, 0.9)
    lrs = []
    for _ in range(3):
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones(3)
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.05, 0.1, 0.1])
