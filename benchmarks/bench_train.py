"""One FSDP2 training step: tokens/s and peak RSS, by forward layout and LM-head chunking.

    python benchmarks/bench_train.py [--model smollm2|tiny|PATH] [--seqs 16] [--len 256]

Responses have random lengths (a quarter to all of ``--len``), as rollouts do. Settings:
- ``padded, chunk 256``: the CPU default: right-padded rows with an attention mask, LM head on
  256 tokens at a time;
- ``padded, unchunked``: one LM-head chunk for the whole micro-batch, i.e. what materialising
  all float32 logits costs;
- ``packed, chunk 256``: every sample in ONE row (the flash-attn varlen layout); without varlen
  kernels sdpa needs a dense mask over all the micro-batch's tokens.
Each setting runs in a fresh process (one-rank gloo world) so peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Timer, machine, model_path, peak_rss_mb, single_process_world  # noqa: E402


def one(path: str, seqs: int, length: int, chunk: int, layout: str) -> dict:
    import torch

    from logics_rl.config.schema import TrainEngineConfig
    from logics_rl.engines.train import build_train_engine
    from logics_rl.protocol import Batch

    single_process_world()
    torch.manual_seed(0)
    cfg = TrainEngineConfig(max_tokens_per_micro_batch=seqs * length, logprob_chunk_size=chunk)
    eng = build_train_engine(cfg, path)
    eng.layout = layout  # an FSDP engine setting: what this benchmark compares
    vocab = eng.hf_config.vocab_size
    P, R = 32, length - 32
    g = torch.Generator().manual_seed(0)
    r_len = torch.randint(R // 4, R + 1, (seqs,), generator=g)
    b = Batch.from_dict(
        {
            "prompt_ids": torch.randint(0, vocab, (seqs, P), generator=g),
            "prompt_mask": torch.ones(seqs, P, dtype=torch.bool),
            "response_ids": torch.randint(0, vocab, (seqs, R), generator=g),
            "response_mask": torch.arange(R)[None] < r_len[:, None],
        }
    )
    b["loss_mask"] = b["response_mask"]
    n = int(b["response_mask"].sum())
    tokens = n + seqs * P

    def loss_fn(mb, logp, ent):
        return -(logp * mb["response_mask"]).sum() / n, {}

    eng.train_step(b, loss_fn, temperature=1.0)  # warm-up
    before = peak_rss_mb()
    with Timer() as t:
        eng.train_step(b, loss_fn, temperature=1.0)
    return {
        "chunk": chunk,
        "layout": layout,
        "tokens": tokens,
        "seconds": t.seconds,
        "tokens_per_s": tokens / t.seconds,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": before,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--seqs", type=int, default=8)
    ap.add_argument("--len", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--path", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--layout", default="padded", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.chunk is not None:  # a child process: one setting
        print(json.dumps(one(a.path, a.seqs, a.len, a.chunk, a.layout)))
        return
    path = model_path(a.model)
    rows = []
    for layout, chunk in (("padded", 256), ("padded", a.seqs * a.len), ("packed", 256)):
        cmd = [
            sys.executable,
            __file__,
            "--path",
            path,
            "--seqs",
            str(a.seqs),
            "--len",
            str(a.len),
            "--chunk",
            str(chunk),
            "--layout",
            layout,
        ]
        out = (
            subprocess.run(cmd, capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        rows.append(json.loads(out))
    print(f"machine: {machine()}")
    print(
        f"model: {path}; {a.seqs} sequences of 32 prompt + {a.len // 4 - 8}..{a.len - 32} response "
        f"tokens ({rows[0]['tokens']} tokens) per step, one rank"
    )
    for r in rows:
        label = f"{r['layout']}, " + ("chunk 256" if r["chunk"] == 256 else "unchunked")
        print(
            f"{label:20s} step {r['seconds']:.2f} s, {r['tokens_per_s']:.0f} tok/s, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB"
        )
    pad, unchunked, packed = rows
    print(
        f"peak RSS unchunked / chunked: {unchunked['peak_rss_mb'] / pad['peak_rss_mb']:.2f}x; "
        f"speed chunked / unchunked: {pad['tokens_per_s'] / unchunked['tokens_per_s']:.2f}x; "
        f"speed padded / packed (no varlen): {pad['tokens_per_s'] / packed['tokens_per_s']:.2f}x; "
        f"peak RSS packed / padded: {packed['peak_rss_mb'] / pad['peak_rss_mb']:.2f}x"
    )


if __name__ == "__main__":
    main()
