"""Validation: avg@k and pass@k on held-out prompts, overall and per data source.

avg@k is the mean correctness over all k samples of all prompts (DAPO's avg@32, DeepSeek-R1's
pass@1 with k samples). pass@k uses the unbiased estimator of Chen et al. (2021),
1 - C(n-c, k) / C(n, k), with n = k samples here (so it is 1 when any sample is right).
Correctness is the reward's ``correct`` component when present, else ``score > 0``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from math import comb

import numpy as np

from logics_rl.batches import (
    DATA_SOURCE,
    RESPONSE_MASK,
    REWARD_PREFIX,
    SCORE,
    PromptBatch,
    RolloutBatch,
    group_rows,
)
from logics_rl.config.schema import ValidationConfig
from logics_rl.engines.rollout import Sampling
from logics_rl.protocol import Batch
from logics_rl.rewards import CompositeReward
from logics_rl.trainer.scoring import score_batch


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``c`` correct out of ``n`` samples."""
    if k > n:
        raise ValueError(f"pass@k needs k <= n samples, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def correctness(batch: Batch) -> np.ndarray:
    if REWARD_PREFIX + "correct" in batch:
        return batch[REWARD_PREFIX + "correct"].numpy() > 0.5
    return batch[SCORE].numpy() > 0


def validation_metrics(batch: Batch, k: int, prefix: str = "val") -> dict[str, float]:
    """Metrics from a scored batch holding k samples per prompt (grouped by ``uid``)."""
    ok = correctness(batch)
    lengths = batch[RESPONSE_MASK].sum(1).numpy()
    by_source: dict[str, list[tuple[float, float]]] = defaultdict(list)
    groups = group_rows(batch)
    for rows in groups:
        c, n = int(ok[rows].sum()), len(rows)
        by_source[str(batch[DATA_SOURCE][rows[0]])].append((c / n, pass_at_k(n, c, min(k, n))))
    out = {
        f"{prefix}/avg@k": float(ok.mean()),
        f"{prefix}/pass@k": float(np.mean([p for v in by_source.values() for _, p in v])),
        f"{prefix}/response_length": float(lengths.mean()),
        f"{prefix}/prompts": float(len(groups)),
    }
    for source, vals in sorted(by_source.items()):
        out[f"{prefix}/{source}/avg@k"] = float(np.mean([a for a, _ in vals]))
        out[f"{prefix}/{source}/pass@k"] = float(np.mean([p for _, p in vals]))
    return out


def validate(
    workers,
    prompts: PromptBatch,
    cfg: ValidationConfig,
    sampling: Sampling,
    reward: CompositeReward,
    max_response_length: int,
) -> dict[str, float]:
    """Generate ``cfg.k`` samples per held-out prompt, score them, and the metrics above.

    ``sampling`` carries the run's stop strings; k, temperature and top-p come from ``cfg``.
    """
    sampling = Sampling(
        n=cfg.k,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_tokens=max_response_length,
        stop=list(sampling.stop),
    )
    t0 = time.perf_counter()
    out = RolloutBatch(workers.generate_sequences(prompts.batch, sampling))
    scored, _ = score_batch(out, reward, max_response_length)
    metrics = validation_metrics(scored, cfg.k)
    metrics["time/validate"] = time.perf_counter() - t0
    return metrics
