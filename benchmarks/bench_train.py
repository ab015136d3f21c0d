"""One FSDP2 training step: tokens/s and peak RSS, with the chunked LM head vs one big chunk.

    python benchmarks/bench_train.py [--model smollm2|tiny|PATH] [--seqs 16] [--len 256]

Each setting runs in a fresh process (one-rank gloo world) so peak RSS is its own. The chunked
log-prob path keeps float32 logits for ``chunk`` tokens at a time; "unchunked" uses a chunk as
large as the whole micro-batch, i.e. what materialising all logits costs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Timer, machine, peak_rss_mb, single_process_world  # noqa: E402


def model_path(name: str) -> str:
    if name == "smollm2":
        from logics_rl.models.smollm2 import convert_smollm2

        return convert_smollm2()
    if name == "tiny":
        import tempfile

        from logics_rl.models.tiny import build_tiny_qwen3

        return build_tiny_qwen3(tempfile.mkdtemp())
    return name


def one(path: str, seqs: int, length: int, chunk: int) -> dict:
    import torch

    from logics_rl.config.schema import TrainEngineConfig
    from logics_rl.engines.train.fsdp import FSDPEngine
    from logics_rl.protocol import Batch

    single_process_world()
    torch.manual_seed(0)
    cfg = TrainEngineConfig(max_tokens_per_micro_batch=seqs * length, logprob_chunk_size=chunk)
    eng = FSDPEngine(path, cfg)
    vocab = eng.hf_config.vocab_size
    P = 32
    b = Batch.from_dict(
        {
            "prompt_ids": torch.randint(0, vocab, (seqs, P)),
            "prompt_mask": torch.ones(seqs, P, dtype=torch.bool),
            "response_ids": torch.randint(0, vocab, (seqs, length - P)),
            "response_mask": torch.ones(seqs, length - P, dtype=torch.bool),
        }
    )
    n = int(b["response_mask"].sum())

    def loss_fn(mb, logp, ent):
        return -(logp * mb["response_mask"]).sum() / n, {}

    eng.train_step(b, loss_fn)  # warm-up
    before = peak_rss_mb()
    with Timer() as t:
        eng.train_step(b, loss_fn)
    return {
        "chunk": chunk,
        "seconds": t.seconds,
        "tokens_per_s": seqs * length / t.seconds,
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
    a = ap.parse_args()
    if a.chunk is not None:  # a child process: one setting
        print(json.dumps(one(a.path, a.seqs, a.len, a.chunk)))
        return
    path = model_path(a.model)
    rows = []
    for chunk in (256, a.seqs * a.len):
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
        ]
        out = (
            subprocess.run(cmd, capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        rows.append(json.loads(out))
    print(f"machine: {machine()}")
    print(f"model: {path}; {a.seqs} sequences x {a.len} tokens per step, one rank")
    for r in rows:
        label = "chunked (256)" if r["chunk"] == 256 else "unchunked"
        print(
            f"{label:14s} step {r['seconds']:.2f} s, {r['tokens_per_s']:.0f} tok/s, peak RSS {r['peak_rss_mb']:.0f} MB"
        )
    print(
        f"peak RSS unchunked / chunked: {rows[1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}x; "
        f"speed chunked / unchunked: {rows[0]['tokens_per_s'] / rows[1]['tokens_per_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
