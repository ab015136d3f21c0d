"""Combining metrics from micro-batches, ranks and generation rounds.

Convention: keys ending in ``_max`` are combined by max, ``_min`` by min, keys holding
``/count/`` are totals and summed; everything else is a weighted mean (weights: tokens for
per-token metrics, samples for per-sample ones).
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def merge_weighted(parts: Iterable[tuple[dict[str, float], float]]) -> dict[str, float]:
    """Merge ``(metrics, weight)`` pairs by the naming convention above."""
    parts = list(parts)
    keys: list[str] = []
    for metrics, _ in parts:
        keys.extend(k for k in metrics if k not in keys)
    out: dict[str, float] = {}
    for key in keys:
        vals = [(float(m[key]), w) for m, w in parts if key in m]
        if key.endswith("_max"):
            out[key] = max(v for v, _ in vals)
        elif key.endswith("_min"):
            out[key] = min(v for v, _ in vals)
        elif "/count/" in key:
            out[key] = sum(v for v, _ in vals)
        else:
            total = sum(w for _, w in vals)
            if total > 0:
                out[key] = sum(v * w for v, w in vals) / total
            else:
                out[key] = sum(v for v, _ in vals) / len(vals) if vals else math.nan
    return out
