"""The training update: tokens/s and MFU of the train engine vs a plain HF step, float32 / bfloat16.

    python benchmarks/bench_update.py [--model smollm2|tiny|PATH] [--seqs 8] [--len 140]
        [--prompt 40] [--group 1] [--rounds 3] [--settings engine-fp32,megatron-fp32,hf-fp32,...]
        [--profile SETTING]

One process, one rank (gloo world of one). First the matmul peak of THIS machine is measured
(square matmuls, float32 and bfloat16, on torch's thread count), so MFU means the same on any
machine; MFU (best peak) is against the faster of the two. On a CPU without AVX512-BF16 or AMX
bfloat16 is emulated (below 1 GFLOP/s): the default settings leave the bf16 ones out there. Then each setting runs one GRPO-shaped update (PPO-clip loss, token-mean, entropy
computed, one AdamW step) on the same batch, round-robin over ``--rounds`` so that all settings
see the same machine load; the median is reported.

- ``engine-fp32`` / ``engine-bf16``: ``build_train_engine`` + ``ActorRole``'s loss, as the RL
  trainer runs it (``actor.dtype``), the FSDP2 engine (default ``actor.engine``);
- ``engine-fp32-shared`` / ``engine-bf16-shared``: the same with ``actor.share_prompts: true``
  (the samples of a prompt run it once, when the engine's plan says it pays);
- ``engine-fp32-recompute`` / ``engine-bf16-recompute``: the same with
  ``actor.logprob_keep_logits_mb: 0`` (the LM head's backward recomputes the logits; the other
  engine settings keep them within ``--keep-mb``, default 256 as the config's default);
- ``megatron-fp32`` / ``megatron-bf16``: the same with ``actor.engine: megatron`` (one rank);
- ``hf-fp32`` / ``hf-bf16``: the same HF model outside the library: padded forward, float32
  log-softmax of all logits, the same loss, backward, ``torch.optim.AdamW`` (foreach), with
  ``torch.autocast(bfloat16)`` for ``hf-bf16``: what a plain PyTorch loop gets.

The batch: ``--seqs`` rows in groups of ``--group`` samples sharing a prompt (a GRPO rollout's
shape; ``--group 1``: every prompt distinct). tokens/s counts the samples' tokens (a shared
prompt once per sample), so settings compare on the same work. Model FLOPs: 6 x (matmul
parameters, LM head included) per token computed + causal attention (6 x 2 x layers x q-width
per query-key pair, the masked half not counted); for a ``-shared`` setting each group's prompt
counts once (what it computes when the engine shares). The backward recompute of the fused LM head
is not counted (MFU, not hardware FLOPs utilisation).
``--profile SETTING`` prints a torch.profiler table of one update of that setting.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import machine, model_path, peak_rss_mb, single_process_world  # noqa: E402

SETTINGS = (
    "engine-fp32",
    "engine-bf16",
    "engine-fp32-shared",
    "engine-bf16-shared",
    "engine-fp32-recompute",
    "engine-bf16-recompute",
    "megatron-fp32",
    "megatron-bf16",
    "hf-fp32",
    "hf-bf16",
)


def matmul_peak(dtype, n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of an n x n matmul in ``dtype`` (best of three timings of ``reps`` products)."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 * reps / best / 1e9


def make_batch(vocab: int, seqs: int, length: int, seed: int = 0, group: int = 1, prompt: int = 40):
    """Prompts of 0.6 x ``prompt`` to ``prompt`` tokens, ``group`` rows each, and responses of
    a quarter to all of the rest, as rollouts have."""
    import torch

    from logics_rl.protocol import Batch

    g = torch.Generator().manual_seed(seed)
    P, R = prompt, length - prompt
    prompts = -(-seqs // group)
    p_len = torch.randint(P * 3 // 5, P + 1, (prompts,), generator=g)
    p_len = p_len.repeat_interleave(group)[:seqs]
    r_len = torch.randint(max(1, R // 4), R + 1, (seqs,), generator=g)
    rm = torch.arange(R)[None] < r_len[:, None]
    prompt_ids = torch.randint(0, vocab, (prompts, P), generator=g)
    b = Batch.from_dict(
        {
            # prompts left-padded, responses right-padded (the rollout layout)
            "prompt_ids": prompt_ids.repeat_interleave(group, 0)[:seqs],
            "prompt_mask": torch.arange(P)[None] >= (P - p_len)[:, None],
            "response_ids": torch.randint(0, vocab, (seqs, R), generator=g) * rm,
            "response_mask": rm,
            "loss_mask": rm.clone(),
            "rollout_logp": -torch.rand(seqs, R, generator=g) * 3 * rm,
            "advantages": torch.randn(seqs, 1, generator=g).expand(seqs, R) * rm,
            "score": torch.zeros(seqs),
            "token_rewards": torch.zeros(seqs, R),
            "truncated": torch.zeros(seqs, dtype=torch.bool),
            "policy_version": torch.zeros(seqs, dtype=torch.long),
        },
        {
            "uid": [i // group for i in range(seqs)],
            "prompt": ["p"] * seqs,
            "ground_truth": ["1"] * seqs,
            "data_source": ["bench"] * seqs,
            "extras": [{}] * seqs,
            "response": ["r"] * seqs,
            "finish_reason": ["stop"] * seqs,
        },
        meta={"temperature": 1.0, "behaviour": "on_policy"},
    )
    return b


def model_flops(hf_config, batch, shared: bool) -> float:
    """Model FLOPs of one forward + backward over the batch's real tokens; ``shared``: each
    group's prompt computed once."""
    c = hf_config
    d, layers, vocab = c.hidden_size, c.num_hidden_layers, c.vocab_size
    head_dim = getattr(c, "head_dim", None) or d // c.num_attention_heads
    q, kv = c.num_attention_heads * head_dim, c.num_key_value_heads * head_dim
    per_layer = d * (q + 2 * kv) + q * d + 3 * d * c.intermediate_size
    matmul_params = layers * per_layer + vocab * d
    p_len = batch["prompt_mask"].sum(1).tolist()
    r_len = batch["response_mask"].sum(1).tolist()
    uids = batch["uid"] if shared else range(len(batch))
    prompts = {u: p for u, p in zip(uids, p_len)}  # computed once per group when shared
    tokens = sum(prompts.values()) + sum(r_len)
    pairs = sum(p * p / 2 for p in prompts.values())  # causal query-key pairs
    pairs += sum(r * (p + r / 2) for p, r in zip(p_len, r_len))
    return 6 * matmul_params * tokens + 6 * 2 * layers * q * pairs


