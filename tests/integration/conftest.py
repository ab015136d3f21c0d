"""Integration helpers (the session's Ray cluster is in ``tests/conftest.py``)."""

from __future__ import annotations

import pytest
import torch


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
