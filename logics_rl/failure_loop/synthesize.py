"""Synthesizers: new questions near each failure. A registry, like rewards and filters.

    @SYNTHESIZERS.register("my_synth")
    def my_synth(req: SynthRequest, **params) -> list[Candidate]: ...

A candidate with a ``ground_truth`` is verified by construction (a programmatic synthesizer
computes it); one without is verified by teacher agreement in the loop's verify step.
Built-ins: ``arithmetic`` (the built-in task: same digit counts, carries / borrows and sign)
and ``llm`` (a teacher model served by the rollout engine writes new problems from the failed
one and its retrieved neighbours; the answers come from the verify step's teacher agreement).
A synthesizer that needs the teacher sets ``fn.needs_teacher = True`` and gets
``req.generate(users, n=..., temperature=..., top_p=..., max_tokens=...)``: n replies per user
turn (none for a prompt longer than ``data.max_prompt_length``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

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
    solution: str | None = None  # a worked solution (for continued SFT), when one is known


@dataclass
class SynthRequest:
    failures: list[Failure]
    retrieved: list[list[dict]]  # per failure: the nearest corpus items ({text, index, score})
    per_failure: int  # candidates wanted per failure
    rng: random.Random  # seeded (failure_loop.seed)
    generate: Callable[..., list[list[str]]] | None = None  # the teacher (needs_teacher)


@SYNTHESIZERS.register("arithmetic")
def arithmetic(req: SynthRequest) -> list[Candidate]:
    """``per_failure`` problems with each failure's structure (``failure_loop.arithmetic``),
    each with its computed answer and the column-by-column worked solution of the built-in task
    (none for a negative difference); a failure without an ``a+b`` / ``a-b`` expression gets
    none (counted by the loop)."""
    from logics_rl.data.synthetic import worked_addition, worked_subtraction

    out = []
    for f in req.failures:
        for text, answer, structure in arith.similar(f.question, req.per_failure, req.rng):
            a, op, b, _ = arith.parse(text)
            if op == "+":
                solution = worked_addition(a, b)
            else:
                solution = worked_subtraction(a, b) if a >= b else None
            info = {"synthesizer": "arithmetic", "structure": structure.name}
            out.append(Candidate(text, answer, f.uid, f.data_source, info, solution))
    return out


LLM_PROMPT = (
    "A student got this problem wrong:\n{question}\n\n{retrieved}"
    "Write {n} new problems that practise the same skill, with different numbers or settings. "
    'Write each on its own line, starting with "Problem:". Do not give the answers.'
)
_PROBLEM = re.compile(r"^\s*(?:\d+[.)]\s*)?\**problem\s*\d*\s*\**\s*[:.]\**\s*(.+)$", re.IGNORECASE)


def parse_problems(reply: str, limit: int) -> list[str]:
    """The ``Problem: ...`` lines of a teacher reply (numbered or bold markers allowed), in
    order, without repeats, at most ``limit``."""
    out: list[str] = []
    for line in reply.splitlines():
        m = _PROBLEM.match(line)
        if m:
            text = m.group(1).strip()
            if len(text) >= 8 and text not in out:
                out.append(text)
        if len(out) == limit:
            break
    return out


def fill_prompt(template: str, f: Failure, retrieved: list[dict], n: int) -> str:
    items = "".join(f"- {r['text']}\n" for r in retrieved)
    related = f"Related material:\n{items}\n" if items else ""
    return template.format(question=f.question, retrieved=related, n=n)


@SYNTHESIZERS.register("llm")
def llm(
    req: SynthRequest,
    *,
    prompt: str = LLM_PROMPT,  # {question}, {retrieved} (a "Related material" block), {n}
    reply_format: Literal["lines", "whole"] = "lines",  # whole: a reply is one problem
    temperature: float = 0.8,
    top_p: float = 0.95,
    max_tokens: int = 512,
) -> list[Candidate]:
    """New problems written by the teacher: one reply per failure holding ``per_failure``
    ``Problem:`` lines (``reply_format: lines``), or ``per_failure`` replies of one problem each
    (``whole``). No answers: the verify step's teacher agreement supplies them."""
    if req.generate is None:
        raise ValueError("the llm synthesizer needs a teacher (SynthRequest.generate)")
    users = [
        fill_prompt(prompt, f, r, req.per_failure) for f, r in zip(req.failures, req.retrieved)
    ]
    n = 1 if reply_format == "lines" else req.per_failure
    replies = req.generate(users, n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens)
    out = []
    for f, texts in zip(req.failures, replies):
        if reply_format == "lines":
            problems = [p for t in texts for p in parse_problems(t, req.per_failure)]
        else:
            problems = list(dict.fromkeys(t.strip() for t in texts if len(t.strip()) >= 8))
        for p in problems[: req.per_failure]:
            out.append(Candidate(p, None, f.uid, f.data_source, {"synthesizer": "llm"}))
    return out


llm.needs_teacher = True
