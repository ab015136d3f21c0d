"""``math_verify``: answer correctness with Math-Verify, scored in worker processes.

Component ``correct`` in {0, 1}. The ground truth is parsed and passed FIRST to ``verify`` (it is
not symmetric); a gold without LaTeX delimiters is wrapped in ``\\boxed{}`` so ``42`` and
``\\frac{1}{2}`` parse; a list of golds accepts any of them. The prediction's ``\\boxed{}`` answer is
tried first (``boxed_match_priority=0``), then the ``fallback``:

  * ``"last_number"`` (default): LaTeX in $...$ / \\[...\\] or a plain number / expression,
    answer-anchored ones ("the answer is 42") first, else the last one in the text;
  * ``"latex"``: LaTeX only, no plain numbers;
  * ``"none"``: only ``\\boxed{}`` answers count (a response without one scores 0).

Predictions are normalised as the Math-Verify README advises for rewards (no ``nits``, no
``malformed_operators``), plus TeX single-token arguments (``\\dfrac12``, ``\\sqrt3``) braced.

Every sample scores 0 rather than raising: a timeout (``math_verify/timeout``), an exception
(``math_verify/error``) or a missing / unparsable ground truth (``math_verify/no_gold``) is counted
in ``counters``; ``math_verify/worker_restart`` counts replaced worker processes. Scoring runs in a
shared process pool (``logics_rl.rewards.pool``): safe from any thread, with a hard per-sample
deadline enforced from outside. ``num_workers=0`` scores in-process instead (main thread only, no
hard kill: for debugging and tiny inputs; from another thread it uses a 1-process pool).

    >>> from logics_rl.rewards import RewardInput, math_verify
    >>> batch = RewardInput.build([r"so \\boxed{0.5}", "I think 3"], ground_truths=[r"\\frac{1}{2}", "4"])
    >>> math_verify(batch).components["correct"]
    [1.0, 0.0]
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from typing import Any, Literal

from logics_rl.config.schema import RewardConfig
from logics_rl.rewards import _verify_worker as worker
from logics_rl.rewards.base import REWARDS, RewardInput, RewardResult
from logics_rl.rewards.pool import PoolResult, get_pool

logger = logging.getLogger(__name__)
COUNTERS = ("timeout", "error", "no_gold", "worker_restart")
# The pool settings live in RewardConfig: build_reward passes the configured ones (from_config
# below); a direct call gets the schema's defaults, read here and nowhere else.
POOL_SETTINGS = ("num_workers", "timeout_s")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RewardConfig) if f.name in POOL_SETTINGS}


def _in_process(tasks: list[tuple], opts: dict, deadline_s: float | None) -> PoolResult:
    worker._mv()  # import math-verify before the first deadline starts
    old_handler = worker.install_alarm_handler()
    old_timer = signal.getitimer(signal.ITIMER_REAL)
    try:
        results = [worker.score_guarded(g, p, opts, deadline_s) for g, p in tasks]
    finally:
        signal.signal(signal.SIGALRM, old_handler if old_handler is not None else signal.SIG_DFL)
        if old_timer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *old_timer)
    return PoolResult([s for s, _ in results], [st for _, st in results])


def _dedupe(batch: RewardInput) -> tuple[list[tuple[Any, str]], list[int]]:
    """Unique ``(gold_candidates, prediction)`` tasks and each sample's task index.

    A group often repeats short answers, and the gold repeats across the group: each distinct
    task is scored once.
    """
    index: dict[tuple[Any, str], int] = {}
    which = []
    for gold, pred in zip(batch.ground_truths, batch.responses):
        try:
            golds = worker.gold_candidates(gold)
        except Exception:  # a gold whose str() fails: counted as no_gold
            golds = None
        which.append(index.setdefault((golds, pred if isinstance(pred, str) else ""), len(index)))
    return list(index), which


def _score(
    tasks: list[tuple[Any, str]],
    opts: dict,
    workers: int,
    deadline: float,
    chunk_size: int,
    soft_deadline: bool,
) -> PoolResult:
    """Score in-process when asked and possible (main thread), else in the shared pool."""
    main_thread = threading.current_thread() is threading.main_thread()
    if workers == 0 and main_thread and hasattr(signal, "setitimer"):
        return _in_process(tasks, opts, deadline if soft_deadline else None)
    if workers == 0:
        logger.warning(
            "math_verify: num_workers=0 needs the main thread; scoring in a 1-process pool instead"
        )
    return get_pool(max(workers, 1)).score(
        tasks,
        opts=opts,
        timeout_s=deadline,
        chunk_size=chunk_size,
        soft_fraction=0.8 if soft_deadline else None,
    )


@REWARDS.register("math_verify")
def math_verify(
    batch: RewardInput,
    *,
    fallback: Literal["last_number", "latex", "none"] = "last_number",
    num_workers: int = _DEFAULTS["num_workers"],  # 0: in-process
    timeout_s: float = _DEFAULTS["timeout_s"],  # hard per-sample deadline
    chunk_size: int = 16,  # samples sent to a worker at a time (each keeps its own deadline)
    soft_deadline: bool = True,  # worker-side alarm at 0.8 x timeout_s before the hard kill
    strict: bool = True,  # math-verify strict mode: variables matter, sets != tuples
    float_rounding: int = 6,
    numeric_precision: int = 15,
) -> RewardResult:
    workers, deadline = int(num_workers), float(timeout_s)
    if fallback not in worker.FALLBACKS:
        raise ValueError(f"math_verify: fallback={fallback!r} is not one of {worker.FALLBACKS}")
    if workers < 0 or deadline <= 0:
        raise ValueError(
            f"math_verify: need num_workers >= 0 and timeout_s > 0, got {workers} and {deadline}"
        )
    counters = {f"math_verify/{c}": 0 for c in COUNTERS}
    if len(batch) == 0:
        return RewardResult([], {"correct": []}, counters=counters)
    tasks, which = _dedupe(batch)
    opts = {
        "fallback": fallback,
        "strict": bool(strict),
        "float_rounding": int(float_rounding),
        "numeric_precision": int(numeric_precision),
    }
    res = _score(tasks, opts, workers, deadline, chunk_size, soft_deadline)
    for j in which:
        if res.statuses[j] != "ok":
            counters[f"math_verify/{res.statuses[j]}"] += 1
    counters["math_verify/worker_restart"] = res.restarts
    correct = [res.scores[j] for j in which]
    return RewardResult(scores=correct, components={"correct": list(correct)}, counters=counters)


math_verify.provides = ("correct",)
math_verify.from_config = POOL_SETTINGS  # build_reward passes RewardConfig's pool settings
