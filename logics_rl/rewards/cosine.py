"""``cosine_length``: the Logics-STEM length reward, on the cosine schedule of Demystify.

What Logics-STEM (arXiv 2601.01562) states: wrong answers earn MORE with a longer chain of thought
(to keep exploring instead of giving up early), correct answers get the maximum length reward.
The exact formula is not published. The shape used here is CosFn from "Demystifying Long
Chain-of-Thought Reasoning in LLMs" (Yeo et al., arXiv 2502.03373, Eq. 1):

    CosFn(t, T, a, b) = a + 1/2 (b - a) (1 + cos(pi t / T))      # b at t = 0, a at t = T

with t the response length in tokens (clipped to [0, T]) and T ``max_length`` (default: the batch's
generation limit). Per sample:

    truncated (hit the length limit)  -> exceed_length                         (default -10)
    wrong                             -> CosFn(t, T, max_value_wrong, min_value_wrong)
                                         = -10 at t = 0, rising to 0 at t = T  (defaults)
    correct, correct_mode="constant"  -> correct_value, default max(min_value_wrong, max_value_wrong),
                                         i.e. the maximum of the length reward (0 by default)
    correct, correct_mode="cosine"    -> CosFn(t, T, min_value_correct, max_value_correct)
                                         = 2 at t = 0 down to 1 at t = T  (Demystify)

How it differs from Demystify: there the cosine reward IS the whole reward and also scales correct
answers (shorter correct answers earn more, 2 -> 1), which pushes towards short answers. Logics-STEM
keeps correct answers at a constant maximum, so the length term never trades correctness for
brevity; correctness itself comes from an earlier term (``math_verify``) whose ``correct``
component this reads (>= 0.5 counts as correct). ``correct_mode="cosine"`` with
``correct_value`` unset reproduces Demystify's values. Demystify treats t + 16 >= T as exceeding;
here the rollout's own ``truncated`` flag (finish reason "length") decides. Parameter names follow
Demystify's flags (min_value_wrong, max_value_wrong, min_value_correct, max_value_correct,
exceed_length). Component: ``length``.

    >>> from logics_rl.rewards import RewardInput, cosine_length
    >>> b = RewardInput.build(["a", "b", "c"], response_lengths=[0, 512, 512], max_response_length=1024,
    ...                       components={"correct": [0.0, 0.0, 1.0]})
    >>> cosine_length(b).scores
    [-10.0, -5.0, 0.0]
"""

from __future__ import annotations

import math
from typing import Literal

from logics_rl.rewards.base import REWARDS, RewardInput, RewardResult


def cos_fn(t: float, big_t: float, a: float, b: float) -> float:
    """Demystify's CosFn: ``b`` at t = 0, ``a`` at t = T, cosine in between (t clipped to [0, T])."""
    t = min(max(t, 0.0), big_t)
    return a + 0.5 * (b - a) * (1.0 + math.cos(math.pi * t / big_t))


@REWARDS.register("cosine_length")
def cosine_length(
    batch: RewardInput,
    *,
    max_length: int | None = None,  # T in tokens; None: batch.max_response_length
    min_value_wrong: float = -10.0,  # wrong answer at t = 0
    max_value_wrong: float = 0.0,  # wrong answer at t = T
    correct_mode: Literal["constant", "cosine"] = "constant",
    correct_value: float | None = None,  # constant mode; None: the maximum of the length reward
    min_value_correct: float = 1.0,  # cosine mode: correct answer at t = T
    max_value_correct: float = 2.0,  # cosine mode: correct answer at t = 0
    exceed_length: float = -10.0,  # truncated responses
    correct_key: str = "correct",  # the component that says which answers are correct
) -> RewardResult:
    big_t = batch.max_response_length if max_length is None else max_length
    if big_t is None or big_t <= 0:
        raise ValueError(f"cosine_length: max_length must be > 0, got {big_t}")
    if correct_mode not in ("constant", "cosine"):
        raise ValueError(
            f"cosine_length: correct_mode={correct_mode!r} is not 'constant' or 'cosine'"
        )
    correct = batch.component(correct_key, "cosine_length") if len(batch) else []
    top = max(min_value_wrong, max_value_wrong) if correct_value is None else correct_value
    scores = []
    for i in range(len(batch)):
        t = float(batch.response_lengths[i])
        if batch.truncated[i]:
            r = exceed_length
        elif correct[i] < 0.5:
            r = cos_fn(t, big_t, max_value_wrong, min_value_wrong)
        elif correct_mode == "constant":
            r = top
        else:
            r = cos_fn(t, big_t, min_value_correct, max_value_correct)
        scores.append(float(r))
    return RewardResult(scores=scores, components={"length": list(scores)})


cosine_length.requires = lambda params: (params.get("correct_key", "correct"),)
cosine_length.provides = ("length",)
