"""Reward plugins: ``fn(batch: RewardInput, **params) -> RewardResult``, a registry, a composite.

Built-ins (one small file each): ``math_verify`` (correctness, in worker processes),
``cosine_length`` (Logics-STEM length reward), ``repetition`` (n-gram penalty, dense or sparse),
``overlong`` (DAPO soft overlong punishment), ``format`` (one non-empty ``\\boxed{}``).

    >>> from logics_rl.config.schema import RewardConfig, RewardTermConfig
    >>> from logics_rl.rewards import RewardInput, build_reward
    >>> reward = build_reward(RewardConfig(terms=[RewardTermConfig("math_verify"),
    ...                                           RewardTermConfig("format", weight=0.1)]))
    >>> result = reward(RewardInput.build([r"\\boxed{4}", "5"], ground_truths=["4", "4"]))
    >>> result.scores, result.components
    ([1.1, 0.0], {'correct': [1.0, 0.0], 'format': [1.0, 0.0]})

Plain Python: importing this package loads no torch, Ray, vLLM or Megatron (math-verify and SymPy
load only inside the scoring worker processes). The plugin API is in ``base.py``; the plumbing
shared with filters (``check_params`` and the term binding) is in ``logics_rl.registry``; the
contract kit for third-party rewards is ``logics_rl.testing.check_reward``.
"""

from logics_rl.registry import check_params
from logics_rl.rewards.base import (
    REWARDS,
    MissingComponentError,
    RewardFn,
    RewardInput,
    RewardResult,
    normalise_result,
)
from logics_rl.rewards.composite import CompositeReward, RewardTerm, RewardTermError, build_reward
from logics_rl.rewards.cosine import cosine_length
from logics_rl.rewards.format import answer_format
from logics_rl.rewards.overlong import overlong
from logics_rl.rewards.pool import VerifyPool, get_pool, shutdown_pools
from logics_rl.rewards.repetition import repetition
from logics_rl.rewards.verify import math_verify

__all__ = [
    "REWARDS",
    "CompositeReward",
    "MissingComponentError",
    "RewardFn",
    "RewardInput",
    "RewardResult",
    "RewardTerm",
    "RewardTermError",
    "VerifyPool",
    "answer_format",
    "build_reward",
    "check_params",
    "cosine_length",
    "get_pool",
    "math_verify",
    "normalise_result",
    "overlong",
    "repetition",
    "shutdown_pools",
]
