"""Column names and the typed views of a ``Batch`` at the boundaries between stages.

``Batch`` stays the wire container (dispatch splits and concatenates it); what a stage hands to
the next is one of these views, which checks at construction that every column it promises is
there, so a missing key fails where it was dropped, not three calls later::

    PromptBatch    prompt_ids, prompt_mask [B, P] left padded; uid, prompt, ground_truth,
                   data_source, extras
        -> generate (rollout engine, n samples per prompt, prompt-major)
    RolloutBatch   + response_ids, response_mask, rollout_logp [B*n, R]; truncated [B*n];
                   policy_version [B*n] (the weights that sampled it); response, finish_reason;
                   meta: temperature (of the sampling distribution)
        -> score, filter (driver)
    ScoredBatch    + score [B], token_rewards [B, R], loss_mask [B, R], reward/<component> [B]
        -> behaviour / reference log-probs, advantages (driver and workers)
    TrainBatch     + advantages [B, R]; meta: behaviour (``Behaviour``); old_logp [B, R] unless
                   the update is on-policy; ref_logp [B, R] when a KL term is configured

Where behaviour log-probs come from is the ``behaviour`` field, never the absence of a column:
``recompute`` (a train-engine forward before the update), ``rollout`` (the sampler's own
log-probs) or ``on_policy`` (one optimizer step on samples of the current weights: the ratio is 1
by construction). The actor refuses ``on_policy`` samples drawn by other weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

import numpy as np
import torch

from logics_rl.errors import LogicsRLError
from logics_rl.protocol import Batch

# --------------------------------------------------------------------------- column names
PROMPT_IDS = "prompt_ids"
PROMPT_MASK = "prompt_mask"
UID = "uid"  # one id per prompt: the samples of a group share it
PROMPT = "prompt"  # rendered prompt text
GROUND_TRUTH = "ground_truth"
DATA_SOURCE = "data_source"
EXTRAS = "extras"

RESPONSE_IDS = "response_ids"
RESPONSE_MASK = "response_mask"
ROLLOUT_LOGP = "rollout_logp"
TRUNCATED = "truncated"
POLICY_VERSION = "policy_version"
RESPONSE = "response"  # decoded text
FINISH_REASON = "finish_reason"

SCORE = "score"
TOKEN_REWARDS = "token_rewards"
LOSS_MASK = "loss_mask"
REWARD_PREFIX = "reward/"  # + component name: per-sample reward components

OLD_LOGP = "old_logp"  # behaviour policy log-probs
REF_LOGP = "ref_logp"
ADVANTAGES = "advantages"
ENTROPY = "entropy"

TEMPERATURE = "temperature"  # meta: the sampling temperature of every row
BEHAVIOUR = "behaviour"  # meta: a ``Behaviour`` value


class Behaviour(str, Enum):
    """Where the behaviour policy's log-probs of a train batch come from."""

    on_policy = "on_policy"
    recompute = "recompute"
    rollout = "rollout"


class StageDataError(LogicsRLError, ValueError):
    """A batch handed to a stage lacks what that stage needs."""


def temperature_of(batch: Batch) -> float:
    """The sampling temperature the rows were drawn at (log-probs are computed at it)."""
    if TEMPERATURE not in batch.meta:
        raise StageDataError(
            f"the batch carries no meta[{TEMPERATURE!r}]: log-probs need the temperature the "
            "samples were drawn at (rollout batches carry it)"
        )
    return float(batch.meta[TEMPERATURE])


def reward_components(batch: Batch) -> list[str]:
    """Names of the reward components a scored batch carries as ``reward/<name>`` columns."""
    return [c[len(REWARD_PREFIX) :] for c in batch.columns() if c.startswith(REWARD_PREFIX)]


def group_rows(batch: Batch) -> list[np.ndarray]:
    """Row indices of each prompt group (rows sharing a ``uid``), in order of first appearance."""
    rows: dict[int, list[int]] = {}
    for i, uid in enumerate(batch[UID]):
        rows.setdefault(int(uid), []).append(i)
    return [np.array(r) for r in rows.values()]


# --------------------------------------------------------------------------- views
@dataclass(frozen=True)
class _View:
    batch: Batch

    COLUMNS: ClassVar[tuple[str, ...]] = ()
    META: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        missing = [c for c in self.COLUMNS if c not in self.batch]
        missing += [f"meta[{m!r}]" for m in self.META if m not in self.batch.meta]
        if missing:
            raise StageDataError(
                f"{type(self).__name__} needs {', '.join(missing)}; the batch has "
                f"{sorted(self.batch.columns())} and meta {sorted(self.batch.meta)}"
            )

    def __len__(self) -> int:
        return len(self.batch)

    def __getitem__(self, key: str):
        return self.batch[key]


_PROMPT_COLUMNS = (PROMPT_IDS, PROMPT_MASK, UID, PROMPT, GROUND_TRUTH, DATA_SOURCE, EXTRAS)


@dataclass(frozen=True)
class PromptBatch(_View):
    """Prompts for the rollout engine (left padded), one row per prompt."""

    COLUMNS: ClassVar[tuple[str, ...]] = _PROMPT_COLUMNS


@dataclass(frozen=True)
class RolloutBatch(_View):
    """n samples per prompt, prompt-major, as the rollout engine produced them."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        *_PROMPT_COLUMNS,
        RESPONSE_IDS,
        RESPONSE_MASK,
        ROLLOUT_LOGP,
        TRUNCATED,
        POLICY_VERSION,
        RESPONSE,
        FINISH_REASON,
    )
    META: ClassVar[tuple[str, ...]] = (TEMPERATURE,)

    @property
    def temperature(self) -> float:
        return temperature_of(self.batch)

    @property
    def response_mask(self) -> torch.Tensor:
        return self.batch[RESPONSE_MASK]

    @property
    def response_lengths(self) -> torch.Tensor:
        """[B] valid response tokens per sample."""
        return self.batch[RESPONSE_MASK].sum(1)


@dataclass(frozen=True)
class ScoredBatch(RolloutBatch):
    """A rollout batch with rewards and the loss mask the filters left (a view: the reward
    components are the ``reward/<name>`` columns)."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        *RolloutBatch.COLUMNS,
        SCORE,
        TOKEN_REWARDS,
        LOSS_MASK,
    )

    @property
    def loss_mask(self) -> torch.Tensor:
        return self.batch[LOSS_MASK]

    def components(self) -> list[str]:
        return reward_components(self.batch)


@dataclass(frozen=True)
class TrainBatch(ScoredBatch):
    """What the actor updates on: a scored batch with advantages and behaviour log-probs."""

    COLUMNS: ClassVar[tuple[str, ...]] = (*ScoredBatch.COLUMNS, ADVANTAGES)
    META: ClassVar[tuple[str, ...]] = (TEMPERATURE, BEHAVIOUR)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.behaviour != Behaviour.on_policy and OLD_LOGP not in self.batch:
            raise StageDataError(
                f"a train batch with behaviour={self.behaviour.value} needs the {OLD_LOGP!r} column"
            )

    @property
    def behaviour(self) -> Behaviour:
        return Behaviour(self.batch.meta[BEHAVIOUR])

    @property
    def old_logp(self) -> torch.Tensor | None:
        """Behaviour log-probs; None when the update is on-policy (the ratio is 1)."""
        return None if self.behaviour == Behaviour.on_policy else self.batch[OLD_LOGP]
