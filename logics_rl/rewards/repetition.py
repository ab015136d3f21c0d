"""``repetition``: the n-gram repetition penalty of Demystify (arXiv 2502.03373, Sec. 4.3).

Two forms, as in the paper's code (``openrlhf/reward/repetition.py``):

``mode="dense"`` (the paper's runs, ``math_rule_repetition_dense``): over the response's TOKEN ids,
every token of an n-gram that already appeared earlier in the same response gets ``penalty``
(runs: n = 40, -0.05 per token). ``only_start=True`` penalises only the first n-gram of each
contiguous repeated span. Returned as ``token_scores`` (a dense reward at each token); ``scores``
are 0 and the per-sample sum is the ``repetition`` component, so the trainer does not count it
twice. The paper trains it as a separate reward stream with gamma 0.99; here it is added to the
token rewards of the composite. Applies to every answer, right or wrong.

``mode="sparse"``: wrong answers only (reads the ``correct`` component), on lowercased whitespace
words: ``(1 - unique n-grams / total n-grams) * max_penalty`` (paper CLI: n = 20; its default
max_penalty 0 means off, here -1). Returned as ``scores`` and the ``repetition`` component.

Both also report ``repetition_ratio`` in [0, 1] (dense: share of penalised tokens; sparse: the
repeated share of word n-grams, for every answer), which the ``repetition`` filter can use.

Linear time in the response length: n-grams are hashed as tuples into a set once each, and the
penalised positions are marked with a moving "covered up to" index (the reference code re-marks
n tokens per repeated n-gram).

    >>> from logics_rl.rewards import RewardInput, repetition
    >>> b = RewardInput.build(["..."], response_token_ids=[[1, 2, 3, 1, 2, 3]])
    >>> repetition(b, ngram_size=3, penalty=-1.0).token_scores
    [[0.0, 0.0, 0.0, -1.0, -1.0, -1.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from logics_rl.rewards.base import REWARDS, RewardInput, RewardResult

DENSE_N, SPARSE_N = 40, 20


def repeated_token_mask(tokens: Sequence[int], n: int, only_start: bool = False) -> list[bool]:
    """True for each token inside an n-gram that already occurred earlier in ``tokens``."""
    length = len(tokens)
    mask = [False] * length
    if n <= 0 or length < n:
        return mask
    seen: set[tuple[int, ...]] = set()
    covered = 0  # tokens before this index are already marked
    span_end = -1  # end of the current repeated span (only_start)
    for start, gram in enumerate(zip(*(tokens[i:] for i in range(n)))):
        if gram in seen:
            if not only_start or start > span_end:
                for j in range(max(start, covered), start + n):
                    mask[j] = True
                covered = max(covered, start + n)
            span_end = start + n
        else:
            seen.add(gram)
    return mask


def word_ngram_repeat_ratio(text: str, n: int) -> float:
    """``1 - unique / total`` word n-grams of the lowercased text (0 when it has no n-gram)."""
    words = text.lower().split()
    if n <= 0 or len(words) < n:
        return 0.0
    grams = list(zip(*(words[i:] for i in range(n))))
    return 1.0 - len(set(grams)) / len(grams)


@REWARDS.register("repetition")
def repetition(
    batch: RewardInput,
    *,
    mode: Literal["dense", "sparse"] = "dense",
    ngram_size: int | None = None,  # None: 40 tokens (dense) / 20 words (sparse)
    penalty: float = -0.05,  # dense: per repeated token
    only_start: bool = False,  # dense: only the first n-gram of each repeated span
    max_penalty: float = -1.0,  # sparse: penalty of a fully repeated wrong answer
    correct_key: str = "correct",  # sparse: the component that says which answers are correct
) -> RewardResult:
    if mode not in ("dense", "sparse"):
        raise ValueError(f"repetition: mode={mode!r} is not 'dense' or 'sparse'")
    if penalty > 0 or max_penalty > 0:
        raise ValueError(
            f"repetition: penalty and max_penalty must be <= 0, got {penalty} and {max_penalty}"
        )
    n = ngram_size if ngram_size is not None else (DENSE_N if mode == "dense" else SPARSE_N)
    if n < 1:
        raise ValueError(f"repetition: ngram_size must be >= 1, got {n}")
    size = len(batch)
    if mode == "dense":
        if batch.response_token_ids is None:
            raise ValueError(
                "repetition: mode='dense' needs batch.response_token_ids (token-level n-grams)"
            )
        token_scores, sums, ratios = [], [], []
        for ids in batch.response_token_ids:
            mask = repeated_token_mask(ids, n, only_start)
            token_scores.append([penalty if m else 0.0 for m in mask])
            hits = sum(mask)
            sums.append(penalty * hits)
            ratios.append(hits / len(mask) if mask else 0.0)
        return RewardResult(
            scores=[0.0] * size,
            components={"repetition": sums, "repetition_ratio": ratios},
            token_scores=token_scores,
        )
    correct = batch.component(correct_key, "repetition (mode='sparse')") if size else []
    ratios = [word_ngram_repeat_ratio(r if isinstance(r, str) else "", n) for r in batch.responses]
    scores = [0.0 if c >= 0.5 else ratio * max_penalty for c, ratio in zip(correct, ratios)]
    scores = [s + 0.0 for s in scores]  # -0.0 -> 0.0
    return RewardResult(
        scores=scores, components={"repetition": list(scores), "repetition_ratio": ratios}
    )


repetition.requires = lambda params: (
    (params.get("correct_key", "correct"),) if params.get("mode") == "sparse" else ()
)
repetition.provides = ("repetition", "repetition_ratio")
