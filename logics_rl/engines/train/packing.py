"""Sequence packing and token-budget micro-batches.

Rollout batches store prompts left-padded (``prompt_ids``/``prompt_mask`` [B, P]) and responses
right-padded (``response_ids``/``response_mask`` [B, R]). Two forward layouts:

- ``packed`` (flash-attn varlen, GPU): the valid tokens of every row are concatenated into ONE
  row with positions restarting at 0 per sample; attention stays inside each sample and no
  compute is spent on padding.
- ``padded`` (sdpa / eager, CPU): each sample's prompt + response is moved to the left of its own
  row, right-padded to the longest sample of the micro-batch, with an attention mask. Without
  varlen kernels a packed row would need a dense block-diagonal mask over ALL the micro-batch's
  tokens (N^2 for N tokens: 16k tokens -> 1 GB per head and layer); padded rows cost
  B x L_max^2 in attention plus the MLP on the padding of rows shorter than the longest.
- ``shared`` (sdpa / eager, the padded layout with prompt sharing): the rows of a micro-batch
  that carry the same prompt (the n samples of a GRPO group) run that prompt once. A prompt pass
  over [G, P] (one right-padded row per distinct prompt) fills a KV cache, which is indexed per
  sample, and a response pass over [B, R] (right-padded responses, positions continuing after
  their prompt) attends to it. The log-probs are those of the padded layout (same keys, same
  positions; float rounding may differ) and gradients reach the prompt through the cache. Linear
  layers see G x P + B x R tokens instead of B x (P + R), and attention B x R x (P + R) scores.

Either way logits are computed only where a response token is predicted.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch


@dataclass
class Packed:
    input_ids: torch.Tensor  # packed [1, N] (sample after sample) | padded [B, L]
    position_ids: torch.Tensor  # same shape; restart at 0 for every sample
    predict_pos: torch.Tensor  # [M] flat positions (into input_ids.flatten()) predicting a target
    targets: torch.Tensor  # [M] those response tokens
    rows: torch.Tensor  # [M] row of each target in the [B, R] layout
    cols: torch.Tensor  # [M] column of each target in the [B, R] layout
    shape: tuple[int, int]  # (B, R)
    attention_mask: torch.Tensor | None = None  # padded: [B, L]; shared: [B, P + L]; 1 = valid
    num_tokens: int = 0  # valid (non-padding) tokens of the samples, a shared prompt once per row
    prompts: SharedPrompts | None = None  # shared layout: the prompt pass

    def scatter(self, values_M: torch.Tensor) -> torch.Tensor:
        """Place per-target values back into a zero [B, R] tensor."""
        out = values_M.new_zeros(self.shape)
        out[self.rows, self.cols] = values_M
        return out


@dataclass
class SharedPrompts:
    """The prompt pass of the ``shared`` layout: one right-padded row per distinct prompt.

    ``predict_pos`` of the packed batch indexes the concatenation of this pass's hidden states
    [G * P] and the response pass's [B * L] (the first response token is predicted from the last
    prompt token, the others from the response pass).
    """

    input_ids: torch.Tensor  # [G, P]
    position_ids: torch.Tensor  # [G, P]
    attention_mask: torch.Tensor  # [G, P], 1 on valid tokens
    of_row: torch.Tensor  # [B] prompt row of each sample


def pack(
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    layout: str = "packed",
    width_multiple: int = 1,
) -> Packed:
    """Rows of (left-padded prompt, right-padded response) in the ``packed`` or ``padded`` layout.

    ``response_mask`` marks the valid response tokens; they must be a prefix of each row.
    Every row needs at least one prompt token (the first response token is predicted from it).
    ``width_multiple``: padded rows are padded further to a multiple of it (sequence parallel
    cuts the sequence into equal parts).
    """
    if layout not in ("packed", "padded", "shared"):
        raise ValueError(f"unknown layout {layout!r}; use packed, padded or shared")
    B, R = response_ids.shape
    p_len = [int(p) for p in prompt_mask.sum(1).tolist()]
    r_len = [int(r) for r in response_mask.sum(1).tolist()]
    samples = [
        _sample(i, prompt_ids, prompt_mask, response_ids, response_mask, p_len[i], r_len[i])
        for i in range(B)
    ]
    if layout == "shared":
        return _shared(samples, prompt_ids.dtype, shape=(B, R))
    width = max((p + r for p, r in zip(p_len, r_len)), default=0)
    width = -(-width // width_multiple) * width_multiple
    if layout == "packed":
        starts = list(itertools.accumulate((p + r for p, r in zip(p_len, r_len)), initial=0))
        tensors = _packed(samples)
    else:
        starts = [i * width for i in range(B)]
        tensors = _padded(samples, width, prompt_ids.dtype)
    return Packed(
        **tensors,
        **_targets(samples, p_len, starts),
        shape=(B, R),
        num_tokens=sum(p_len) + sum(r_len),
    )


def _sample(
    i: int,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    p: int,
    r: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row ``i``'s valid prompt tokens [p] and response tokens [r], checked."""
    if p < 1:
        raise ValueError(f"row {i} has an empty prompt; at least one prompt token is needed")
    if r and not bool(response_mask[i, :r].all()):
        raise ValueError(f"row {i}: response_mask must mark a prefix of the response")
    return prompt_ids[i, prompt_mask[i].bool()], response_ids[i, :r]


