"""The reward plugin API: ``fn(batch: RewardInput, **params) -> RewardResult``.

A reward is a plain callable. It receives a whole batch (one entry per sample) and returns one
score per sample plus named components that are logged (``correct``, ``length``, ``repetition``,
...). Returning a plain ``list[float]`` is accepted too (it becomes the scores, and the term's name
becomes its component). A runnable example (``python -m doctest -v logics_rl/rewards/base.py``):

    >>> from logics_rl.rewards import RewardInput, RewardResult
    >>> def says_please(batch: RewardInput, *, bonus: float = 0.1) -> RewardResult:
    ...     hits = [bonus if "please" in r.lower() else 0.0 for r in batch.responses]
    ...     return RewardResult(scores=hits, components={"polite": hits})
    >>> says_please(RewardInput.build(["Yes please.", "No."]), bonus=0.5).scores
    [0.5, 0.0]

Register it to use it by name in a config: decorate it with ``@REWARDS.register("says_please")``
(then ``reward.terms: [{name: says_please, params: {bonus: 0.5}}]``), or name it by import path
``my_pkg.rewards:says_please``, or declare an entry point in group ``logics_rl.rewards``.

Score semantics. A sample's total reward is ``scores[i] + sum(token_scores[i])``: ``scores`` is
the sequence-level (outcome) part, credited at the last response token; ``token_scores`` is an
optional dense part, each value credited at its own token. A purely dense reward (the repetition
penalty) returns zeros in ``scores`` and reports its per-sample sum in a component, so nothing is
counted twice.

``logics_rl.testing.check_reward`` checks a plugin against this contract. This module is plain
Python: no torch, Ray or vLLM.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from logics_rl.registry import Registry, check_lengths

REWARDS = Registry("reward", entry_point_group="logics_rl.rewards")


class MissingComponentError(ValueError):
    """A reward needs a component (e.g. ``correct``) that no earlier term produced."""


@dataclass
class RewardInput:
    """A batch to score, one entry per sample (all lists have the same length)."""

    prompts: list[str]
    responses: list[str]
    ground_truths: list[Any]
    response_lengths: list[int]  # tokens
    truncated: list[bool]  # hit the length limit (finish reason "length")
    max_response_length: int  # the generation limit in tokens
    response_token_ids: list[list[int]] | None = None  # for token-level rewards
    data_sources: list[str] | None = None
    extras: list[dict] | None = None
    # Results of earlier terms of a composite (e.g. "correct"): a length reward sees correctness.
    components: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        named = {
            "prompts": self.prompts,
            "ground_truths": self.ground_truths,
            "response_lengths": self.response_lengths,
            "truncated": self.truncated,
            "response_token_ids": self.response_token_ids,
            "data_sources": self.data_sources,
            "extras": self.extras,
            **{f"components[{k!r}]": v for k, v in self.components.items()},
        }
        check_lengths("RewardInput", len(self.responses), named)

    def __len__(self) -> int:
        return len(self.responses)

    @classmethod
    def build(
        cls,
        responses: Sequence[str],
        ground_truths: Sequence[Any] | None = None,
        *,
        prompts: Sequence[str] | None = None,
        response_token_ids: Sequence[Sequence[int]] | None = None,
        response_lengths: Sequence[int] | None = None,
        truncated: Sequence[bool] | None = None,
        max_response_length: int | None = None,
        components: Mapping[str, Sequence[float]] | None = None,
        data_sources: Sequence[str] | None = None,
        extras: Sequence[dict] | None = None,
    ) -> RewardInput:
        """A batch from responses alone, for tests and scripts.

        Lengths default to the token id counts, else to whitespace word counts; ``truncated``
        defaults to all False; ``max_response_length`` to the longest response.
        """
        n = len(responses)
        ids = [list(t) for t in response_token_ids] if response_token_ids is not None else None
        if response_lengths is None:
            response_lengths = (
                [len(t) for t in ids]
                if ids is not None
                else [len(str(r).split()) for r in responses]
            )
        lengths = [int(x) for x in response_lengths]
        return cls(
            prompts=list(prompts) if prompts is not None else [""] * n,
            responses=list(responses),
            ground_truths=list(ground_truths) if ground_truths is not None else [None] * n,
            response_lengths=lengths,
            truncated=[bool(t) for t in truncated] if truncated is not None else [False] * n,
            max_response_length=int(
                max_response_length if max_response_length is not None else max(lengths, default=0)
            ),
            response_token_ids=ids,
            data_sources=list(data_sources) if data_sources is not None else None,
            extras=list(extras) if extras is not None else None,
            components={k: [float(x) for x in v] for k, v in (components or {}).items()},
        )

    def component(self, name: str, needed_by: str) -> list[float]:
        """``components[name]``, or a clear error saying which reward needed it."""
        if name not in self.components:
            have = ", ".join(sorted(self.components)) or "none"
            raise MissingComponentError(
                f"reward {needed_by!r} needs component {name!r} from an earlier term of the composite "
                f"(e.g. put a correctness term such as 'math_verify' before it); components so far: {have}"
            )
        return self.components[name]


@dataclass
class RewardResult:
    """Scores for one batch; see the module docstring for how scores and token_scores add up."""

    scores: list[float]  # one per sample (outcome part)
    components: dict[str, list[float]] = field(default_factory=dict)  # logged: correct, length, ...
    token_scores: list[list[float]] | None = None  # dense rewards aligned with response tokens
    counters: dict[str, int] = field(default_factory=dict)  # e.g. {"math_verify/timeout": 2}

    @property
    def totals(self) -> list[float]:
        """Outcome plus summed dense part, per sample."""
        if self.token_scores is None:
            return list(self.scores)
        return [s + math.fsum(t) for s, t in zip(self.scores, self.token_scores)]


class RewardFn(Protocol):
    """What a reward plugin is. Extra keyword parameters come from the term's ``params``."""

    def __call__(self, batch: RewardInput, /, **params: Any) -> RewardResult | list[float]: ...


