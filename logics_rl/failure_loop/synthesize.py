"""Synthesizers: new questions near each failure. A registry, like rewards and filters.

    @SYNTHESIZERS.register("my_synth")
    def my_synth(req: SynthRequest, **params) -> list[Candidate]: ...

A candidate with a ``ground_truth`` is verified by construction (a programmatic synthesizer
computes it); one without is verified by teacher agreement in the loop's verify step.
Built-in: ``arithmetic`` (the built-in task: same digit counts, carries / borrows and sign).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from logics_rl.failure_loop import arithmetic as arith
from logics_rl.registry import Registry

SYNTHESIZERS = Registry("synthesizer", entry_point_group="logics_rl.synthesizers")


@dataclass
class Failure:
    """A probe question the model fails: its pass rate over k samples is below the threshold."""

    uid: int  # position in the probe pool
    question: str  # the user turn as written
    ground_truth: Any
    data_source: str
    pass_rate: float
    answers: list[str | None]  # the model's extracted answers
    extras: dict = field(default_factory=dict)


@dataclass
class Candidate:
    question: str
    ground_truth: str | None  # None: verified by teacher agreement
    failure: int  # the uid of the failure it targets
    data_source: str
    info: dict = field(default_factory=dict)  # how it was made (synthesizer, structure, ...)


@dataclass
class SynthRequest:
    failures: list[Failure]
    retrieved: list[list[dict]]  # per failure: the nearest corpus items ({text, index, score})
    per_failure: int  # candidates wanted per failure
    rng: random.Random  # seeded (failure_loop.seed)


@SYNTHESIZERS.register("arithmetic")
def arithmetic(req: SynthRequest) -> list[Candidate]:
    """``per_failure`` problems with each failure's structure (``failure_loop.arithmetic``);
    a failure without an ``a+b`` / ``a-b`` expression gets none (counted by the loop)."""
    out = []
    for f in req.failures:
        for text, answer, structure in arith.similar(f.question, req.per_failure, req.rng):
            out.append(
                Candidate(
                    text,
                    answer,
                    f.uid,
                    f.data_source,
                    {"synthesizer": "arithmetic", "structure": structure.name},
                )
            )
    return out
