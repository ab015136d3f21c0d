"""Dynamic-sampling filters: ``fn(group: Group, **params) -> FilterDecision``, a registry, a chain.

Built-ins: ``zero_variance`` (drop all-right / all-wrong groups, DAPO), ``truncated`` (drop or
mask samples that hit the length limit), ``repetition`` (drop degenerate repetitive samples),
``length`` (token bounds).

    >>> from logics_rl.config.schema import FilterTermConfig
    >>> from logics_rl.filters import Group, build_filters
    >>> chain = build_filters([FilterTermConfig("truncated"), FilterTermConfig("zero_variance")])
    >>> groups = [Group.build(["a", "b"], components={"correct": [1.0, 1.0]}),
    ...           Group.build(["a", "b", "c"], components={"correct": [1.0, 0.0, 0.0]},
    ...                       truncated=[False, False, True])]
    >>> decisions, counts = chain.apply(groups)
    >>> [d.keep_group for d in decisions], decisions[1].keep_samples
    ([False, True], [True, True, False])
    >>> counts
    {'filter/zero_variance/all_correct': 1, 'filter/truncated/samples_dropped/truncated': 1}

Plain Python: importing this package loads no torch, Ray, vLLM or Megatron. The plugin API is in
``base.py`` (``decide`` turns per-sample flags into the usual keep / mask / drop decision); the
contract kit for third-party filters is ``logics_rl.testing.check_filter``.
"""

from logics_rl.filters.base import (
    FILTERS,
    FilterDecision,
    Group,
    GroupFilter,
    check_decision,
    decide,
)
from logics_rl.filters.chain import FilterChain, FilterTerm, build_filters
from logics_rl.filters.length import length
from logics_rl.filters.repetition import repetition
from logics_rl.filters.truncated import truncated
from logics_rl.filters.zero_variance import zero_variance

__all__ = [
    "FILTERS",
    "FilterChain",
    "FilterDecision",
    "FilterTerm",
    "Group",
    "GroupFilter",
    "build_filters",
    "check_decision",
    "decide",
    "length",
    "repetition",
    "truncated",
    "zero_variance",
]
