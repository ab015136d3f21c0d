"""A chain of dynamic-sampling filters, built from ``FilterTermConfig`` entries.

    filters:
      - {name: truncated, params: {mode: drop}}
      - {name: zero_variance}

    chain = build_filters(cfg.filters)
    decisions, counts = chain.apply(groups)    # one FilterDecision per group, reason -> count

Filters run in config order on each group. A group dropped by a filter is not shown to later
filters. Samples removed by a filter are removed from the group the later filters see (so
``zero_variance`` after ``truncated`` judges the surviving samples); masked samples stay visible.
Removals compose (a sample removed by any filter is removed), masks compose likewise; a group
whose samples are all removed is dropped with reason ``all_samples_dropped``.

Counts (for metrics): ``filter/<name>/<reason>`` = groups dropped by that filter for that reason;
``filter/<name>/samples_dropped/<sample_reason>`` and ``.../samples_masked/<sample_reason>`` =
samples. The final decision's ``reason`` is ``<name>/<reason>`` of the filter that dropped it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from logics_rl.config.schema import FilterTermConfig
from logics_rl.filters.base import FILTERS, FilterDecision, Group, check_decision
from logics_rl.registry import as_config, check_params, load_plugin, term_label


@dataclass(frozen=True)
class FilterTerm:
    """One bound filter of a chain."""

    name: str  # as configured
    label: str  # where its counts go
    fn: Callable[..., Any]
    params: dict[str, Any]


class FilterChain:
    """Filters applied in order to each group; ``apply`` returns decisions and counts."""

    def __init__(self, terms: Sequence[FilterTerm] = ()):
        self.terms = list(terms)

    def __repr__(self) -> str:
        return "FilterChain(" + ", ".join(t.label for t in self.terms) + ")"

    def __len__(self) -> int:
        return len(self.terms)

    def apply(self, groups: Sequence[Group]) -> tuple[list[FilterDecision], dict[str, int]]:
        counts: Counter[str] = Counter()
        return [self._one(g, counts) for g in groups], dict(counts)

    def _one(self, group: Group, counts: Counter[str]) -> FilterDecision:
        n = len(group)
        keep, mask = [True] * n, [False] * n
        alive = list(range(n))  # samples still in the batch, as indices into ``group``
        why: list[str] = []
        for term in self.terms:
            view = group if len(alive) == n else group.select(alive)
            d = check_decision(term.fn(view, **term.params), view, term.label)
            if not d.keep_group:
                counts[f"filter/{term.label}/{d.reason}"] += 1
                return FilterDecision(
                    False, f"{term.label}/{d.reason}", None, None, ",".join(why) or None
                )
            touched = False
            if d.keep_samples is not None:
                gone = [alive[j] for j, k in enumerate(d.keep_samples) if not k]
                for i in gone:
                    keep[i] = False
                if gone:
                    counts[
                        f"filter/{term.label}/samples_dropped/{d.sample_reason or 'unspecified'}"
                    ] += len(gone)
                    touched = True
            if d.mask_samples is not None:
                new = [
                    alive[j]
                    for j, m in enumerate(d.mask_samples)
                    if m and keep[alive[j]] and not mask[alive[j]]
                ]
                for i in new:
                    mask[i] = True
                if new:
                    counts[
                        f"filter/{term.label}/samples_masked/{d.sample_reason or 'unspecified'}"
                    ] += len(new)
                    touched = True
            if touched:
                why.append(term.label)
            alive = [i for i in alive if keep[i]]
            if not alive:
                counts[f"filter/{term.label}/all_samples_dropped"] += 1
                return FilterDecision(
                    False, f"{term.label}/all_samples_dropped", None, None, ",".join(why) or None
                )
        return FilterDecision(
            keep_group=True,
            keep_samples=keep if not all(keep) else None,
            mask_samples=mask if any(mask) else None,
            sample_reason=",".join(why) or None,
        )


def build_filters(cfgs: Sequence[Any] | None) -> FilterChain:
    """A ``FilterChain`` from ``FilterTermConfig`` entries (or mappings shaped like them); None or [] keeps all."""
    terms: list[FilterTerm] = []
    for k, entry in enumerate(list(cfgs or [])):
        fc = as_config(FilterTermConfig, entry, what=f"filter {k}")
        what = f"filter {k} ({fc.name!r})"
        fn, params = load_plugin(FILTERS, fc.name, fc.params, what=what)
        label = term_label(fc.name, {t.label for t in terms})
        terms.append(FilterTerm(fc.name, label, fn, check_params(fn, params, what=what)))
    return FilterChain(terms)