def _float_list(values: Any, what: str, n: int, expected: str = "") -> list[float]:
    if (
        isinstance(values, (str, bytes))
        or not isinstance(values, Sequence)
        and not hasattr(values, "tolist")
    ):
        raise TypeError(f"{what} must be a list of {n} floats, got {type(values).__name__}")
    if hasattr(values, "tolist"):  # numpy arrays
        values = values.tolist()
    if len(values) != n:
        raise ValueError(f"{what} has {len(values)} entries {expected or f'for a batch of {n}'}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, (str, bytes)) or not hasattr(v, "__float__"):
            raise TypeError(f"{what}[{i}] must be a number, got {type(v).__name__}")
        f = float(v)
        if not math.isfinite(f):
            raise ValueError(f"{what}[{i}] is not finite ({f})")
        out.append(f)
    return out


def normalise_result(out: Any, batch: RewardInput, name: str) -> RewardResult:
    """Check a reward's output against the batch and return a clean ``RewardResult``.

    Accepts a ``RewardResult`` or a plain list of floats (which becomes the scores and the
    component ``name``). Errors name the reward and what is wrong.
    """
    n = len(batch)
    if isinstance(out, RewardResult):
        scores = _float_list(out.scores, f"reward {name!r}: scores", n)
        if not isinstance(out.components, Mapping):
            raise TypeError(f"reward {name!r}: components must be a dict of name -> list of floats")
        components = {
            str(k): _float_list(v, f"reward {name!r}: components[{k!r}]", n)
            for k, v in out.components.items()
        }
        token_scores = None
        if out.token_scores is not None:
            if len(out.token_scores) != n:
                raise ValueError(
                    f"reward {name!r}: token_scores has {len(out.token_scores)} rows for a batch of {n}"
                )
            token_scores = []
            for i, row in enumerate(out.token_scores):
                expected = (
                    len(batch.response_token_ids[i])
                    if batch.response_token_ids is not None
                    else batch.response_lengths[i]
                )
                where = f"but response {i} has {expected} tokens"
                token_scores.append(
                    _float_list(row, f"reward {name!r}: token_scores[{i}]", expected, where)
                )
        counters = {}
        for k, v in (out.counters or {}).items():
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(
                    f"reward {name!r}: counters[{k!r}] must be an int, got {type(v).__name__}"
                )
            counters[str(k)] = int(v)
        return RewardResult(scores, components, token_scores, counters)
    if isinstance(out, Sequence) or hasattr(out, "tolist"):
        scores = _float_list(out, f"reward {name!r}: scores", n)
        return RewardResult(scores, {name: list(scores)})
    raise TypeError(
        f"reward {name!r} returned {type(out).__name__}; expected a RewardResult or a list of floats"
    )
