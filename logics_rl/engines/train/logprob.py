"""Log-probs and entropy of target tokens from hidden states, chunked over tokens, fused.

Materialising float32 logits for a whole micro-batch costs N x V x 4 bytes (8k tokens x 152k
vocab = 5 GB). Here the LM head runs on ``chunk`` tokens at a time, always in float32 (a bfloat16
logit is off by up to 0.06 at magnitude 16-32, which would go straight into every importance
ratio), and under autograd each chunk is one ``_ChunkLogProbs`` node: the forward keeps only its
inputs and two numbers per token (the log-normaliser and the expected logit), and the backward
recomputes the chunk's logits once and writes the logit gradient in a few in-place passes:

    logp_t = z_t[target] - lse_t                      d logp / dz = onehot(target) - p
    H_t    = lse_t - E_p[z_t]                         d H / dz    = -p * (z - E_p[z])

with z = logits / temperature and p = softmax(z), instead of autograd's trail of saved softmax,
product and sum tensors (the generic path through ``torch.utils.checkpoint`` ran a second full
forward plus every op's backward, each a pass over the [chunk, V] logits).

When a call's float32 logits fit ``keep_bytes`` (``actor.logprob_keep_logits_mb``), each chunk
keeps them for its backward instead: one LM-head GEMM fewer out of four, and the backward uses
the forward's own logits (a recomputation equals them up to the GEMM kernel's rounding). At a
49k vocabulary that is 1,000 tokens per 200 MB.

``grad_dtype`` (the engine's autocast dtype, bfloat16 on CPU): the backward's two gradient GEMMs
(logit gradient x weight, logit gradient^T x hidden) take their inputs in that dtype, as autocast
does for every other linear layer's backward; the logits, log-probs, entropy and the logit
gradient itself stay float32. The weight is cast once per call, not per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def _logits(hidden: Tensor, weight: Tensor, temperature: float) -> Tensor:
    z = hidden.float() @ weight.float().t()
    return z.div_(temperature) if temperature != 1.0 else z


@dataclass(frozen=True)
class VocabShard:
    """The LM head is cut along the vocabulary over ``group`` (tensor parallel): this rank's
    weight rows are the token ids ``start, start + 1, ...``. Max, normaliser, target logit and
    E_p[z] are reduced over the group; the hidden states' gradient is this rank's part (the
    caller's tensor-parallel copy sums it in backward)."""

    group: Any
    start: int


def _reduce(t: Tensor, shard: VocabShard | None, op=None) -> Tensor:
    if shard is not None:
        import torch.distributed as dist

        dist.all_reduce(t, op=op or dist.ReduceOp.SUM, group=shard.group)
    return t


def _local_targets(
    z: Tensor, targets: Tensor, shard: VocabShard | None
) -> tuple[Tensor, Tensor | None]:
    """(column of each target in ``z``, whether this rank holds it; None: all of them)."""
    if shard is None:
        return targets, None
    col = targets - shard.start
    mine = (col >= 0) & (col < z.shape[-1])
    return col.clamp(0, max(0, z.shape[-1] - 1)), mine


def _stats(
    z: Tensor, targets: Tensor, with_entropy: bool, shard: VocabShard | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(logp, lse, E_p[z]) of logits ``z`` [M, V] (E_p[z] is empty without entropy)."""
    import torch.distributed as dist

    top = _reduce(z.max(dim=-1, keepdim=True).values, shard, dist.ReduceOp.MAX)
    e = (z - top).exp_()
    total = _reduce(e.sum(-1), shard)
    lse = top[:, 0] + total.log()
    col, mine = _local_targets(z, targets, shard)
    target_z = z.gather(-1, col[:, None])[:, 0]
    if shard is not None:
        target_z = _reduce(torch.where(mine, target_z, torch.zeros_like(target_z)), shard)
    logp = target_z - lse
    if not with_entropy:
        return logp, lse, z.new_zeros(0)
    ez = _reduce(torch.einsum("mv,mv->m", e, z), shard) / total
    return logp, lse, ez


class _ChunkLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        hidden,
        weight,
        targets,
        temperature: float,
        with_entropy: bool,
        shard,
        keep: bool,
        low_weight: Tensor | None = None,
    ):
        z = _logits(hidden, weight, temperature)
        logp, lse, ez = _stats(z, targets, with_entropy, shard)
        ctx.save_for_backward(hidden, weight, targets, lse, ez)
        ctx.temperature, ctx.with_entropy, ctx.shard = temperature, with_entropy, shard
        ctx.low_weight = low_weight  # the weight in grad_dtype, shared by the call's chunks
        ctx.logits = z if keep else None  # the backward overwrites it: used once, then dropped
        entropy = lse - ez if with_entropy else torch.zeros_like(logp)
        return logp, entropy

    @staticmethod
    def backward(ctx, g_logp, g_entropy):
        with torch.autocast(ctx.saved_tensors[0].device.type, enabled=False):  # float32 here too
            return _ChunkLogProbs._backward(ctx, g_logp, g_entropy)

    @staticmethod
    def _backward(ctx, g_logp, g_entropy):
        hidden, weight, targets, lse, ez = ctx.saved_tensors
        z, ctx.logits = ctx.logits, None
        if z is None:
            z = _logits(hidden, weight, ctx.temperature)
        p = z.sub(lse[:, None]).exp_()
        if ctx.with_entropy and g_entropy is not None:
            # -g_H * p * (z - E[z]) - g_logp * p, the onehot term added below
            grad = z.sub_(ez[:, None]).mul_(p).mul_(-g_entropy[:, None])
            grad.addcmul_(p, g_logp[:, None], value=-1.0)
        else:
            grad = p.mul_(-g_logp[:, None])
        col, mine = _local_targets(z, targets, ctx.shard)
        g_target = g_logp if ctx.shard is None else torch.where(mine, g_logp, 0.0)
        grad.scatter_add_(-1, col[:, None], g_target[:, None])
        if ctx.temperature != 1.0:
            grad.div_(ctx.temperature)
        low, ctx.low_weight = ctx.low_weight, None
        if low is None:
            grad_hidden = (grad @ weight.float()).to(hidden.dtype)
            grad_weight = (grad.t() @ hidden.float()).to(weight.dtype)
        else:
            grad = grad.to(low.dtype)
            grad_hidden = (grad @ low).to(hidden.dtype)
            grad_weight = (grad.t() @ hidden.to(low.dtype)).to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None, None, None


def token_logprobs(
    hidden_MH: Tensor,
    weight_VH: Tensor,
    targets_M: Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk: int = 1024,
    shard: VocabShard | None = None,
    keep_bytes: int = 0,
    grad_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor | None]:
    """log softmax(h W^T / T)[target] and (optionally) the entropy, per token, in float32.

    Shapes: hidden [M, H], weight [V, H] (the LM head, or this rank's rows of it with
    ``shard``), targets [M] -> logp [M], entropy [M]. Under autograd, the chunks keep their
    logits for the backward when all of them (M x V x 4 bytes) fit ``keep_bytes``, and run the
    backward's gradient GEMMs in ``grad_dtype`` when it is given (a float16 / bfloat16).
    """
    logps, ents = [], []
    grad = torch.is_grad_enabled() and (hidden_MH.requires_grad or weight_VH.requires_grad)
    keep = hidden_MH.shape[0] * weight_VH.shape[0] * 4 <= keep_bytes
    low = None
    if grad and grad_dtype not in (None, torch.float32) and hidden_MH.shape[0]:
        low = weight_VH.detach().to(grad_dtype)
    for start in range(0, hidden_MH.shape[0], chunk):
        h, t = hidden_MH[start : start + chunk], targets_M[start : start + chunk]
        if grad:
            lp, ent = _ChunkLogProbs.apply(
                h, weight_VH, t, temperature, with_entropy, shard, keep, low
            )
        else:
            lp, lse, ez = _stats(_logits(h, weight_VH, temperature), t, with_entropy, shard)
            ent = lse - ez if with_entropy else None
        logps.append(lp)
        ents.append(ent)
    if not logps:
        empty = hidden_MH.new_zeros(0, dtype=torch.float32)
        return empty, (empty if with_entropy else None)
    return torch.cat(logps), (torch.cat(ents) if with_entropy else None)
