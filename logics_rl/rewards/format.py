"""``format``: 1 when the answer is given in the expected form, else 0.

The expected form: exactly one ``\\boxed{...}`` (or ``\\fbox``) with non-empty, balanced content
(``exactly_one=False`` accepts several, all non-empty). With ``require_think=True`` the response
must also contain one ``<think>...</think>`` block and the box must come after ``</think>`` (for
models that think in tags). Component: ``format``.

    >>> from logics_rl.rewards import RewardInput, answer_format
    >>> b = RewardInput.build([r"so \\boxed{4}", r"\\boxed{}", r"\\boxed{1} or \\boxed{2}", "4"])
    >>> answer_format(b).scores
    [1.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

from logics_rl.rewards.base import REWARDS, RewardInput, RewardResult
from logics_rl.rewards.boxed import boxed_answers


def well_formed(
    response: str,
    *,
    exactly_one: bool = True,
    require_think: bool = False,
    think_open: str = "<think>",
    think_close: str = "</think>",
) -> bool:
    """Whether ``response`` has its answer in the expected form (see the module docstring)."""
    if not isinstance(response, str):
        return False
    if require_think:
        if response.count(think_open) != 1 or response.count(think_close) != 1:
            return False
        opened, closed = response.index(think_open), response.index(think_close)
        if closed < opened:
            return False
        response = response[closed + len(think_close) :]
    boxes = boxed_answers(response)
    if not boxes or (exactly_one and len(boxes) != 1):
        return False
    return all(b is not None and b.strip() for b in boxes)


@REWARDS.register("format")
def answer_format(
    batch: RewardInput,
    *,
    exactly_one: bool = True,  # several boxes are ambiguous (math-verify would read them as a set)
    require_think: bool = False,
    think_open: str = "<think>",
    think_close: str = "</think>",
) -> RewardResult:
    scores = [
        1.0
        if well_formed(
            r,
            exactly_one=exactly_one,
            require_think=require_think,
            think_open=think_open,
            think_close=think_close,
        )
        else 0.0
        for r in batch.responses
    ]
    return RewardResult(scores=scores, components={"format": list(scores)})


answer_format.provides = ("format",)
