"""Math-Verify scoring of single samples, run inside a worker process's main thread.

The process pool (``logics_rl.rewards.pool``) starts this file as
``python -c BOOT _verify_worker.py FD``; it talks over the socket FD with
``multiprocessing.connection`` messages. It imports only the standard library and math_verify, so a
worker never loads what the parent process happened to import (torch, Ray, ...).

Deadlines. math-verify's own timeouts use ``signal.alarm`` with whole seconds and raise
``TimeoutException``, which it then catches itself (turning a timeout into "no answer"). Here both
of its timeouts are off (``parsing_timeout=None``, ``timeout_seconds=None``) and one SIGALRM
interval timer covers the whole sample (parse gold, parse prediction, verify). The handler raises
``SampleDeadline``, a ``BaseException`` that no ``except Exception`` in math-verify or SymPy
swallows; after the first expiry it fires again every 50 ms, so even a bare ``except:`` cannot keep
a sample running. Anything that still does not return (a C call that never checks signals) is
killed from outside by the parent's hard deadline.

Statuses: ``ok`` (score 0 or 1), ``timeout``, ``error`` (an exception), ``no_gold`` (no ground
truth, or one that does not parse).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from functools import lru_cache
from typing import Any

OK, TIMEOUT, ERROR, NO_GOLD = "ok", "timeout", "error", "no_gold"
FALLBACKS = ("last_number", "latex", "none")
_REFIRE_S = 0.05


class SampleDeadline(BaseException):
    """Raised by SIGALRM at a sample's deadline (BaseException: library code cannot swallow it)."""


_armed = False


def _on_alarm(signum: int, frame: Any) -> None:
    if _armed:
        raise SampleDeadline()


def _arm(seconds: float) -> None:
    global _armed
    _armed = True
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3), _REFIRE_S)


def _disarm() -> None:
    global _armed
    _armed = False
    signal.setitimer(signal.ITIMER_REAL, 0)


# --------------------------------------------------------------------------- answer text
_DELIMITED = ("\\boxed", "\\fbox", "$", "\\(", "\\[")
# TeX takes a single token as an undelimited argument: \frac12 is \frac{1}{2}, \sqrt2 is \sqrt{2}.
# math-verify only handles these with malformed_operators=True, which its README advises against
# for predictions (it also rewrites genuinely malformed input), so brace just these valid forms.
_TOKEN = r"(?:\\[a-zA-Z]+|[^\s{}\\\[\]])"
_GROUP = r"(?:\{(?:[^{}]|\{[^{}]*\})*\})"
_FRAC = re.compile(rf"\\([dtc]?frac)\s*({_GROUP}|{_TOKEN})\s*({_GROUP}|{_TOKEN})")
_SQRT = re.compile(rf"\\sqrt\s*(\[[^\[\]]*\])?\s*({_TOKEN})")


def _brace(arg: str) -> str:
    return arg if arg.startswith("{") else "{" + arg + "}"


def tex_single_token_args(text: str) -> str:
    """``\\dfrac12`` -> ``\\dfrac{1}{2}``, ``\\sqrt3`` -> ``\\sqrt{3}`` (brace-delimited args kept)."""
    if "frac" in text:
        text = _FRAC.sub(lambda m: f"\\{m.group(1)}{_brace(m.group(2))}{_brace(m.group(3))}", text)
    if "\\sqrt" in text:
        text = _SQRT.sub(lambda m: f"\\sqrt{m.group(1) or ''}{{{m.group(2)}}}", text)
    return text


def gold_candidates(gold: Any) -> tuple[str, ...] | None:
    """The ground truth as LaTeX strings to parse; a list / tuple gives several accepted answers.

    A gold without LaTeX delimiters is wrapped in ``\\boxed{}`` so plain ``42`` and ``\\frac{1}{2}``
    both parse (math-verify only extracts LaTeX inside $...$, \\[...\\] or \\boxed{}).
    """
    if gold is None:
        return None
    golds = gold if isinstance(gold, (list, tuple)) else [gold]
    out = []
    for g in golds:
        if g is None or isinstance(g, float) and g != g:  # None / NaN
            continue
        s = str(g).strip()
        if s:
            out.append(s if any(d in s for d in _DELIMITED) else "\\boxed{" + s + "}")
    return tuple(out) or None


