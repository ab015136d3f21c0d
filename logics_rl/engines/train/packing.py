"""Padding-free sequence packing and token-budget micro-batches.

Rollout batches store prompts left-padded (``prompt_ids``/``prompt_mask`` [B, P]) and responses
right-padded (``response_ids``/``response_mask`` [B, R]). For a forward pass the valid tokens of
every row are concatenated into ONE row with positions restarting at 0 per sample; attention then
stays inside each sample (block-diagonal causal mask from the position ids, or flash-attn varlen
on GPU), and no compute is spent on padding. Logits are computed only where a response token is
predicted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Packed:
    input_ids: torch.Tensor  # [1, N] all valid tokens of the micro-batch, sample after sample
    position_ids: torch.Tensor  # [1, N] restart at 0 for every sample
    predict_pos: torch.Tensor  # [M] packed positions whose next token is a response token
    targets: torch.Tensor  # [M] those response tokens
    rows: torch.Tensor  # [M] row of each target in the [B, R] layout
    cols: torch.Tensor  # [M] column of each target in the [B, R] layout
    shape: tuple[int, int]  # (B, R)

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[1])

    def scatter(self, values_M: torch.Tensor) -> torch.Tensor:
        """Place per-target values back into a zero [B, R] tensor."""
        out = values_M.new_zeros(self.shape)
        out[self.rows, self.cols] = values_M
        return out


def pack(
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
) -> Packed:
    """Pack rows of (left-padded prompt, right-padded response) into one padding-free row.

    ``response_mask`` marks the valid response tokens; they must be a prefix of each row.
    Every row needs at least one prompt token (the first response token is predicted from it).
    """
    B, R = response_ids.shape
    p_len = prompt_mask.sum(1).tolist()
    r_len = response_mask.sum(1).tolist()
    ids, pos, predict, targets, rows, cols = [], [], [], [], [], []
    offset = 0
    for i in range(B):
        p, r = int(p_len[i]), int(r_len[i])
        if p < 1:
            raise ValueError(f"row {i} has an empty prompt; at least one prompt token is needed")
        if r and not bool(response_mask[i, :r].all()):
            raise ValueError(f"row {i}: response_mask must mark a prefix of the response")
        prompt = prompt_ids[i, prompt_mask[i].bool()]
        ids.append(prompt)
        ids.append(response_ids[i, :r])
        pos.append(torch.arange(p + r))
        predict.append(torch.arange(offset + p - 1, offset + p - 1 + r))
        targets.append(response_ids[i, :r])
        rows.append(torch.full((r,), i, dtype=torch.long))
        cols.append(torch.arange(r))
        offset += p + r
    return Packed(
        input_ids=torch.cat(ids).unsqueeze(0),
        position_ids=torch.cat(pos).unsqueeze(0),
        predict_pos=torch.cat(predict),
        targets=torch.cat(targets),
        rows=torch.cat(rows),
        cols=torch.cat(cols),
        shape=(B, R),
    )


def sample_lengths(prompt_mask: torch.Tensor, response_mask: torch.Tensor) -> list[int]:
    """Valid tokens per row (what a row costs in a packed micro-batch)."""
    return (prompt_mask.sum(1) + response_mask.sum(1)).tolist()


def min_micro_batches(lengths: list[int], budget: int) -> int:
    """Bins needed by first-fit-decreasing under a token budget (a longer row gets its own bin)."""
    bins: list[int] = []
    for n in sorted(lengths, reverse=True):
        for i, used in enumerate(bins):
            if used + n <= budget:
                bins[i] = used + n
                break
        else:
            bins.append(n)
    return max(1, len(bins))


def balance(lengths: list[int], k: int) -> list[list[int]]:
    """Split row indices into ``k`` bins with balanced token counts (longest first, least loaded).

    Bins may be empty when there are fewer rows than ``k``; every rank of a data-parallel group
    must run the same number of micro-batches, so callers run empty bins as no-op passes.
    """
    bins: list[list[int]] = [[] for _ in range(k)]
    load = [0] * k
    for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        b = min(range(k), key=lambda j: load[j])
        bins[b].append(i)
        load[b] += lengths[i]
    return [sorted(b) for b in bins]
