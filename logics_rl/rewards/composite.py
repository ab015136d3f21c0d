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
``correct``). A term gets ``RewardConfig`` settings only when it asks for them by name in
``fn.from_config`` (``math_verify`` asks for the pool's ``num_workers`` and ``timeout_s``), and
only where its params do not set them.

Result: ``scores`` = sum of weight x term scores; ``token_scores`` = sum of weight x term token
scores (None if no term has any); ``components`` = every term's components, unweighted (a term
that returns none is logged under its name; a name already taken is prefixed ``<term>/``);
``counters`` summed.

Failures. A term that raises or returns a malformed result (wrong count, NaN / inf, a string)
scores 0 for the batch, with zeros under the components it declares in ``fn.provides``; it is
logged and counted in ``reward/<term>/error``. Plugins from outside the library run isolated in
their own process (``isolated.IsolatedTerm``; ``isolate`` per term): one that does not return
within ``timeout_s`` is killed (``reward/<term>/timeout``), one whose process dies is started again
(``reward/<term>/crash``); both score 0 for that batch the same way. ``max_failed_batches``
failures of one term in a row stop the run with ``RewardTermError`` naming the term (a term that
never works would otherwise train on zeros). A missing component (``MissingComponentError``) is a
configuration error and is raised.

Terms may declare ``fn.provides`` (component names) and ``fn.requires`` (names, or a function of
the params): ``build_reward`` then checks that every required component comes from an earlier
term, e.g. ``cosine_length`` after ``math_verify``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from logics_rl.config.schema import RewardConfig, RewardTermConfig
from logics_rl.errors import TrainingError
from logics_rl.registry import as_config, check_params, load_plugin, term_label
from logics_rl.rewards.base import (
    REWARDS,
    MissingComponentError,
    RewardInput,
    RewardResult,
    normalise_result,
)
from logics_rl.rewards.isolated import IsolatedTerm, TermFailure, importable_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RewardTerm:
    """One bound term of a composite."""

    name: str  # as configured: short name, import path or entry point
    label: str  # where its metrics go: components / counters
    fn: Callable[..., Any]
    weight: float
    params: dict[str, Any]
    isolated: IsolatedTerm | None = None  # run in its own process (else in the caller's)
    timeout_s: float = 300.0  # per batch, isolated terms only

    def run(self, batch: RewardInput) -> RewardResult:
        if self.isolated is not None:
            out = self.isolated(batch, self.params, self.timeout_s)
        else:
            out = self.fn(batch, **self.params)
        return normalise_result(out, batch, self.label)


class RewardTermError(TrainingError):
    """A reward term failed on ``reward.max_failed_batches`` batches in a row."""


def _names(value: Any, params: dict) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(value(params) if callable(value) else value)


class CompositeReward:
    """Weighted sum of reward terms; call it like any reward: ``composite(batch) -> RewardResult``."""

    def __init__(self, terms: list[RewardTerm], max_failed_batches: int = 0):
        self.terms = list(terms)
        self.max_failed_batches = max_failed_batches
        self._failed_in_row = {t.label: 0 for t in self.terms}

    def __repr__(self) -> str:
        return "CompositeReward(" + ", ".join(f"{t.weight:g} x {t.label}" for t in self.terms) + ")"

    def close(self) -> None:
        """Stop the processes of isolated terms (they start again if the reward is used again)."""
        for term in self.terms:
            if term.isolated is not None:
                term.isolated.close()

    def __call__(self, batch: RewardInput) -> RewardResult:
        n = len(batch)
        total = [0.0] * n
        token_total: list[list[float]] | None = None
        components: dict[str, list[float]] = {}
        counters: dict[str, int] = {}
        for term in self.terms:
            seen = dataclasses.replace(batch, components={**batch.components, **components})
            try:
                out = term.run(seen)
                self._failed_in_row[term.label] = 0
            except MissingComponentError:
                raise
            except Exception as exc:
                out = self._failed(term, exc, n, counters)
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

    def _failed(
        self, term: RewardTerm, exc: Exception, n: int, counters: dict[str, int]
    ) -> RewardResult:
        """Count and log a failed batch of ``term``; its result is zeros under the names it would
        have produced (so later terms still find them), or the end of the run once it failed
        ``max_failed_batches`` batches in a row."""
        kind = exc.kind if isinstance(exc, TermFailure) else "error"  # timeout | crash | error
        key = f"reward/{term.label}/{kind}"
        counters[key] = counters.get(key, 0) + n
        self._failed_in_row[term.label] += 1
        k, limit = self._failed_in_row[term.label], self.max_failed_batches
        streak = f"{kind} on {k} batch(es) in a row" + (f" (stops at {limit})" if limit else "")
        if isinstance(exc, TermFailure):  # the child's traceback is in its message
            logger.warning(
                "reward term %r (isolated) %s; it scores 0 for this batch of %d (%s)",
                term.label, exc, n, streak,
            )  # fmt: skip
        else:
            logger.error(
                "reward term %r failed on a batch of %d; it scores 0 for this batch (%s)",
                term.label, n, streak, exc_info=exc,
            )  # fmt: skip
        if limit and k >= limit:
            first = str(exc).strip().splitlines()
            raise RewardTermError(
                f"reward term {term.label!r} ({term.name}) failed on {k} batches in a row "
                f"(reward.max_failed_batches={limit}); last failure: "
                f"{type(exc).__name__}: {first[0] if first else ''}. Fix the term, or raise "
                "reward.max_failed_batches (0: never stop) to train on with it scoring 0"
            ) from exc
        provides = _names(getattr(term.fn, "provides", None), term.params) or (term.label,)
        return RewardResult([0.0] * n, {c: [0.0] * n for c in provides})


