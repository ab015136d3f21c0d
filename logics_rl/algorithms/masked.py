"""Masked reductions shared by the estimators, losses and aggregation.

Masks may be bool or float (1 on valid tokens). Means over an empty mask are 0, not NaN: a
micro-batch whose samples were all filtered out must not poison the step.
"""

from __future__ import annotations

import torch
from torch import Tensor


def as_float_mask(mask: Tensor, like: Tensor) -> Tensor:
    """``mask`` as the floating dtype of ``like`` (bool or float input)."""
    dtype = like.dtype if like.is_floating_point() else torch.float32
    return mask.to(dtype=dtype, device=like.device)


def zero_outside(x: Tensor, mask: Tensor) -> Tensor:
    """``x`` on valid entries, exactly 0 elsewhere (also where ``x`` is inf / NaN on padding)."""
    return torch.where(
        mask.to(device=x.device).bool(), x, torch.zeros((), dtype=x.dtype, device=x.device)
    )


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    x = zero_outside(x, mask)
    return x.sum() if dim is None else x.sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over valid entries; 0 where there are none."""
    m = as_float_mask(mask, x)
    count = m.sum() if dim is None else m.sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1.0)


def masked_whiten(x_BT: Tensor, mask_BT: Tensor, eps: float) -> Tensor:
    """(x - mean) / (std + eps) over all valid tokens of the batch; 0 outside the mask.

    The std is unbiased (Bessel), as in verl's ``masked_whiten`` (which divides by
    sqrt(var + 1e-8) instead). With a single valid token the variance is taken as 0, so the
    result is 0 rather than NaN.
    """
    m = as_float_mask(mask_BT, x_BT)
    n = m.sum()
    mean = (x_BT * m).sum() / n.clamp(min=1.0)
    centred = (x_BT - mean) * m
    var = (centred**2).sum() / (n - 1.0).clamp(min=1.0)
    return centred / (var.sqrt() + eps)
