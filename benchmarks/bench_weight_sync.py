"""Weight sync from the FSDP2 engine into the in-process vLLM engine: seconds per GB, plus the
parity probe's cost and agreement.

    python benchmarks/bench_weight_sync.py [--model smollm2|PATH] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Timer, machine, single_process_world  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from logics_rl.config.schema import (
        RolloutConfig,
        TrainEngineConfig,
        VLLMConfig,
        WeightSyncConfig,
    )
    from logics_rl.engines.rollout import build_rollout_engine
    from logics_rl.engines.train import build_train_engine
    from logics_rl.models.smollm2 import convert_smollm2

    path = convert_smollm2() if a.model == "smollm2" else a.model
    single_process_world()
    train = build_train_engine(TrainEngineConfig(), path)
    cfg = RolloutConfig(
        vllm=VLLMConfig(kv_cache_gb=0.5), weight_sync=WeightSyncConfig(bucket_mb=256)
    )
    roll = build_rollout_engine(cfg, path, max_model_len=512, seed=0)
    results = []
    for _ in range(a.repeats):
        with Timer() as t:
            stats = roll.update_weights(train.named_parameters_for_export())
        results.append((t.seconds, stats["bytes"]))
    best = min(s for s, _ in results)
    gb = results[0][1] / 1e9
    print(f"machine: {machine()}")
    print(f"model: {path}; {gb:.3f} GB per sync (float32), buckets of 256 MB")
    print(f"sync seconds (best of {a.repeats}): {best:.2f} s -> {best / gb:.2f} s/GB")


if __name__ == "__main__":
    main()