def _targets(
    samples: list[tuple[torch.Tensor, torch.Tensor]], p_len: list[int], starts: list[int]
) -> dict[str, torch.Tensor]:
    """Per response token: the flat position predicting it, its row and column in [B, R]."""
    predict, rows, cols = [], [], []
    for i, ((_, response), p, start) in enumerate(zip(samples, p_len, starts)):
        r = len(response)
        predict.append(torch.arange(start + p - 1, start + p - 1 + r))
        rows.append(torch.full((r,), i, dtype=torch.long))
        cols.append(torch.arange(r))
    return dict(
        predict_pos=torch.cat(predict),
        targets=torch.cat([response for _, response in samples]),
        rows=torch.cat(rows),
        cols=torch.cat(cols),
    )


def _packed(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Every sample after the other in one [1, N] row; positions restart at 0 per sample."""
    return dict(
        input_ids=torch.cat([t for sample in samples for t in sample]).unsqueeze(0),
        position_ids=torch.cat([torch.arange(len(p) + len(r)) for p, r in samples]).unsqueeze(0),
    )


def _padded(
    samples: list[tuple[torch.Tensor, torch.Tensor]], width: int, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Each sample at the left of its own row of a [B, L] batch, right-padded, with a mask."""
    B = len(samples)
    input_ids_BL = torch.zeros(B, width, dtype=dtype)
    attention_mask_BL = torch.zeros(B, width, dtype=torch.long)
    position_ids_BL = torch.zeros(B, width, dtype=torch.long)
    for i, sample in enumerate(samples):
        row = torch.cat(sample)
        input_ids_BL[i, : len(row)] = row
        attention_mask_BL[i, : len(row)] = 1
        position_ids_BL[i, : len(row)] = torch.arange(len(row))
    return dict(
        input_ids=input_ids_BL, position_ids=position_ids_BL, attention_mask=attention_mask_BL
    )


def _shared(
    samples: list[tuple[torch.Tensor, torch.Tensor]], dtype: torch.dtype, shape: tuple[int, int]
) -> Packed:
    """The ``shared`` layout: a prompt pass [G, P] and a response pass [B, L] (module docstring)."""
    groups = prompt_groups([prompt for prompt, _ in samples])
    of_row = torch.tensor(_group_of(groups, len(samples)), dtype=torch.long)
    prompts = [samples[rows[0]][0] for rows in groups]
    P = max(len(p) for p in prompts)
    L = max(max(len(r) for _, r in samples), 1)
    G, B = len(prompts), len(samples)
    p_ids, p_mask = torch.zeros(G, P, dtype=dtype), torch.zeros(G, P, dtype=torch.long)
    p_pos = torch.zeros(G, P, dtype=torch.long)
    for g, prompt in enumerate(prompts):
        p_ids[g, : len(prompt)], p_mask[g, : len(prompt)] = prompt, 1
        p_pos[g, : len(prompt)] = torch.arange(len(prompt))
    r_ids, r_pos = torch.zeros(B, L, dtype=dtype), torch.zeros(B, L, dtype=torch.long)
    mask = torch.zeros(B, P + L, dtype=torch.long)
    predict, rows, cols = [], [], []
    for i, (prompt, response) in enumerate(samples):
        g, p, r = int(of_row[i]), len(prompt), len(response)
        r_ids[i, :r] = response
        r_pos[i] = torch.arange(p, p + L)
        mask[i, :P], mask[i, P : P + r] = p_mask[g], 1
        if r:  # first token from the prompt pass, the others from the response pass
            first = torch.tensor([g * P + p - 1])
            predict.append(torch.cat([first, G * P + i * L + torch.arange(r - 1)]))
            rows.append(torch.full((r,), i, dtype=torch.long))
            cols.append(torch.arange(r))
    empty = torch.zeros(0, dtype=torch.long)
    return Packed(
        input_ids=r_ids,
        position_ids=r_pos,
        attention_mask=mask,
        predict_pos=torch.cat(predict) if predict else empty,
        targets=torch.cat([r for _, r in samples]).to(dtype),
        rows=torch.cat(rows) if rows else empty,
        cols=torch.cat(cols) if cols else empty,
        shape=shape,
        num_tokens=sum(len(p) + len(r) for p, r in samples),
        prompts=SharedPrompts(p_ids, p_pos, p_mask, of_row),
    )


def prompt_groups(prompts: list[torch.Tensor]) -> list[list[int]]:
    """Indices of equal prompts (token for token), in order of first appearance."""
    groups: dict[bytes, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(prompt.long().numpy().tobytes(), []).append(i)
    return list(groups.values())


def _group_of(groups: list[list[int]], n: int) -> list[int]:
    """The group index of each of ``n`` rows."""
    of = [0] * n
    for g, rows in enumerate(groups):
        for i in rows:
            of[i] = g
    return of


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


# What one more micro-batch costs, in padded tokens: its fixed per-pass overhead (kernel
# launches, the Python of every layer, the optimizer-independent bookkeeping). Measured on CPU it
# is worth about 300 tokens for the 2-layer quickstart model and a few tokens for SmolLM2-135M;
# 256 keeps splits that save real padding and stops splits that only add passes.
MICRO_BATCH_OVERHEAD = 256


def length_buckets(
    lengths: list[int], budget: int, k: int | None = None, overhead: int | None = None
) -> list[list[int]]:
    """Micro-batches for the padded layout: rows sorted by length, cut into contiguous runs.

    A padded micro-batch costs (rows x its longest row) tokens however short the others are, so
    rows of similar length go together. The cut minimises the padded tokens of all runs plus
    ``overhead`` per run (dynamic programming over the sorted rows), with every run's padded
    size within ``budget`` (a row longer than the budget runs alone). ``k``: exactly ``k`` runs
    (data-parallel ranks must agree on the count): the costliest runs are split further, and
    runs are added empty when there are fewer rows than ``k``.
    Returns row indices per micro-batch, each ascending.
    """
    return _cut([_Unit((i,), 0, n) for i, n in enumerate(lengths)], budget, k, overhead)


def shared_prompt_buckets(
    prompt_lengths: list[int],
    response_lengths: list[int],
    groups: list[list[int]],
    budget: int,
    k: int | None = None,
    overhead: int | None = None,
) -> list[list[int]]:
    """Micro-batches for the shared layout: ``length_buckets`` over prompt groups.

    A run of groups costs (groups x longest prompt) + (rows x longest response) padded tokens,
    so the rows of a group stay together (their prompt runs once) and groups with responses of
    similar length go together. A group larger than ``budget`` is cut into parts (rows of
    similar length together), each running the prompt once.
    """
    units = []
    for rows in groups:
        p = max(prompt_lengths[i] for i in rows)
        part: list[int] = []
        for i in sorted(rows, key=lambda i: -response_lengths[i]):
            longest = response_lengths[part[0]] if part else response_lengths[i]
            if part and p + (len(part) + 1) * longest > budget:
                units.append(_Unit(tuple(part), p, response_lengths[part[0]]))
                part = []
            part.append(i)
        units.append(_Unit(tuple(part), p, response_lengths[part[0]]))
    return _cut(units, budget, k, overhead)


def padded_cost(runs: list[list[int]], lengths: list[int]) -> int:
    """Padded tokens of a padded-layout plan plus ``MICRO_BATCH_OVERHEAD`` per pass."""
    return sum(len(r) * max(lengths[i] for i in r) + MICRO_BATCH_OVERHEAD for r in runs if r)


def shared_cost(
    runs: list[list[int]],
    prompt_lengths: list[int],
    response_lengths: list[int],
    groups: list[list[int]],
) -> int:
    """Padded tokens of a shared-layout plan (each distinct prompt once per micro-batch) plus
    ``MICRO_BATCH_OVERHEAD`` for each of its two passes per micro-batch."""
    group_of = _group_of(groups, len(prompt_lengths))
    total = 0
    for r in runs:
        if r:
            prompts = len({group_of[i] for i in r}) * max(prompt_lengths[i] for i in r)
            total += prompts + len(r) * max(response_lengths[i] for i in r)
            total += 2 * MICRO_BATCH_OVERHEAD
    return total


@dataclass(frozen=True)
class _Unit:
    """Rows that go into the same micro-batch: ``prompt`` tokens run once for all of them (0 in
    the padded layout) and ``longest`` tokens per row (the longest row, or response)."""

    rows: tuple[int, ...]
    prompt: int
    longest: int


def _cut(units: list[_Unit], budget: int, k: int | None, overhead: int | None) -> list[list[int]]:
    """Units sorted by ``longest``, cut into contiguous runs minimising padded tokens plus
    ``overhead`` per run, each run within ``budget`` (``length_buckets``)."""
    overhead = MICRO_BATCH_OVERHEAD if overhead is None else overhead
    order = sorted(units, key=lambda u: -u.longest)
    n = len(order)

    def size(a: int, b: int) -> int:  # padded tokens of the run a..b-1 (order[a] is longest)
        prompt = max((u.prompt for u in order[a:b]), default=0)
        return (b - a) * prompt + sum(len(u.rows) for u in order[a:b]) * order[a].longest

    best = [0.0] + [float("inf")] * n  # best[j]: cost of the first j sorted units
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        prompt, rows = 0, 0
        for i in range(j - 1, -1, -1):  # run = sorted units i..j-1, longest order[i]
            prompt, rows = max(prompt, order[i].prompt), rows + len(order[i].rows)
            run = (j - i) * prompt + rows * order[i].longest
            if run > budget and j - i > 1:
                break  # a longer run (smaller i) only grows
            cost = best[i] + run + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    runs: list[tuple[int, int]] = []
    j = n
    while j > 0:
        runs.append((cut[j], j))
        j = cut[j]
    runs.reverse()
    if k is not None:
        while len(runs) < k and any(b - a > 1 for a, b in runs):
            # split the costliest splittable run where it saves the most padding
            r = max((r for r in runs if r[1] - r[0] > 1), key=lambda r: size(*r))
            a, b = r
            m = min(range(a + 1, b), key=lambda m: size(a, m) + size(m, b))
            i = runs.index(r)
            runs[i : i + 1] = [(a, m), (m, b)]
        if len(runs) > k:
            raise ValueError(f"{len(runs)} micro-batches needed, {k} asked for")
        runs += [(n, n)] * (k - len(runs))
    return [sorted(i for u in order[a:b] for i in u.rows) for a, b in runs]


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
