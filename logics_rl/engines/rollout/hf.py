"""HF rollout engine: ``transformers`` generate behind the rollout protocol.

Slow (one sample at a time, no batching), but seeded and deterministic: call ``i`` of an engine seeded with ``s`` samples with a
generator seeded from ``(s, i)``, and the call counter is part of ``state_dict`` so a resumed run
samples exactly what an uninterrupted run would. Used where vLLM is absent and in fast tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch

from logics_rl.engines.rollout.base import Generation, RolloutEngine, Sampling


class HFEngine(RolloutEngine):
    def __init__(self, model_path: str, *, seed: int = 0, dtype: torch.dtype = torch.float32):
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        self.dtype = dtype
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).eval()
        self.model.requires_grad_(False)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        gen = GenerationConfig.from_model_config(self.model.config)
        eos = (
            self.model.generation_config.eos_token_id
            if self.model.generation_config
            else gen.eos_token_id
        )
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = next(iter(self.eos_ids))
        self.seed = seed
        self.calls = 0

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = int(state["calls"])

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], sampling: Sampling) -> Generation:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.calls)
        self.calls += 1
        ids, lps, reasons = [], [], []
        for prompt in prompt_ids:
            for _ in range(sampling.n):
                i, lp, r = self._sample_one(prompt, sampling, gen)
                ids.append(i)
                lps.append(lp)
                reasons.append(r)
        return Generation(ids, lps, reasons)

    def _sample_one(self, prompt: list[int], s: Sampling, gen: torch.Generator):
        """Token-by-token sampling with a KV cache and an explicit generator (reproducible)."""
        input_ids = torch.tensor([prompt])
        past = None
        out_ids: list[int] = []
        out_lps: list[float] = []
        reason = "length"
        for _ in range(s.max_tokens):
            res = self.model(input_ids=input_ids, past_key_values=past, use_cache=True)
            past = res.past_key_values
            logits = res.logits[0, -1].float()
            if s.temperature <= 0:
                tok = int(torch.argmax(logits))
                logp = torch.log_softmax(logits, -1)
            else:
                logp = torch.log_softmax(_filter(logits / s.temperature, s.top_k, s.top_p), -1)
                tok = int(torch.multinomial(logp.exp(), 1, generator=gen))
            out_ids.append(tok)
            out_lps.append(float(logp[tok]))
            if tok in self.eos_ids and not s.ignore_eos:
                reason = "stop"
                break
            if s.stop and any(x in self.tokenizer.decode(out_ids) for x in s.stop):
                reason = "stop"
                break
            input_ids = torch.tensor([[tok]])
        return out_ids, out_lps, reason

    @torch.no_grad()
    def prompt_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        out = []
        for seq in sequences:
            ids = torch.tensor([seq])
            logp = torch.log_softmax(self.model(input_ids=ids).logits[0].float(), -1)
            out.append(logp[:-1].gather(-1, ids[0, 1:, None])[:, 0].tolist())
        return out

    @torch.no_grad()
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, float]:
        t0 = time.perf_counter()
        # Every name, aliases included: a tied ``lm_head.weight`` is in a train engine's
        # state_dict but not in ``named_parameters()`` (which lists a shared tensor once).
        params = dict(self.model.named_parameters(remove_duplicate=False))
        params.update(dict(self.model.named_buffers(remove_duplicate=False)))
        nbytes, written = 0, set()
        for name, tensor in named_tensors:
            if name not in params:
                raise KeyError(f"HF rollout engine has no parameter {name!r}")
            params[name].copy_(tensor)
            if params[name].data_ptr() not in written:  # count a tied tensor once
                written.add(params[name].data_ptr())
                nbytes += tensor.numel() * tensor.element_size()
        return {"bytes": float(nbytes), "seconds": time.perf_counter() - t0, "buckets": 1.0}


def _filter(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Top-k then top-p (nucleus) filtering of one row of logits."""
    if top_k > 0 and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, -1)
        # drop tokens once the mass before them already reaches top_p (keeps at least one)
        drop = probs.cumsum(-1) - probs >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(0, order, sorted_logits)
    return logits
