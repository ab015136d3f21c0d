"""Contract checks for reward and filter plugins, to run in a plugin's own test suite.

    from logics_rl.testing import check_filter, check_reward

    def test_my_reward():
        check_reward(my_reward, bonus=0.5)          # a callable, a registry name or "pkg.mod:fn"

    def test_my_filter():
        check_filter("my_filter", threshold=2)

Each check calls the plugin with its ``params`` on a set of batches (or groups): typical ones, an
empty one, a 1 MB response, non-ASCII / emoji / invalid-surrogate text, empty and None responses,
None ground truths. It asserts that

  * the parameters bind to the signature ``fn(batch_or_group, **params)``;
  * no case raises;
  * rewards: one finite float score per sample, components are lists of finite floats of the
    batch size, token_scores (if any) align with ``response_token_ids``, counters are ints;
  * filters: a ``FilterDecision``; a dropped group has a reason; sample lists match the group size;
  * the input is not modified, and the same input twice gives the same output.

A failure raises ``AssertionError`` naming the plugin, the case and what is wrong. The checks
return the results per case so a test can assert more. Plain Python: no torch or Ray.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from logics_rl.filters.base import FILTERS, FilterDecision, Group, check_decision
from logics_rl.registry import check_params
from logics_rl.rewards.base import REWARDS, RewardInput, RewardResult, normalise_result

MB = 1 << 20
_COT = "Let me think step by step. First, 3 + 4 = 7, then 7 * 6 = 42. "
_TYPICAL = [
    _COT + "So the answer is \\boxed{42}.",
    _COT + "Hmm, I get \\boxed{41}.",
    "The answer is \\boxed{\\frac{1}{2}}",
    "I do not know.",
    "",
]
_ODD = [
    "Ответ: \\boxed{42} — готово ✅",
    "答案是 \\boxed{\\dfrac12} 🎉🎉",
    "bad surrogate \ud800 here \\boxed{1}",
    "\x00\x01\x02 control \\boxed{",
    "\\boxed{}" * 50,
]


def _token_ids(text: Any) -> list[int]:
    """A stand-in tokenizer: one id per whitespace word (ids are stable across runs)."""
    words = text.split() if isinstance(text, str) else []
    return [sum(ord(c) for c in w) % 50_000 for w in words]


def _reward_batch(
    responses: list[Any],
    golds: list[Any],
    correct: list[float],
    truncated: list[bool] | None = None,
) -> RewardInput:
    ids = [_token_ids(r) for r in responses]
    return RewardInput(
        prompts=["What is 6 * 7?"] * len(responses),
        responses=responses,
        ground_truths=golds,
        response_lengths=[len(t) for t in ids],
        truncated=truncated if truncated is not None else [False] * len(responses),
        max_response_length=64,
        response_token_ids=ids,
        data_sources=["test"] * len(responses),
        extras=[{} for _ in responses],
        components={"correct": correct},
    )


def reward_cases() -> dict[str, RewardInput]:
    """The batches ``check_reward`` runs (each has a ``correct`` component and token ids)."""
    huge = ("All work and no play makes a dull answer. " * (MB // 42 + 1))[:MB] + " \\boxed{42}"
    return {
        "typical": _reward_batch(
            list(_TYPICAL),
            ["42", "42", "\\frac{1}{2}", "7", "3"],
            [1.0, 0.0, 1.0, 0.0, 0.0],
            [False, False, False, False, True],
        ),
        "empty batch": _reward_batch([], [], []),
        "1 MB response": _reward_batch(
            [huge, "\\boxed{42}"], ["42", "42"], [1.0, 1.0], [True, False]
        ),
        "non-ASCII / emoji / surrogates": _reward_batch(
            list(_ODD), ["42", "0.5", "1", "2", "3"], [1.0, 1.0, 1.0, 0.0, 0.0]
        ),
        "None ground truths": _reward_batch(["\\boxed{42}", "no answer"], [None, None], [0.0, 0.0]),
        "None response": _reward_batch([None, "\\boxed{1}"], ["1", "1"], [0.0, 1.0]),  # type: ignore[list-item]
    }


def filter_cases() -> dict[str, Group]:
    """The groups ``check_filter`` runs (each has ``correct`` and ``repetition_ratio`` components)."""

    def group(
        responses: list[Any], correct: list[float], truncated: list[bool] | None = None
    ) -> Group:
        n = len(responses)
        lengths = [len(_token_ids(r)) for r in responses]
        return Group(
            prompt="What is 6 * 7?",
            responses=responses,
            scores=[float(c) for c in correct],
            components={"correct": correct, "repetition_ratio": [0.0] * n},
            response_lengths=lengths,
            truncated=truncated if truncated is not None else [False] * n,
            max_response_length=max(lengths, default=0),
            data_source="test",
        )

    huge = ("All work and no play makes a dull answer. " * (MB // 42 + 1))[:MB]
    return {
        "mixed": group(
            list(_TYPICAL), [1.0, 0.0, 1.0, 0.0, 0.0], [False, False, False, False, True]
        ),
        "all correct": group(["\\boxed{42}"] * 4, [1.0] * 4),
        "all wrong": group(["\\boxed{1}", "\\boxed{2}"], [0.0, 0.0]),
        "all truncated": group(["a b c", "d e f"], [0.0, 1.0], [True, True]),
        "single sample": group(["\\boxed{42}"], [1.0]),
        "empty group": group([], []),
        "1 MB response": group([huge, "\\boxed{42}"], [0.0, 1.0], [True, False]),
        "non-ASCII / emoji / surrogates": group(list(_ODD), [1.0, 1.0, 1.0, 0.0, 0.0]),
        "None response": group([None, "\\boxed{1}"], [0.0, 1.0]),  # type: ignore[list-item]
    }


def _resolve(fn: Callable[..., Any] | str, registry: Any) -> tuple[Callable[..., Any], str]:
    if isinstance(fn, str):
        return registry.get(fn), fn
    return fn, getattr(fn, "__name__", repr(fn))


def _bind(fn: Callable[..., Any], params: dict[str, Any], what: str) -> None:
    if not callable(fn):
        raise AssertionError(f"{what} is not callable: {fn!r}")
    try:
        check_params(fn, params, what=what)
    except (TypeError, ValueError) as exc:
        raise AssertionError(
            f"{what}: its signature does not accept (batch, **params): {exc}"
        ) from exc


def check_reward(fn: Callable[..., Any] | str, /, **params: Any) -> dict[str, RewardResult]:
    """Run the reward contract checks; returns the normalised result per case."""
    fn, name = _resolve(fn, REWARDS)
    what = f"reward {name!r}"
    _bind(fn, params, what)
    results: dict[str, RewardResult] = {}
    cases = reward_cases()
    for case, batch in cases.items():
        before = copy.deepcopy(batch)
        try:
            out = fn(batch, **params)
        except Exception as exc:
            raise AssertionError(
                f"{what} raised {type(exc).__name__} on the {case!r} batch: {exc}"
            ) from exc
        try:
            res = normalise_result(out, batch, name)
        except (TypeError, ValueError) as exc:
            raise AssertionError(
                f"{what} returned a bad result on the {case!r} batch: {exc}"
            ) from exc
        if batch != before:
            raise AssertionError(f"{what} modified its input batch on the {case!r} batch")
        results[case] = res
    typical = copy.deepcopy(cases["typical"])
    again = normalise_result(fn(typical, **params), typical, name)
    first = results["typical"]
    for field in ("scores", "components", "token_scores"):  # counters may count operational events
        if getattr(first, field) != getattr(again, field):
            raise AssertionError(
                f"{what} is not deterministic: {field} differ between two calls on the same batch: {getattr(first, field)!r} vs {getattr(again, field)!r}"
            )
    return results


def check_filter(fn: Callable[..., Any] | str, /, **params: Any) -> dict[str, FilterDecision]:
    """Run the filter contract checks; returns the decision per case."""
    fn, name = _resolve(fn, FILTERS)
    what = f"filter {name!r}"
    _bind(fn, params, what)
    decisions: dict[str, FilterDecision] = {}
    cases = filter_cases()
    for case, group in cases.items():
        before = copy.deepcopy(group)
        try:
            out = fn(group, **params)
        except Exception as exc:
            raise AssertionError(
                f"{what} raised {type(exc).__name__} on the {case!r} group: {exc}"
            ) from exc
        try:
            decisions[case] = check_decision(out, group, name)
        except (TypeError, ValueError) as exc:
            raise AssertionError(
                f"{what} returned a bad decision on the {case!r} group: {exc}"
            ) from exc
        if group != before:
            raise AssertionError(f"{what} modified its input group on the {case!r} group")
    mixed = copy.deepcopy(cases["mixed"])
    again = check_decision(fn(mixed, **params), mixed, name)
    if again != decisions["mixed"]:
        raise AssertionError(
            f"{what} is not deterministic: {decisions['mixed']!r} vs {again!r} on the same group"
        )
    return decisions
