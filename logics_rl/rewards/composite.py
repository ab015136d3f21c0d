"""The composite reward: a weighted sum of reward terms, built from ``RewardConfig``.

    reward:
      terms:
        - {name: math_verify, weight: 1.0}
        - {name: cosine_length, weight: 1.0, params: {max_length: 512}}

    reward = build_reward(cfg.reward)
    result = reward(batch)   # RewardResult: weighted total, every component, summed token scores

Terms run in config order. Each term's params are bound and checked at build time against the
callable's signature (an unknown parameter names the term and the nearest valid one); a term sees
the components of the terms before it in ``batch.components`` (so ``cosine_length`` reads
``correct``). ``RewardConfig.num_workers`` and ``timeout_s`` are passed to every term whose
signature has those parameters, unless its params set them.

Result: ``scores`` = sum of weight x term scores; ``token_scores`` = sum of weight x term token
scores (None if no term has any); ``components`` = every term's components, unweighted (a term
that returns none is logged under its name; a name already taken is prefixed ``<term>/``);
``counters`` summed. A term that raises (or returns a malformed result) scores 0 for the batch,
with zeros under the components it declares in ``fn.provides``; it is logged with its traceback
and counted in ``reward/<term>/error``, so a bad plugin never stops a run. A missing component
(``MissingComponentError``) is a configuration error and is raised.

Terms may declare ``fn.provides`` (component names) and ``fn.requires`` (names, or a function of
the params): ``build_reward`` then checks that every required component comes from an earlier
term, e.g. ``cosine_length`` after ``math_verify``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from logics_rl.rewards.base import (
    REWARDS,
    MissingComponentError,
    RewardInput,
    RewardResult,
    check_params,
    normalise_result,
    plain,
    term_label,
)

logger = logging.getLogger(__name__)
_FROM_CONFIG = ("num_workers", "timeout_s")


@dataclass(frozen=True)
class RewardTerm:
    """One bound term of a composite."""

    name: str  # as configured: short name, import path or entry point
    label: str  # where its metrics go: components / counters
    fn: Callable[..., Any]
    weight: float
    params: dict[str, Any]


def _names(value: Any, params: dict) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(value(params) if callable(value) else value)


class CompositeReward:
    """Weighted sum of reward terms; call it like any reward: ``composite(batch) -> RewardResult``."""

    def __init__(self, terms: list[RewardTerm]):
        self.terms = list(terms)

    def __repr__(self) -> str:
        return "CompositeReward(" + ", ".join(f"{t.weight:g} x {t.label}" for t in self.terms) + ")"

    def __call__(self, batch: RewardInput) -> RewardResult:
        n = len(batch)
        total = [0.0] * n
        token_total: list[list[float]] | None = None
        components: dict[str, list[float]] = {}
        counters: dict[str, int] = {}
        for term in self.terms:
            seen = dataclasses.replace(batch, components={**batch.components, **components})
            try:
                out = normalise_result(term.fn(seen, **term.params), seen, term.label)
            except MissingComponentError:
                raise
            except Exception:
                logger.exception(
                    "reward term %r failed on a batch of %d; it scores 0 for this batch",
                    term.label,
                    n,
                )
                counters[f"reward/{term.label}/error"] = (
                    counters.get(f"reward/{term.label}/error", 0) + n
                )
                # Zeros under the names it would have produced, so later terms still find them.
                provides = _names(getattr(term.fn, "provides", None), term.params) or (term.label,)
                out = RewardResult([0.0] * n, {c: [0.0] * n for c in provides})
            for i, s in enumerate(out.scores):
                total[i] += term.weight * s
            if out.token_scores is not None:
                if token_total is None:
                    token_total = [[0.0] * len(row) for row in out.token_scores]
                for acc, row in zip(token_total, out.token_scores):
                    for j, v in enumerate(row):
                        acc[j] += term.weight * v
            for key, values in (out.components or {term.label: out.scores}).items():
                components[f"{term.label}/{key}" if key in components else key] = values
            for key, value in out.counters.items():
                counters[key] = counters.get(key, 0) + value
        return RewardResult(total, components, token_total, counters)


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def build_reward(cfg: Any) -> CompositeReward:
    """A ``CompositeReward`` from a ``RewardConfig`` (or a mapping / OmegaConf node shaped like one)."""
    terms_cfg = _get(cfg, "terms")
    if not terms_cfg:
        raise ValueError(
            "reward.terms is empty: configure at least one reward term (e.g. {name: math_verify})"
        )
    terms: list[RewardTerm] = []
    provided: set[str] = set()
    opaque = False  # an earlier term does not declare what it provides: skip the check
    for k, tc in enumerate(terms_cfg):
        name = _get(tc, "name")
        what = f"reward term {k} ({name!r})"
        fn = REWARDS.get(name)
        if not callable(fn):
            raise TypeError(f"{what}: {fn!r} is not callable")
        weight = float(_get(tc, "weight", 1.0))
        if not math.isfinite(weight):
            raise ValueError(f"{what}: weight must be finite, got {weight}")
        params = plain(_get(tc, "params") or {})
        if not isinstance(params, dict):
            raise TypeError(f"{what}: params must be a mapping, got {type(params).__name__}")
        accepted = inspect.signature(fn).parameters
        for key in _FROM_CONFIG:
            if key in accepted and key not in params and _get(cfg, key) is not None:
                params[key] = _get(cfg, key)
        params = check_params(fn, params, what=what)
        missing = [c for c in _names(getattr(fn, "requires", None), params) if c not in provided]
        if missing and not opaque:
            before = ", ".join(t.label for t in terms) or "none"
            raise ValueError(
                f"{what} needs component(s) {', '.join(map(repr, missing))} from an earlier term "
                f"(put a correctness term such as 'math_verify' before it); terms before it: {before}"
            )
        provides = getattr(fn, "provides", None)
        if provides is None:
            opaque = True
        else:
            provided.update(_names(provides, params))
        terms.append(
            RewardTerm(name, term_label(name, {t.label for t in terms}), fn, weight, params)
        )
    return CompositeReward(terms)
