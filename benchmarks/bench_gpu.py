"""Train engine, rollout engine and weight sync on a GPU: tokens/s, MFU, GB/s, per model shape.

    python benchmarks/bench_gpu.py [--shapes qwen3-0.6b,qwen3-8b] [--engines fsdp,megatron]
                                   [--seqs 16] [--len 1024]

Models are Qwen3-shaped with random weights (built from a config, saved once to ``--cache``):
no download. For each shape:
- the bf16 matmul peak of this device (8192^2), measured here, is the MFU denominator;
- training: each engine of ``--engines`` (one rank; FSDP2: bf16 mixed precision, flash-attn
  varlen when installed; Megatron: the local layer spec, bf16 autocast over fp32 weights) runs
  ``train_step`` (forward, backward, AdamW) on ``--seqs`` rows of ``--len`` tokens. A shape
  whose full step does not fit one device (8B: fp32 master weights, gradients and AdamW state
  alone are 16 bytes per parameter) runs ``forward_backward`` only, with activation
  checkpointing, and says so;
- weight sync: the engine's export stream converted to bf16 on the device, and, when vLLM is
  installed, ``VLLMEngine.update_weights`` (GB/s of bf16 weights);
- rollout: when vLLM is installed, ``--prompts`` x n=8 samples of up to ``--new-tokens`` tokens.
Each number is the median of ``--rounds`` after a warm-up. Prints the device first; a missing
piece (no vLLM, out of memory) is printed, never skipped silently.
``--shapes tiny`` runs the whole script on CPU in a minute (a check of the script itself).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_update import make_batch, model_flops  # noqa: E402
from common import machine, single_process_world  # noqa: E402

SHAPES = {
    # hidden, layers, heads, kv heads, head dim, intermediate, vocab, tied embeddings
    "qwen3-0.6b": (1024, 28, 16, 8, 128, 3072, 151936, True),
    "qwen3-8b": (4096, 36, 32, 8, 128, 12288, 151936, False),
    "tiny": (128, 2, 4, 2, 32, 384, 512, True),
}
FULL_STEP_MAX_PARAMS = 3e9  # above it: forward_backward only (16 bytes/param of state)


def device_peak(device) -> float:
    import torch

    n = 8192 if device.type == "cuda" else 1024
    dtype = torch.bfloat16
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        a @ b
    sync()
    reps, t0 = 20, time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def build_model_dir(shape: str, cache: str) -> str:
    """A Qwen3 HF directory with random weights (bf16) and the tiny character tokenizer."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    from logics_rl.models.tiny import build_tiny_qwen3

    out = os.path.join(cache, shape)
    if os.path.exists(os.path.join(out, "config.json")):
        return out
    h, layers, heads, kv, hd, inter, vocab, tied = SHAPES[shape]
    cfg = Qwen3Config(
        hidden_size=h,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=hd,
        intermediate_size=inter,
        vocab_size=vocab,
        tie_word_embeddings=tied,
        max_position_embeddings=4096,
        torch_dtype="bfloat16",
    )
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16)
    model.save_pretrained(out)
    tok_dir = build_tiny_qwen3(os.path.join(cache, "_tok"))
    for f in os.listdir(tok_dir):
        if "token" in f or f in ("vocab.json", "merges.txt", "special_tokens_map.json"):
            shutil.copy(os.path.join(tok_dir, f), out)
    return out


