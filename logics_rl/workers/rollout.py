"""The rollout role: prompts in, n samples per prompt out, in the rollout batch layout."""

from __future__ import annotations

import torch

from logics_rl.engines.rollout.base import RolloutEngine, Sampling
from logics_rl.protocol import Batch


def left_pad(rows: list[list[int]], width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        if len(r) > width:
            raise ValueError(f"row {i} has {len(r)} tokens, more than the width {width}")
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = True
    return ids, mask


def right_pad(rows: list[list], width: int, pad, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    out = torch.full((len(rows), width), pad, dtype=dtype)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        r = r[:width]
        if r:
            out[i, : len(r)] = torch.tensor(r, dtype=dtype)
            mask[i, : len(r)] = True
    return out, mask


class RolloutRole:
    def __init__(self, engine: RolloutEngine, tokenizer):
        self.engine = engine
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def generate(self, prompts: Batch, sampling: Sampling) -> Batch:
        """``prompts`` has ``prompt_ids``/``prompt_mask`` (left padded) and any non-tensor columns.

        Returns ``len(prompts) * n`` rows (each prompt's samples together) with ``response_ids``,
        ``response_mask``, ``rollout_logp`` [B*n, max_tokens], ``truncated`` [B*n], and the
        non-tensor columns ``response`` (decoded text) and ``finish_reason``.
        """
        if len(prompts) == 0:
            raise ValueError("generate got an empty batch")
        ids, mask = prompts["prompt_ids"], prompts["prompt_mask"]
        rows = [ids[i, mask[i]].tolist() for i in range(len(prompts))]
        gen = self.engine.generate(rows, sampling)
        width = sampling.max_tokens
        resp, resp_mask = right_pad(gen.response_ids, width, self.pad_id, torch.long)
        logp, _ = right_pad(gen.logprobs, width, 0.0, torch.float32)
        out = prompts.repeat(sampling.n)
        out["response_ids"] = resp
        out["response_mask"] = resp_mask
        out["rollout_logp"] = logp
        out["truncated"] = torch.tensor([r == "length" for r in gen.finish_reasons])
        out["finish_reason"] = gen.finish_reasons
        out["response"] = self.tokenizer.batch_decode(gen.response_ids, skip_special_tokens=True)
        return out
