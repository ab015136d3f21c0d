"""Validation inside the RL trainer: k samples per held-out prompt, evaluated by the same code as
``mode: eval`` (``logics_rl.evaluation``); metrics ``val/avg@k``, ``val/pass@k``, ``val/maj@k``
overall and per data source, response length, truncation and no-answer rates."""

from __future__ import annotations

import time

from logics_rl.batches import PromptBatch
from logics_rl.config.schema import ValidationConfig
from logics_rl.engines.rollout import Sampling
from logics_rl.evaluation.answers import AnswerOptions
from logics_rl.evaluation.metrics import validation_metrics
from logics_rl.evaluation.sampling import generate_and_evaluate
from logics_rl.rewards import CompositeReward


def validate(
    workers,
    prompts: PromptBatch,
    cfg: ValidationConfig,
    sampling: Sampling,
    reward: CompositeReward,
    answers: AnswerOptions,
    max_response_length: int,
) -> dict[str, float]:
    """Generate ``cfg.k`` samples per held-out prompt and the metrics above.

    ``sampling`` carries the run's stop strings; k, temperature and top-p come from ``cfg``.
    """
    sampling = Sampling(
        n=cfg.k,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_tokens=max_response_length,
        stop=list(sampling.stop),
    )
    t0 = time.perf_counter()
    _, groups, _ = generate_and_evaluate(
        workers, prompts, sampling, reward, answers, max_response_length
    )
    metrics = validation_metrics(groups)
    metrics["time/validate"] = time.perf_counter() - t0
    return metrics
