"""``repetition``: remove (or mask) degenerate samples that repeat themselves.

A sample is degenerate when its repetition ratio exceeds ``threshold``. The ratio is the
``repetition_ratio`` component when the ``repetition`` reward ran (share of tokens inside a
repeated token n-gram, or of repeated word n-grams), else it is computed here from the text:
``1 - unique / total`` lowercased word n-grams of size ``ngram_size`` (Demystify's sparse measure).
A group whose samples are all degenerate is dropped (reason ``all_repetitive``). Sample reason:
``repetitive``.
"""

from __future__ import annotations

from typing import Literal

from logics_rl.filters.base import FILTERS, FilterDecision, Group, decide
from logics_rl.rewards.repetition import word_ngram_repeat_ratio


@FILTERS.register("repetition")
def repetition(
    group: Group,
    *,
    threshold: float = 0.5,
    component: str = "repetition_ratio",  # used when present
    ngram_size: int = 20,  # words, when computed from the text
    mode: Literal["drop", "mask"] = "drop",
) -> FilterDecision:
    if mode not in ("drop", "mask"):
        raise ValueError(f"repetition: mode={mode!r} is not 'drop' or 'mask'")
    if component in group.components:
        ratios = group.components[component]
    else:
        ratios = [
            word_ngram_repeat_ratio(r if isinstance(r, str) else "", ngram_size)
            for r in group.responses
        ]
    return decide([r > threshold for r in ratios], mode, "repetitive")
