"""Each sample's extracted answer, its verdict, and the answer classes of a prompt's samples.

A prompt's k samples are one task of the math-verify process pool (``rewards.pool``;
``_verify_worker.analyse_group``): every response is parsed once, checked against the ground
truth exactly as the ``math_verify`` reward checks it, and put in the class of the first earlier
answer that math-verify finds equal (``0.5``, ``\\frac{1}{2}`` and ``1/2`` share a class), which
majority voting (maj@k) counts. Settings come from the run's ``math_verify`` reward term when it
has one (so a verdict here is the correctness the run trains on), else the reward's defaults.

Deadlines: each parse / comparison has the reward's per-sample deadline (``reward.timeout_s``,
soft inside the worker); a group gets at most that many seconds per sample in total, then the
pool kills the worker. What runs over is counted (``answers/timeout``), never guessed.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from logics_rl.rewards import _verify_worker as worker
from logics_rl.rewards.pool import get_pool
from logics_rl.rewards.verify import math_verify

_VERIFY_OPTS = ("fallback", "strict", "float_rounding", "numeric_precision")


@dataclass
class GroupAnswers:
    """One prompt's samples, in order."""

    answers: list[str | None]  # the extracted answer as written; None: no answer found
    correct: list[float]  # 1.0 when the answer matches the ground truth
    classes: list[int]  # answer class (math-verify equivalence); -1: no answer
    class_correct: list[float]  # per class: whether its answers are right


@dataclass(frozen=True)
class AnswerOptions:
    fallback: str = "last_number"
    strict: bool = True
    float_rounding: int = 6
    numeric_precision: int = 15
    num_workers: int = 1
    timeout_s: float = 10.0

    @classmethod
    def of_reward(cls, reward, num_workers: int, timeout_s: float) -> AnswerOptions:
        """The settings of ``reward``'s first ``math_verify`` term (a ``CompositeReward``), the
        function's defaults where it sets none; the pool size and deadline of ``RewardConfig``."""
        defaults = {
            k: p.default
            for k, p in inspect.signature(math_verify).parameters.items()
            if k in _VERIFY_OPTS
        }
        term = next((t for t in getattr(reward, "terms", []) if t.fn is math_verify), None)
        params = {
            **defaults,
            **({k: term.params[k] for k in _VERIFY_OPTS if k in term.params} if term else {}),
        }
        return cls(**params, num_workers=max(1, num_workers), timeout_s=timeout_s)


def analyse(
    ground_truths: Sequence[Any], groups: Sequence[Sequence[str]], opts: AnswerOptions
) -> tuple[list[GroupAnswers], dict[str, int]]:
    """``groups[i]`` holds prompt i's responses; returns their answers and counters
    (``answers/timeout``, ``answers/error``, ``answers/no_gold``, ``answers/worker_restart``)."""
    counters = {f"answers/{c}": 0 for c in ("timeout", "error", "no_gold", "worker_restart")}
    if not groups:
        return [], counters
    if opts.fallback not in worker.FALLBACKS:
        raise ValueError(
            f"math_verify: fallback={opts.fallback!r} is not one of {worker.FALLBACKS}"
        )
    tasks = []
    for gold, responses in zip(ground_truths, groups):
        try:
            golds = worker.gold_candidates(gold)
        except Exception:  # a gold whose str() fails: no gold
            golds = None
        tasks.append((golds, tuple(r if isinstance(r, str) else "" for r in responses)))
    largest = max(len(g) for g in groups)
    budget = opts.timeout_s * max(1, largest)
    per_op = 0.8 * opts.timeout_s
    task_opts = {
        "kind": worker.ANSWERS,
        "fallback": opts.fallback,
        "strict": bool(opts.strict),
        "float_rounding": int(opts.float_rounding),
        "numeric_precision": int(opts.numeric_precision),
        "budget_s": budget,
    }
    hard = budget + opts.timeout_s  # the group's budget plus one step over it
    res = get_pool(opts.num_workers).score(
        tasks, opts=task_opts, timeout_s=hard, chunk_size=1, soft_fraction=per_op / hard
    )
    counters["answers/worker_restart"] = res.restarts
    out = []
    for (_, responses), value, status in zip(tasks, res.scores, res.statuses):
        n = len(responses)
        if not isinstance(value, tuple):  # the whole group timed out or kept crashing its worker
            counters[f"answers/{status}"] += n
            out.append(GroupAnswers([None] * n, [0.0] * n, [-1] * n, []))
            continue
        answers, correct, classes, class_correct, timeouts, errors = value
        counters["answers/timeout"] += timeouts
        counters["answers/error"] += errors
        if status == worker.NO_GOLD:
            counters["answers/no_gold"] += n
        out.append(GroupAnswers(list(answers), list(correct), list(classes), list(class_correct)))
    return out, counters
