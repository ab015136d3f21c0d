"""Held-out metrics from fixed scored samples: avg@k, unbiased pass@k, per data source."""

from __future__ import annotations

from math import comb

import pytest
import torch

from logics_rl.protocol import Batch
from logics_rl.trainer.validation import pass_at_k, validation_metrics


def test_pass_at_k_hand_values():
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - comb(3, 2) / comb(5, 2))  # 0.7
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(2, 1, 3)


def scored(correct: list[list[int]], sources: list[str], lengths: list[list[int]]) -> Batch:
    rows = [
        (uid, c, n) for uid, (cs, ns) in enumerate(zip(correct, lengths)) for c, n in zip(cs, ns)
    ]
    width = max(n for _, _, n in rows)
    return Batch.from_dict(
        {
            "reward/correct": torch.tensor([float(c) for _, c, _ in rows]),
            "score": torch.tensor([c - 0.5 for _, c, _ in rows]),
            "response_mask": torch.arange(width)[None]
            < torch.tensor([n for *_, n in rows])[:, None],
        },
        {"uid": [u for u, _, _ in rows], "data_source": [sources[u] for u, _, _ in rows]},
    )


def test_validation_metrics_by_hand():
    batch = scored(
        correct=[[1, 0], [0, 0], [1, 1]], sources=["a", "a", "b"], lengths=[[2, 4], [1, 1], [3, 3]]
    )
    m = validation_metrics(batch, k=2)
    assert m["val/avg@k"] == pytest.approx(3 / 6)
    assert m["val/pass@k"] == pytest.approx((1 + 0 + 1) / 3)
    assert m["val/a/avg@k"] == pytest.approx((0.5 + 0.0) / 2) and m["val/a/pass@k"] == 0.5
    assert m["val/b/avg@k"] == 1.0 and m["val/b/pass@k"] == 1.0
    assert m["val/response_length"] == pytest.approx(14 / 6) and m["val/prompts"] == 3.0
