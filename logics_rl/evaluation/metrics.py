"""Metrics of k samples per prompt: avg@k, pass@k, maj@k, lengths, truncation, reward terms.

* avg@k: the mean verdict over a prompt's k samples, averaged over prompts (DAPO's avg@32,
  DeepSeek-R1's "pass@1 with k samples").
* pass@j for every j <= k: the unbiased estimator of Chen et al. (2021),
  ``1 - C(k-c, j) / C(k, j)`` with c right samples out of k, averaged over prompts.
* maj@j: majority vote over the answers of the prompt's first j samples (samples are drawn
  independently, so the first j are a random j of them), answers grouped by math-verify
  equivalence (``evaluation.answers``); samples without an answer do not vote; when several
  classes tie for the most votes the prompt scores the share of them that are right (the
  expected score of a fair tie-break); no answer at all scores 0. Reported for j = 1, 2, 4, ...
  and k.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from math import comb

import numpy as np

from logics_rl.evaluation.answers import GroupAnswers


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``c`` correct out of ``n`` samples."""
    if not 0 < k <= n:
        raise ValueError(f"pass@k needs 0 < k <= n samples, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def maj_at_k(classes: list[int], class_correct: list[float], k: int) -> float:
    """Majority-vote correctness over the first ``k`` samples (ties: the share of right ones)."""
    votes = Counter(c for c in classes[:k] if c >= 0)
    if not votes:
        return 0.0
    top = max(votes.values())
    tied = [c for c, v in votes.items() if v == top]
    return float(np.mean([class_correct[c] for c in tied]))


def vote_ks(k: int) -> list[int]:
    """1, 2, 4, ... below k, and k."""
    out = [1 << i for i in range(k.bit_length()) if 1 << i < k]
    return [*out, k]


@dataclass
class GroupResult:
    """A prompt's samples as evaluated."""

    data_source: str
    answers: GroupAnswers
    lengths: list[int]  # response tokens
    truncated: list[bool]  # cut at the token limit
    components: dict[str, list[float]] = field(default_factory=dict)  # reward terms, per sample

    @property
    def n(self) -> int:
        return len(self.lengths)


def summarize(groups: list[GroupResult]) -> dict[str, float]:
    """Metrics of a set of prompts (explicit k in the names: ``avg@4``, ``pass@1``, ``maj@4``);
    k is the smallest sample count of the set."""
    if not groups:
        raise ValueError("summarize needs at least one prompt")
    k = min(g.n for g in groups)
    if k == 0:
        raise ValueError("summarize: a prompt has no samples")
    right = [sum(g.answers.correct[:k]) for g in groups]
    out: dict[str, float] = {"prompts": float(len(groups)), "k": float(k)}
    out[f"avg@{k}"] = float(np.mean([c / k for c in right]))
    for j in range(1, k + 1):
        out[f"pass@{j}"] = float(np.mean([pass_at_k(k, int(c), j) for c in right]))
    for j in vote_ks(k):
        out[f"maj@{j}"] = float(
            np.mean([maj_at_k(g.answers.classes, g.answers.class_correct, j) for g in groups])
        )
    lengths = np.array([x for g in groups for x in g.lengths[:k]], dtype=np.float64)
    out["response_length/mean"] = float(lengths.mean())
    out["response_length/max"] = float(lengths.max())
    out["truncated"] = float(np.mean([t for g in groups for t in g.truncated[:k]]))
    out["no_answer"] = float(np.mean([a is None for g in groups for a in g.answers.answers[:k]]))
    names = sorted({c for g in groups for c in g.components})
    for c in names:
        vals = [v for g in groups for v in g.components.get(c, [])[:k]]
        out[f"reward/{c}"] = float(np.mean(vals))
    return out


def by_source(groups: list[GroupResult]) -> dict[str, list[GroupResult]]:
    out: dict[str, list[GroupResult]] = defaultdict(list)
    for g in groups:
        out[g.data_source].append(g)
    return dict(sorted(out.items()))


def validation_metrics(groups: list[GroupResult], prefix: str = "val") -> dict[str, float]:
    """The trainer's validation metrics: ``{prefix}/avg@k``, ``pass@k``, ``maj@k`` (k = the
    sample count), response length (mean, max), truncation and no-answer rates, prompts; and
    avg@k / pass@k / maj@k per data source."""

    def named(m: dict[str, float]) -> dict[str, float]:
        k = int(m["k"])
        return {"avg@k": m[f"avg@{k}"], "pass@k": m[f"pass@{k}"], "maj@k": m[f"maj@{k}"]}

    m = summarize(groups)
    out = {f"{prefix}/{key}": v for key, v in named(m).items()}
    out[f"{prefix}/response_length"] = m["response_length/mean"]
    out[f"{prefix}/response_length_max"] = m["response_length/max"]
    out[f"{prefix}/truncated"] = m["truncated"]
    out[f"{prefix}/no_answer"] = m["no_answer"]
    out[f"{prefix}/prompts"] = m["prompts"]
    for source, gs in by_source(groups).items():
        for key, v in named(summarize(gs)).items():
            out[f"{prefix}/{source}/{key}"] = v
    return out
