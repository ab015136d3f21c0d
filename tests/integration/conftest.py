"""One local Ray cluster for the whole integration session."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from logics_rl.controller import init_ray

    # More logical CPUs than cores so that several small groups can coexist in the tests.
    # Worker output is forwarded as in a real run (pytest captures it; test_quickstart checks
    # that the console filter of logics_rl/logs.py keeps the known start-up noise out of it).
    init_ray(num_cpus=max(4, os.cpu_count() or 1), log_to_driver=True)
    yield ray
    ray.shutdown()


def _train_batch(rollout, advantages: torch.Tensor, old_logp: torch.Tensor | None):
    """A rollout made into what ``update_actor`` takes: scored (zero rewards, every response
    token in the loss), with advantages, and behaviour log-probs (recomputed) or none
    (on-policy)."""
    from logics_rl.batches import BEHAVIOUR, Behaviour

    mask = rollout["response_mask"]
    columns = {
        "score": torch.zeros(len(rollout)),
        "token_rewards": torch.zeros(mask.shape),
        "loss_mask": mask,
        "advantages": advantages,
    }
    behaviour = Behaviour.on_policy
    if old_logp is not None:
        columns["old_logp"], behaviour = old_logp, Behaviour.recompute
    return rollout.with_columns(columns, meta={BEHAVIOUR: behaviour})


@pytest.fixture(scope="session")
def train_batch():
    return _train_batch
