"""Generate k samples per prompt on a worker group, score them, and analyse their answers:
the one code path of ``mode: eval`` and of the RL trainer's validation.

A sample's verdict is the reward's (``verdicts``); its extracted answer and answer class come
from ``evaluation.answers`` (math-verify), and a class is right when its first answer's verdict
is. With the ``math_verify`` reward both checks are the same code with the same settings.
"""

from __future__ import annotations

from typing import Any

from logics_rl.batches import (
    DATA_SOURCE,
    FINISH_REASON,
    GROUND_TRUTH,
    PROMPT,
    RESPONSE,
    RESPONSE_MASK,
    REWARD_PREFIX,
    SCORE,
    TRUNCATED,
    PromptBatch,
    RolloutBatch,
    group_rows,
    reward_components,
)
from logics_rl.engines.rollout import Sampling
from logics_rl.evaluation.answers import AnswerOptions, analyse
from logics_rl.evaluation.metrics import GroupResult
from logics_rl.protocol import Batch
from logics_rl.rewards import CompositeReward
from logics_rl.trainer.scoring import score_batch


def verdicts(scored: Batch) -> list[bool]:
    """A sample is right when the reward's ``correct`` component is 1 (``math_verify``), or, for
    a reward without one, when its score is positive."""
    if REWARD_PREFIX + "correct" in scored:
        return (scored[REWARD_PREFIX + "correct"] > 0.5).tolist()
    return (scored[SCORE] > 0).tolist()


def generate_and_evaluate(
    workers,
    prompts: PromptBatch,
    sampling: Sampling,
    reward: CompositeReward,
    answers: AnswerOptions,
    max_response_length: int,
) -> tuple[Batch, list[GroupResult], dict[str, float]]:
    """``sampling.n`` samples per prompt from ``workers.generate_sequences`` (data-parallel over
    the group's ranks), scored with ``reward`` and their answers analysed.

    Returns the scored batch (prompt-major), one ``GroupResult`` per prompt in input order, and
    the reward's and the answer analysis's counters.
    """
    out = RolloutBatch(workers.generate_sequences(prompts.batch, sampling))
    scored, reward_metrics = score_batch(out, reward, max_response_length)
    rows = group_rows(scored)
    found, counters = analyse(
        [scored[GROUND_TRUTH][r[0]] for r in rows],
        [[scored[RESPONSE][i] for i in r] for r in rows],
        answers,
    )
    ok = verdicts(scored)
    for r, a in zip(rows, found):  # the reward's verdicts; a class is right if its first answer is
        a.correct = [float(ok[i]) for i in r]
        a.class_correct = [a.correct[a.classes.index(c)] for c in range(len(a.class_correct))]
    lengths = scored[RESPONSE_MASK].sum(1).tolist()
    truncated = scored[TRUNCATED].tolist()
    comps = {c: scored[REWARD_PREFIX + c].tolist() for c in reward_components(scored)}
    groups = [
        GroupResult(
            data_source=str(scored[DATA_SOURCE][r[0]]),
            answers=a,
            lengths=[int(lengths[i]) for i in r],
            truncated=[bool(truncated[i]) for i in r],
            components={c: [float(v[i]) for i in r] for c, v in comps.items()},
        )
        for r, a in zip(rows, found)
    ]
    metrics = {k: v for k, v in reward_metrics.items() if k.startswith("reward/count/")}
    metrics.update({f"reward/count/{k}": float(v) for k, v in counters.items()})
    return scored, groups, metrics


def sample_records(scored: Batch, groups: list[GroupResult]) -> list[dict[str, Any]]:
    """One JSON-ready row per sample: prompt, response, extracted answer, verdict, answer class,
    length, finish reason, reward components."""
    out = []
    rows = group_rows(scored)
    for p, (r, g) in enumerate(zip(rows, groups)):
        for j, i in enumerate(r):
            out.append(
                {
                    "prompt_index": p,
                    "sample": j,
                    "data_source": g.data_source,
                    "prompt": scored[PROMPT][i],
                    "ground_truth": scored[GROUND_TRUTH][i],
                    "response": scored[RESPONSE][i],
                    "answer": g.answers.answers[j],
                    "correct": bool(g.answers.correct[j]),
                    "answer_class": g.answers.classes[j],
                    "length": g.lengths[j],
                    "finish_reason": scored[FINISH_REASON][i],
                    "rewards": {c: v[j] for c, v in g.components.items()},
                }
            )
    return out