# --------------------------------------------------------------------------- math-verify
@lru_cache(maxsize=1)
def _mv() -> dict[str, Any]:
    import logging
    import warnings

    from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    # With both timeouts off math-verify warns once per process; this module owns the deadline.
    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="sympy")
    # README advice for predictions: no "nits" (0.5 -> 1/2 rewrites) and no malformed-operator fixes.
    norm = NormalizationConfig(
        basic_latex=True,
        units=True,
        malformed_operators=False,
        nits=False,
        boxed="all",
        equations=False,
    )
    strict_boxed = LatexExtractionConfig(
        boxed_match_priority=0, try_extract_without_anchor=False, normalization_config=norm
    )
    boxed_then_latex = LatexExtractionConfig(
        boxed_match_priority=0, try_extract_without_anchor=True, normalization_config=norm
    )
    return {
        "parse": parse,
        "verify": verify,
        "gold_config": [LatexExtractionConfig()],
        "pred_config": {
            "none": [strict_boxed],
            "latex": [boxed_then_latex],
            "last_number": [boxed_then_latex, ExprExtractionConfig()],
        },
    }


@lru_cache(maxsize=4096)
def _parse_gold(text: str) -> tuple:
    mv = _mv()
    return tuple(mv["parse"](text, mv["gold_config"], parsing_timeout=None))


def _parse_golds(golds: tuple[str, ...] | None) -> list[tuple]:
    return [g for g in (_parse_gold(t) for t in golds or ()) if g]


def _parse_prediction(pred: Any, opts: dict) -> list:
    """The prediction's answer as math-verify parses it (``[]`` when it has none)."""
    if not isinstance(pred, str) or not pred.strip():
        return []
    fallback = opts["fallback"]
    if fallback == "none" and "\\boxed" not in pred and "\\fbox" not in pred:
        return []
    mv = _mv()
    return mv["parse"](
        tex_single_token_args(pred), mv["pred_config"][fallback], parsing_timeout=None
    )


def _equal(gold: list, parsed: list, opts: dict) -> bool:
    return bool(
        _mv()["verify"](
            gold,
            parsed,
            float_rounding=opts["float_rounding"],
            numeric_precision=opts["numeric_precision"],
            strict=opts["strict"],
            timeout_seconds=None,
        )
    )


def _matches(parsed_golds: list[tuple], parsed: list, opts: dict) -> float:
    if not parsed:
        return 0.0
    # gold FIRST: verify() is not symmetric
    return 1.0 if any(_equal(list(g), parsed, opts) for g in parsed_golds) else 0.0


def _score(golds: tuple[str, ...] | None, pred: Any, opts: dict) -> tuple[float, str]:
    parsed_golds = _parse_golds(golds)
    if not parsed_golds:
        return 0.0, NO_GOLD
    return _matches(parsed_golds, _parse_prediction(pred, opts), opts), OK


def score_one(
    golds: tuple[str, ...] | None, pred: Any, opts: dict, deadline_s: float | None
) -> tuple[float, str]:
    """Score one sample under a SIGALRM deadline; call only from the main thread."""
    try:
        if deadline_s:
            _arm(deadline_s)
        try:
            return _score(golds, pred, opts)
        finally:
            _disarm()
    except SampleDeadline:
        _disarm()
        return 0.0, TIMEOUT
    except Exception:
        _disarm()
        return 0.0, ERROR


def score_guarded(
    golds: tuple[str, ...] | None, pred: Any, opts: dict, deadline_s: float | None
) -> tuple[float, str]:
    """``score_one`` plus a guard for a re-fired alarm landing while the first one is handled."""
    try:
        return score_one(golds, pred, opts, deadline_s)
    except SampleDeadline:
        _disarm()
        return 0.0, TIMEOUT


# --------------------------------------------------------------------------- answers of a group
ANSWERS = "answers"  # opts["kind"] of a group task (evaluation); absent: score one sample


