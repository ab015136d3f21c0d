"""``zero_variance``: drop groups whose samples all agree (DAPO dynamic sampling, arXiv 2503.14476).

A group where every answer is right, or every answer is wrong, has zero advantage under GRPO: it
adds no gradient, only noise in the batch size. DAPO over-samples and keeps only prompts with
0 < #correct < G. ``metric`` is a component (default ``correct``) or ``"score"``; the group is
dropped when max - min <= ``tol``. Reasons: ``all_correct`` / ``all_wrong`` for the ``correct``
component (value >= 0.5 is correct), ``same_<metric>`` otherwise. A single-sample group is
dropped too (it has no variance).
"""

from __future__ import annotations

from logics_rl.filters.base import FILTERS, FilterDecision, Group


@FILTERS.register("zero_variance")
def zero_variance(group: Group, *, metric: str = "correct", tol: float = 0.0) -> FilterDecision:
    values = group.metric(metric, "zero_variance")
    if not values or max(values) - min(values) > tol:
        return FilterDecision(keep_group=True)
    if metric == "correct":
        return FilterDecision(
            keep_group=False, reason="all_correct" if values[0] >= 0.5 else "all_wrong"
        )
    return FilterDecision(keep_group=False, reason=f"same_{metric}")
