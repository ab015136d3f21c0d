"""Rollout throughput: vLLM engine vs HF engine on the same model and prompts.

    python benchmarks/bench_rollout.py [--model smollm2|PATH] [--max-tokens 256]
    python benchmarks/bench_rollout.py --vllm-dtypes float32,bfloat16 --hf-prompts 0 --max-tokens 96

``--vllm-dtypes``: vLLM runs once per listed dtype (``rollout.dtype``) on the same prompts, the
first listed also before the others as warm-up, and the rates are compared. ``--hf-prompts 0``
skips the HF engine.

Both engines sample at temperature 1 with n samples per prompt; tokens/s counts generated tokens.
The HF engine samples one sequence at a time (it is the deterministic fallback), so it gets fewer
prompts; the ratio compares rates, not totals.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

from common import Timer, machine  # noqa: E402

PROMPTS = [
    "What is 37 + 48? Explain step by step.",
    "Write a short poem about the sea.",
    "List three prime numbers larger than 100.",
    "Why is the sky blue?",
    "Compute 12 * 13 and show your work.",
    "Describe a cat in one paragraph.",
    "What is the capital of France, and why is it famous?",
    "Give a recipe for pancakes.",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--hf-prompts", type=int, default=1)
    ap.add_argument("--hf-n", type=int, default=2)
    ap.add_argument("--vllm-dtypes", default="auto")
    a = ap.parse_args()
    from transformers import AutoTokenizer

    from logics_rl.config.schema import RolloutConfig, VLLMConfig
    from logics_rl.engines.rollout import Sampling, build_rollout_engine
    from logics_rl.models.smollm2 import convert_smollm2

    path = convert_smollm2() if a.model == "smollm2" else a.model
    tok = AutoTokenizer.from_pretrained(path)
    texts = [
        tok.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
        )
        for p in PROMPTS
    ]
    ids = [tok(t, add_special_tokens=False).input_ids for t in texts]

    print(f"machine: {machine()}")
    print(f"model: {path}; max_tokens={a.max_tokens}")
    v_rate = {}
    for dtype in a.vllm_dtypes.split(","):
        cfg = RolloutConfig(engine="vllm", dtype=dtype, vllm=VLLMConfig(kv_cache_gb=2.0))
        vllm = build_rollout_engine(cfg, path, max_model_len=1024, seed=0)
        vllm.generate(ids, Sampling(n=a.n, temperature=1.0, max_tokens=a.max_tokens))  # warm-up
        with Timer() as tv:
            gv = vllm.generate(ids, Sampling(n=a.n, temperature=1.0, max_tokens=a.max_tokens))
        v_tokens = sum(len(r) for r in gv.response_ids)
        v_rate[dtype] = v_tokens / tv.seconds
        print(
            f"vLLM {dtype}: {len(ids)} prompts x n={a.n}: {v_tokens} tokens in "
            f"{tv.seconds:.1f} s = {v_rate[dtype]:.0f} tok/s"
        )
        del vllm
    first = next(iter(v_rate))
    for dtype, rate in list(v_rate.items())[1:]:
        print(f"ratio vLLM {dtype} / {first}: {rate / v_rate[first]:.2f}x")
    if a.hf_prompts <= 0:
        return

    hf = build_rollout_engine(RolloutConfig(engine="hf"), path, max_model_len=1024, seed=0)
    with Timer() as th:
        gh = hf.generate(
            ids[: a.hf_prompts], Sampling(n=a.hf_n, temperature=1.0, max_tokens=a.max_tokens)
        )
    h_tokens = sum(len(r) for r in gh.response_ids)
    h_rate = h_tokens / th.seconds
    print(
        f"HF:   {a.hf_prompts} prompts x n={a.hf_n}: {h_tokens} tokens in {th.seconds:.1f} s = {h_rate:.1f} tok/s"
    )
    print(f"ratio vLLM {first} / HF: {v_rate[first] / h_rate:.1f}x")


if __name__ == "__main__":
    main()
