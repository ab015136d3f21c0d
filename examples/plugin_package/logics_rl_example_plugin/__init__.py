"""An example logics-rl plugin package: one reward and one filter, registered as entry points.

    pip install examples/plugin_package

then, in a recipe:

    reward:
      terms:
        - {name: math_verify}
        - {name: keyword_bonus, weight: 0.1, params: {keywords: [verify, check]}}
    filters:
      - {name: distinct_answers, params: {min_distinct: 2}}
"""

from __future__ import annotations

from logics_rl.filters import FilterDecision, Group
from logics_rl.rewards import RewardInput, RewardResult
from logics_rl.rewards.boxed import boxed_answers


def keyword_bonus(
    batch: RewardInput, *, keywords: tuple[str, ...] = ("verify", "check"), bonus: float = 1.0
) -> RewardResult:
    """``bonus`` x the share of ``keywords`` that the response mentions (case-insensitive).

    Rewards a chain of thought that checks its own work. Component: ``keywords``.
    """
    words = [k.lower() for k in keywords]
    scores = []
    for response in batch.responses:
        text = response.lower() if isinstance(response, str) else ""
        hits = sum(1 for k in words if k in text)
        scores.append(bonus * hits / len(words) if words else 0.0)
    return RewardResult(scores=scores, components={"keywords": list(scores)})


def distinct_answers(group: Group, *, min_distinct: int = 2) -> FilterDecision:
    """Drop a group whose samples give fewer than ``min_distinct`` different boxed answers.

    Samples without a box count as one "no answer" value. Reason: ``too_few_distinct``.
    """
    answers = set()
    for response in group.responses:
        boxes = boxed_answers(response) if isinstance(response, str) else []
        answers.add((boxes[-1] or "").strip() if boxes else None)
    if len(group) and len(answers) < min_distinct:
        return FilterDecision(keep_group=False, reason="too_few_distinct")
    return FilterDecision(keep_group=True)