def engine_step(
    path: str, dtype: str, batch, engine: str = "fsdp", share: bool = False, keep_mb: int = 256
):
    from logics_rl.batches import TrainBatch
    from logics_rl.config.schema import AlgorithmConfig, TrainEngineConfig
    from logics_rl.engines.train import build_train_engine
    from logics_rl.workers.actor import ActorRole, UpdateSpec

    tokens = int(batch["prompt_mask"].sum() + batch["response_mask"].sum())
    cfg = TrainEngineConfig(
        engine=engine,
        dtype=dtype,
        max_tokens_per_micro_batch=max(8192, 2 * tokens),
        share_prompts=share,
        logprob_keep_logits_mb=keep_mb,
    )
    eng = build_train_engine(cfg, path, total_steps=1000)
    actor = ActorRole(eng, UpdateSpec(AlgorithmConfig()))
    loss_fn = actor._loss_fn(batch, TrainBatch(batch).behaviour)

    def step():
        eng.train_step(batch, loss_fn, temperature=1.0, needs_entropy=True)

    return step, eng.hf_config


def hf_step(path: str, bf16: bool, batch):
    """A plain PyTorch GRPO update of the HF model on the same padded rows."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0)
    ids = torch.cat([batch["prompt_ids"], batch["response_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["response_mask"]], 1).long()
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    P = batch["prompt_ids"].shape[1]
    resp, lmask = batch["response_ids"], batch["loss_mask"].float()
    adv = batch["advantages"]

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        logits = logits[:, P - 1 : -1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, resp[..., None]).squeeze(-1)
        ratio = torch.exp(logp - logp.detach())  # on-policy, as the engine settings run
        pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.8, 1.28))
        loss = (pg * lmask).sum() / lmask.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, model.config


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--seqs", type=int, default=8)
    ap.add_argument("--len", type=int, default=140, help="prompt + response slots")
    ap.add_argument("--prompt", type=int, default=40, help="longest prompt (tokens)")
    ap.add_argument("--group", type=int, default=1, help="samples per prompt (1: all distinct)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settings", default=None, help="default: all (bf16 ones only where native)")
    ap.add_argument("--profile", default=None, help="print a profiler table of this setting")
    ap.add_argument(
        "--keep-mb", type=int, default=256, help="actor.logprob_keep_logits_mb (not -recompute)"
    )
    a = ap.parse_args()
    from logics_rl.engines.common import cpu_emulated_dtypes

    bf16_native = "bfloat16" not in cpu_emulated_dtypes()
    if a.settings is None:
        settings = [s for s in SETTINGS if bf16_native or "-bf16" not in s]
    else:
        settings = a.settings.split(",")
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        ap.error(f"unknown settings {sorted(unknown)}; choose from {', '.join(SETTINGS)}")

    single_process_world()
    # Emulated bfloat16 (no AVX512-BF16 / AMX) runs below 1 GFLOP/s: one small product says so.
    peak = {
        "fp32": matmul_peak(torch.float32),
        "bf16": matmul_peak(torch.bfloat16) if bf16_native else matmul_peak(torch.bfloat16, 512, 1),
    }
    best = max(peak.values())
    path = model_path(a.model)
    steps, hf_config = {}, None
    from transformers import AutoConfig

    hf_config = AutoConfig.from_pretrained(path)
    batch = make_batch(hf_config.vocab_size, a.seqs, a.len, group=a.group, prompt=a.prompt)
    tokens = int(batch["prompt_mask"].sum() + batch["response_mask"].sum())
    flops = {}
    for s in settings:
        kind, dt, *flags = s.split("-")
        shared = "shared" in flags
        flops[s] = model_flops(hf_config, batch, shared)
        if kind in ("engine", "megatron"):
            dtype = {"fp32": "float32", "bf16": "bfloat16"}[dt]
            engine = "fsdp" if kind == "engine" else "megatron"
            keep_mb = 0 if "recompute" in flags else a.keep_mb
            steps[s] = engine_step(path, dtype, batch, engine, share=shared, keep_mb=keep_mb)[0]
        else:
            steps[s] = hf_step(path, dt == "bf16", batch)[0]
        steps[s]()  # warm-up
    times: dict[str, list[float]] = {s: [] for s in settings}
    for _ in range(a.rounds):
        for s in settings:
            t0 = time.perf_counter()
            steps[s]()
            times[s].append(time.perf_counter() - t0)

    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}")
    print(
        f"matmul peak: float32 {peak['fp32']:.0f} GFLOP/s, bfloat16 {peak['bf16']:.0f} GFLOP/s"
        + ("" if bf16_native else " (emulated: this CPU has no AVX512-BF16 / AMX)")
    )
    print(
        f"model: {path}; {a.seqs} rows in groups of {a.group}, {tokens} real tokens "
        f"(padded to {a.seqs} x {a.len}); median of {a.rounds} rounds; "
        f"peak RSS {peak_rss_mb():.0f} MB"
    )
    print(
        f"{'setting':21s} {'s/update':>9s} {'tokens/s':>9s} {'GFLOP':>6s} {'GFLOP/s':>8s} "
        f"{'MFU(own dtype)':>15s} {'MFU(best peak)':>15s}  rounds"
    )
    base = None
    for s in settings:
        med = statistics.median(times[s])
        gf = flops[s] / med / 1e9
        base = base or med
        print(
            f"{s:21s} {med:9.2f} {tokens / med:9.0f} {flops[s] / 1e9:6.0f} {gf:8.0f} "
            f"{gf / peak[s.split('-')[1]]:15.1%} {gf / best:15.1%}  "
            f"{[round(t, 2) for t in times[s]]}"
        )
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            steps[a.profile]()
        print(f"\nprofile of one update, {a.profile}:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
