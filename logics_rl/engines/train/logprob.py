"""Log-probs and entropy of target tokens from hidden states, chunked over tokens.

Materialising float32 logits for a whole micro-batch costs N x V x 4 bytes (8k tokens x 152k
vocab = 5 GB). Here the LM head runs on ``chunk`` tokens at a time; under autograd each chunk is
checkpointed, so only its inputs are kept and its logits are recomputed in the backward pass.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def _chunk(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = (hidden @ weight.t()).float()
    if temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    if with_entropy:
        probs = torch.softmax(logits, dim=-1)
        entropy = lse - (probs * logits).sum(-1)
    else:
        entropy = torch.zeros_like(logp)
    return logp, entropy


def token_logprobs(
    hidden_MH: torch.Tensor,
    weight_VH: torch.Tensor,
    targets_M: torch.Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log softmax(h W^T / T)[target] and (optionally) the entropy, per token.

    Shapes: hidden [M, H], weight [V, H] (the LM head), targets [M] -> logp [M], entropy [M].
    """
    logps, ents = [], []
    use_ckpt = torch.is_grad_enabled() and (hidden_MH.requires_grad or weight_VH.requires_grad)
    for start in range(0, hidden_MH.shape[0], chunk):
        args = (
            hidden_MH[start : start + chunk],
            weight_VH,
            targets_M[start : start + chunk],
            temperature,
            with_entropy,
        )
        lp, ent = checkpoint(_chunk, *args, use_reentrant=False) if use_ckpt else _chunk(*args)
        logps.append(lp)
        ents.append(ent)
    if not logps:
        empty = hidden_MH.new_zeros(0, dtype=torch.float32)
        return empty, (empty if with_entropy else None)
    return torch.cat(logps), (torch.cat(ents) if with_entropy else None)
