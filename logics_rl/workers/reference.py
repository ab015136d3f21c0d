"""The reference role: a frozen copy of the initial policy, for the KL term."""

from __future__ import annotations

from logics_rl.batches import REF_LOGP
from logics_rl.engines.train.base import TrainEngine
from logics_rl.protocol import Batch


class ReferenceRole:
    """Log-probs of the initial policy (an engine built without an optimizer)."""

    def __init__(self, engine: TrainEngine):
        self.engine = engine

    def compute_ref_log_prob(self, batch: Batch, temperature: float) -> Batch:
        out = self.engine.compute_log_prob(batch, temperature=temperature)
        return Batch.from_dict({REF_LOGP: out.logp})
