"""Advantage estimators, one per file, registered in ``ADVANTAGES`` on import.

Every estimator: ``fn(inp: AdvantageInput, **params) -> AdvantageOutput``; ``params`` come from
``algorithm.advantage.params`` and are checked against the signature when the run is built.

    grpo                          group mean (and std) baseline        arXiv 2402.03300, 2503.20783
    rloo                          leave-one-out baseline               arXiv 2402.14740
    reinforce_plus_plus           discounted returns, global whitening arXiv 2501.03262
    reinforce_plus_plus_baseline  group mean, then global whitening    arXiv 2501.03262

GAE (arXiv 1506.02438) needs a critic, which the trainer does not have yet; it is not offered.
"""

from __future__ import annotations

from logics_rl.algorithms.advantages.base import (
    AdvantageInput,
    AdvantageOutput,
    place_outcome_rewards,
)
from logics_rl.algorithms.advantages.grpo import grpo
from logics_rl.algorithms.advantages.reinforce_plus_plus import reinforce_plus_plus
from logics_rl.algorithms.advantages.reinforce_plus_plus_baseline import (
    reinforce_plus_plus_baseline,
)
from logics_rl.algorithms.advantages.rloo import rloo

__all__ = [
    "AdvantageInput",
    "AdvantageOutput",
    "grpo",
    "place_outcome_rewards",
    "reinforce_plus_plus",
    "reinforce_plus_plus_baseline",
    "rloo",
]