def _from_config(fn: Callable[..., Any], cfg: RewardConfig, what: str) -> dict[str, Any]:
    """The ``RewardConfig`` settings a reward asks for in ``fn.from_config``, by name."""
    try:
        return {key: getattr(cfg, key) for key in getattr(fn, "from_config", ())}
    except AttributeError as exc:
        raise TypeError(f"{what}: from_config names a setting RewardConfig lacks: {exc}") from None


def _bind(tc: RewardTermConfig, cfg: RewardConfig, taken: set[str], what: str) -> RewardTerm:
    """One configured term, its params checked against the reward's signature."""
    fn, params = load_plugin(REWARDS, tc.name, tc.params, what=what)
    weight = float(tc.weight)
    if not math.isfinite(weight):
        raise ValueError(f"{what}: weight must be finite, got {weight}")
    params = check_params(fn, {**_from_config(fn, cfg, what), **params}, what=what)
    label = term_label(tc.name, taken)
    path = importable_path(fn)
    builtin = (path or "").startswith("logics_rl.")
    isolate = tc.isolate if tc.isolate is not None else (path is not None and not builtin)
    if isolate and path is None:
        raise ValueError(
            f"{what}: isolate=true runs the term in its own process, which imports it by "
            f"'module:function'; {fn!r} is defined in __main__ or inside a function: move it "
            "into a module, or set isolate=false"
        )
    timeout_s = float(tc.timeout_s if tc.timeout_s is not None else cfg.term_timeout_s)
    isolated = IsolatedTerm(path, label) if isolate and path is not None else None
    return RewardTerm(tc.name, label, fn, weight, params, isolated, timeout_s)


def _provided_after(
    term: RewardTerm, provided: set[str] | None, before: list[RewardTerm], what: str
) -> set[str] | None:
    """Check that earlier terms provide what ``term`` requires; the components provided after it.

    None: some term so far does not declare what it provides, so nothing more can be checked.
    """
    if provided is None:
        return None
    requires = _names(getattr(term.fn, "requires", None), term.params)
    missing = [c for c in requires if c not in provided]
    if missing:
        labels = ", ".join(t.label for t in before) or "none"
        raise ValueError(
            f"{what} needs component(s) {', '.join(map(repr, missing))} from an earlier term "
            f"(put a correctness term such as 'math_verify' before it); terms before it: {labels}"
        )
    provides = getattr(term.fn, "provides", None)
    return None if provides is None else provided | set(_names(provides, term.params))


def build_reward(cfg: RewardConfig | Mapping[str, Any]) -> CompositeReward:
    """A ``CompositeReward`` from a ``RewardConfig`` (or a mapping / OmegaConf node shaped like one)."""
    cfg = as_config(RewardConfig, cfg, what="reward")
    if not cfg.terms:
        raise ValueError(
            "reward.terms is empty: configure at least one reward term (e.g. {name: math_verify})"
        )
    terms: list[RewardTerm] = []
    provided: set[str] | None = set()
    for k, entry in enumerate(cfg.terms):
        tc = as_config(RewardTermConfig, entry, what=f"reward term {k}")
        what = f"reward term {k} ({tc.name!r})"
        term = _bind(tc, cfg, {t.label for t in terms}, what)
        provided = _provided_after(term, provided, terms, what)
        terms.append(term)
    return CompositeReward(terms, cfg.max_failed_batches)
