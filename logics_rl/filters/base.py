"""The filter plugin API: ``fn(group: Group, **params) -> FilterDecision``.

A filter sees ONE prompt's group of samples (after scoring) and decides whether the group stays
in the batch (DAPO dynamic sampling), which samples to remove, and which samples stay but have
their loss zeroed. A runnable example (``python -m doctest -v logics_rl/filters/base.py``):

    >>> from logics_rl.filters import FilterDecision, Group
    >>> def needs_two_distinct(group: Group, *, min_distinct: int = 2) -> FilterDecision:
    ...     if len(set(group.responses)) < min_distinct:
    ...         return FilterDecision(keep_group=False, reason="too_few_distinct")
    ...     return FilterDecision(keep_group=True)
    >>> needs_two_distinct(Group.build(["4", "4"], scores=[1.0, 1.0])).reason
    'too_few_distinct'

A dropped group must give a ``reason`` (it is counted in metrics as ``filter/<name>/<reason>``).
Plugins are found by short name (``@FILTERS.register``), import path ``pkg.module:fn`` or an entry
point in group ``logics_rl.filters``; ``logics_rl.testing.check_filter`` checks one against this
contract. Plain Python: no torch, Ray or vLLM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from logics_rl.registry import Registry, check_lengths

FILTERS = Registry("filter", entry_point_group="logics_rl.filters")


@dataclass
class Group:
    """All samples of one prompt (lists have one entry per sample)."""

    prompt: str
    responses: list[str]
    scores: list[float]
    components: dict[str, list[float]]
    response_lengths: list[int]
    truncated: list[bool]
    max_response_length: int
    data_source: str | None = None

    def __post_init__(self) -> None:
        named = {
            "scores": self.scores,
            "response_lengths": self.response_lengths,
            "truncated": self.truncated,
            **{f"components[{k!r}]": v for k, v in self.components.items()},
        }
        check_lengths("Group", len(self.responses), named)

    def __len__(self) -> int:
        return len(self.responses)

    def metric(self, name: str, needed_by: str) -> list[float]:
        """``scores`` for ``"score"``, else ``components[name]``; a clear error when absent."""
        if name == "score":
            return self.scores
        if name not in self.components:
            have = ", ".join(["score", *sorted(self.components)])
            raise KeyError(
                f"filter {needed_by!r}: the group has no component {name!r}; available: {have}"
            )
        return self.components[name]

    def select(self, indices: Sequence[int]) -> Group:
        """The sub-group of the given samples."""
        return Group(
            prompt=self.prompt,
            responses=[self.responses[i] for i in indices],
            scores=[self.scores[i] for i in indices],
            components={k: [v[i] for i in indices] for k, v in self.components.items()},
            response_lengths=[self.response_lengths[i] for i in indices],
            truncated=[self.truncated[i] for i in indices],
            max_response_length=self.max_response_length,
            data_source=self.data_source,
        )

    @classmethod
    def build(
        cls,
        responses: Sequence[str],
        *,
        scores: Sequence[float] | None = None,
        components: Mapping[str, Sequence[float]] | None = None,
        response_lengths: Sequence[int] | None = None,
        truncated: Sequence[bool] | None = None,
        max_response_length: int | None = None,
        prompt: str = "",
        data_source: str | None = None,
    ) -> Group:
        """A group from responses alone, for tests and scripts (lengths default to word counts)."""
        n = len(responses)
        lengths = (
            [int(x) for x in response_lengths]
            if response_lengths is not None
            else [len(str(r).split()) for r in responses]
        )
        return cls(
            prompt=prompt,
            responses=list(responses),
            scores=[float(s) for s in scores] if scores is not None else [0.0] * n,
            components={k: [float(x) for x in v] for k, v in (components or {}).items()},
            response_lengths=lengths,
            truncated=[bool(t) for t in truncated] if truncated is not None else [False] * n,
            max_response_length=int(
                max_response_length if max_response_length is not None else max(lengths, default=0)
            ),
            data_source=data_source,
        )


@dataclass
class FilterDecision:
    """What a filter decided about one group."""

    keep_group: bool
    reason: str | None = None  # why the group was dropped (counted in metrics)
    keep_samples: list[bool] | None = None  # False: remove that sample from the batch
    mask_samples: list[bool] | None = None  # True: keep it in the batch but zero its loss
    sample_reason: str | None = None  # why samples were removed / masked (counted in metrics)


def decide(
    flags: Sequence[bool], mode: str, reason: str, *, group_reason: str | None = None
) -> FilterDecision:
    """The usual decision for flagged samples, shared by the per-sample filters.

    None flagged: keep all. ``mode="mask"``: keep them with their loss masked. Otherwise remove
    them, or drop the group when all are flagged (``group_reason``, default ``all_<reason>``),
    since a group with no samples left carries no signal.
    """
    if not any(flags):
        return FilterDecision(keep_group=True)
    if mode == "mask":
        return FilterDecision(keep_group=True, mask_samples=list(flags), sample_reason=reason)
    if all(flags):
        return FilterDecision(keep_group=False, reason=group_reason or f"all_{reason}")
    return FilterDecision(
        keep_group=True, keep_samples=[not f for f in flags], sample_reason=reason
    )


class GroupFilter(Protocol):
    """What a filter plugin is. Extra keyword parameters come from the filter's ``params``."""

    def __call__(self, group: Group, /, **params: Any) -> FilterDecision: ...


def check_decision(d: Any, group: Group, name: str) -> FilterDecision:
    """Check a filter's output against its group; errors name the filter and what is wrong."""
    if not isinstance(d, FilterDecision):
        raise TypeError(f"filter {name!r} returned {type(d).__name__}; expected a FilterDecision")
    if not isinstance(d.keep_group, bool):
        raise TypeError(
            f"filter {name!r}: keep_group must be a bool, got {type(d.keep_group).__name__}"
        )
    if not d.keep_group and not d.reason:
        raise ValueError(f"filter {name!r} dropped a group without a reason")
    lists = {}
    for attr in ("keep_samples", "mask_samples"):
        values = getattr(d, attr)
        if values is None:
            continue
        if len(values) != len(group):
            raise ValueError(
                f"filter {name!r}: {attr} has {len(values)} entries for a group of {len(group)}"
            )
        if not all(type(v).__name__ in ("bool", "bool_") for v in values):  # numpy bools are fine
            raise TypeError(f"filter {name!r}: {attr} must be a list of bools")
        lists[attr] = [bool(v) for v in values]
    d = replace(d, **lists)
    return d
