"""Validation: avg@k and pass@k on held-out prompts, overall and per data source.

avg@k is the mean correctness over all k samples of all prompts (DAPO's avg@32, DeepSeek-R1's
pass@1 with k samples). pass@k uses the unbiased estimator of Chen et al. (2021),
1 - C(n-c, k) / C(n, k), with n = k samples here (so it is 1 when any sample is right).
Correctness is the reward's ``correct`` component when present, else ``score > 0``.
"""

from __future__ import annotations

from collections import defaultdict
from math import comb

import numpy as np

from logics_rl.protocol import Batch


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``c`` correct out of ``n`` samples."""
    if k > n:
        raise ValueError(f"pass@k needs k <= n samples, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def correctness(batch: Batch) -> np.ndarray:
    if "reward/correct" in batch:
        return batch["reward/correct"].numpy() > 0.5
    return batch["score"].numpy() > 0


def validation_metrics(batch: Batch, k: int, prefix: str = "val") -> dict[str, float]:
    """Metrics from a scored batch holding k samples per prompt (grouped by ``uid``)."""
    ok = correctness(batch)
    lengths = batch["response_mask"].sum(1).numpy()
    per_uid: dict[int, list[int]] = defaultdict(list)
    for i, uid in enumerate(batch["uid"]):
        per_uid[int(uid)].append(i)
    sources = {
        int(batch["uid"][rows[0]]): str(batch["data_source"][rows[0]]) for rows in per_uid.values()
    }
    by_source: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for uid, rows in per_uid.items():
        c, n = int(ok[rows].sum()), len(rows)
        by_source[sources[uid]].append((c / n, pass_at_k(n, c, min(k, n))))
    out = {
        f"{prefix}/avg@k": float(ok.mean()),
        f"{prefix}/pass@k": float(np.mean([p for v in by_source.values() for _, p in v])),
        f"{prefix}/response_length": float(lengths.mean()),
        f"{prefix}/prompts": float(len(per_uid)),
    }
    for source, vals in sorted(by_source.items()):
        out[f"{prefix}/{source}/avg@k"] = float(np.mean([a for a, _ in vals]))
        out[f"{prefix}/{source}/pass@k"] = float(np.mean([p for _, p in vals]))
    return out