def median_time(fn, rounds: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_shape(shape: str, a, device, peak: float) -> None:
    for i, engine in enumerate(a.engines.split(",")):
        bench_engine(shape, engine, a, device, peak, rest=i == 0)


def bench_engine(shape: str, engine: str, a, device, peak: float, rest: bool) -> None:
    """Training tokens/s of one engine; with ``rest``, weight sync and rollout too."""
    import torch

    from logics_rl.batches import TrainBatch
    from logics_rl.config.schema import AlgorithmConfig, TrainEngineConfig
    from logics_rl.engines.train import build_train_engine
    from logics_rl.workers.actor import ActorRole, UpdateSpec

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    path = build_model_dir(shape, a.cache)
    from transformers import AutoConfig

    hf = AutoConfig.from_pretrained(path)
    n_params = _param_count(hf)
    full = n_params <= FULL_STEP_MAX_PARAMS
    batch = make_batch(hf.vocab_size, a.seqs, a.len)
    tokens = int(batch["prompt_mask"].sum() + batch["response_mask"].sum())
    flops = model_flops(hf, batch)
    print(
        f"\n== {shape}, {engine}: {n_params / 1e9:.2f} B parameters, {a.seqs} rows, {tokens} tokens"
    )
    try:
        cfg = TrainEngineConfig(
            engine=engine,
            max_tokens_per_micro_batch=max(8192, tokens),
            activation_checkpointing=not full,
        )
        eng = build_train_engine(cfg, path, total_steps=100)
        actor = ActorRole(eng, UpdateSpec(AlgorithmConfig()))
        loss_fn = actor._loss_fn(batch, TrainBatch(batch).behaviour)
        if full:
            step = lambda: eng.train_step(batch, loss_fn, temperature=1.0, needs_entropy=True)  # noqa: E731
            what = "train_step (fwd + bwd + AdamW)"
        else:
            step = lambda: eng.forward_backward(batch, loss_fn, temperature=1.0)  # noqa: E731
            what = "forward_backward only, activation checkpointing (full state does not fit)"
        t = median_time(step, a.rounds, sync)
        gf = flops / t / 1e9
        mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        print(
            f"train  {what}: {t:.3f} s, {tokens / t:,.0f} tokens/s, {gf:,.0f} GFLOP/s, "
            f"MFU {gf / peak:.1%} of the measured bf16 peak; peak GPU memory {mem:.1f} GiB"
        )
    except torch.OutOfMemoryError as exc:
        print(f"train  out of memory: {str(exc).splitlines()[0]}")
        return
    finally:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
    if not rest:
        del eng, actor
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return

    def export_stream():
        nbytes = 0
        for _, t in eng.named_parameters_for_export():
            nbytes += t.to(device=device, dtype=torch.bfloat16).numel() * 2
        return nbytes

    nbytes = export_stream()
    t = median_time(export_stream, a.rounds, sync)
    print(f"sync   export stream to bf16 on {device.type}: {nbytes / t / 1e9:.1f} GB/s ({t:.2f} s)")
    try:
        from vllm import LLM  # noqa: F401
    except ImportError:
        print("sync   vLLM not installed: update_weights and rollout tokens/s not measured")
        return
    from logics_rl.config.schema import RolloutConfig
    from logics_rl.engines.rollout.base import Sampling
    from logics_rl.engines.rollout.vllm import VLLMEngine

    rcfg = RolloutConfig()
    rcfg.vllm.gpu_memory_utilization = 0.3
    vl = VLLMEngine(path, rcfg, max_model_len=a.len + a.new_tokens)
    t = median_time(lambda: vl.update_weights(eng.named_parameters_for_export()), a.rounds, sync)
    print(f"sync   vLLM update_weights: {nbytes / t / 1e9:.1f} GB/s ({t:.2f} s)")
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, 500, (a.prompts, 64), generator=g).tolist()
    samp = Sampling(n=8, temperature=1.0, top_p=1.0, top_k=-1, max_tokens=a.new_tokens)
    out = {}

    def gen():
        out["g"] = vl.generate(prompts, samp)

    t = median_time(gen, a.rounds, sync)
    new = sum(len(x) for x in out["g"].response_ids)
    print(f"rollout vLLM {a.prompts} prompts x 8: {new:,} new tokens, {new / t:,.0f} tokens/s")


def _param_count(hf) -> float:
    from transformers import AutoModelForCausalLM

    with __import__("torch").device("meta"):
        m = AutoModelForCausalLM.from_config(hf)
    return float(sum(p.numel() for p in m.parameters()))


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="qwen3-0.6b,qwen3-8b")
    ap.add_argument("--engines", default="fsdp,megatron", help="train engines, in this order")
    ap.add_argument("--seqs", type=int, default=16)
    ap.add_argument("--len", type=int, default=1024)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cache", default=os.path.join("benchmarks", ".gpu-models"))
    a = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {machine()}")
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(0)
        print(f"        {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}")
    else:
        print("        no CUDA device: CPU run (only meaningful as a check of this script)")
    single_process_world()
    peak = device_peak(device)
    print(f"bf16 matmul peak measured here: {peak:,.0f} GFLOP/s")
    for shape in a.shapes.split(","):
        if shape not in SHAPES:
            ap.error(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
        bench_shape(shape, a, device, peak)


if __name__ == "__main__":
    main()