def _answer_text(parsed: list) -> str:
    """The extracted answer as written (math-verify's matched string), else the expression."""
    return parsed[-1] if isinstance(parsed[-1], str) else str(parsed[0])


def analyse_group(
    golds: tuple[str, ...] | None, preds: tuple, opts: dict, deadline_s: float | None
) -> tuple[tuple, str]:
    """One prompt's samples: each one's extracted answer, its correctness against the gold
    (exactly as ``_score`` decides it), and its answer class: samples whose answers math-verify
    finds equal share a class (the class's first answer is the gold of the comparison; -1: no
    answer). ``class_correct[c]`` is the correctness of class ``c``'s first answer.

    Each parse and comparison has its own deadline (``deadline_s``): one over it counts as no
    answer / not equal, and is counted. Once the group has used ``opts["budget_s"]`` seconds the
    rest is skipped the same way, so a group ends in bounded time.

    Returns ``((answers, correct, classes, class_correct, timeouts, errors), status)``.
    """
    start, budget = time.monotonic(), opts.get("budget_s")
    counts = {"timeouts": 0, "errors": 0}

    def run(fn, default, *args):
        if budget is not None and time.monotonic() - start > budget:
            counts["timeouts"] += 1
            return default
        try:
            try:
                if deadline_s:
                    _arm(deadline_s)
                return fn(*args)
            finally:
                _disarm()
        except SampleDeadline:
            _disarm()
            counts["timeouts"] += 1
        except Exception:
            _disarm()
            counts["errors"] += 1
        return default

    parsed_golds = run(_parse_golds, [], golds)
    answers, correct, classes = [], [], []
    reps: list[list] = []  # the first parsed answer of each class
    rep_correct: list[float] = []
    seen: dict[str, tuple[int, float]] = {}  # answer text -> (class, correctness)
    for pred in preds:
        parsed = run(_parse_prediction, [], pred, opts)
        if not parsed:
            answers.append(None)
            correct.append(0.0)
            classes.append(-1)
            continue
        text = _answer_text(parsed)
        if text not in seen:
            ok = run(_matches, 0.0, parsed_golds, parsed, opts) if parsed_golds else 0.0
            cls = next(
                (c for c, rep in enumerate(reps) if run(_equal, False, rep, parsed, opts)), -1
            )
            if cls < 0:
                cls = len(reps)
                reps.append(parsed)
                rep_correct.append(ok)
            seen[text] = (cls, ok)
        cls, ok = seen[text]
        answers.append(text)
        correct.append(ok)
        classes.append(cls)
    result = (
        tuple(answers),
        tuple(correct),
        tuple(classes),
        tuple(rep_correct),
        counts["timeouts"],
        counts["errors"],
    )
    return result, OK if parsed_golds else NO_GOLD


def run_task(golds: Any, pred: Any, opts: dict, deadline_s: float | None) -> tuple[Any, str]:
    """One task of the pool: a sample's score, or a group's answers (``opts["kind"]``)."""
    if opts.get("kind") != ANSWERS:
        return score_guarded(golds, pred, opts, deadline_s)
    try:
        return analyse_group(golds, pred, opts, deadline_s)
    except SampleDeadline:  # a re-fired alarm landing between two guarded steps
        _disarm()
        return 0.0, TIMEOUT


def install_alarm_handler() -> Any:
    """Install the SIGALRM handler (main thread only); returns the previous one."""
    return signal.signal(signal.SIGALRM, _on_alarm)


# --------------------------------------------------------------------------- worker loop
def main(fd: int) -> None:
    import traceback
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    try:
        install_alarm_handler()
        _mv()
    except BaseException:
        conn.send(("fatal", traceback.format_exc()))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent went away
            return
        if msg[0] == "stop":
            return
        _, call_id, items, opts, deadline_s = msg
        try:
            for key, golds, pred in items:
                score, status = run_task(golds, pred, opts, deadline_s)
                conn.send(("res", call_id, key, score, status))
        except (BrokenPipeError, ConnectionResetError):
            return


if __name__ == "__main__":
    main(int(sys.argv[1]))
