"""The programmatic synthesizer of the built-in arithmetic task: new problems with the same
structure as a failed one.

Structure (``Structure.of``): the operation, the digit count of each operand, which columns
carry (addition) or borrow (subtraction, of the larger minus the smaller operand), and the sign
of the result. A model that fails ``47-29`` (borrow in the units, positive) gets ``83-55``,
``62-38``, ... ; one that fails ``58+67`` (two carries into a third digit) gets ``79+46``.
The answer is computed, so every candidate is verified by construction.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_EXPR = re.compile(r"(?<![\d.])(\d+)\s*([+-])\s*(\d+)(?!\d|\.\d)")


def _columns(x: int, y: int, op: str) -> tuple[bool, ...]:
    """Per column, least significant first: a carry out of it (add) or a borrow into it (sub,
    of max - min)."""
    if op == "-":
        x, y = max(x, y), min(x, y)
    dx, dy = str(x)[::-1], str(y)[::-1]
    out, c = [], 0
    for i in range(max(len(dx), len(dy))):
        a = int(dx[i]) if i < len(dx) else 0
        b = int(dy[i]) if i < len(dy) else 0
        if op == "+":
            c = 1 if a + b + c >= 10 else 0
        else:
            c = 1 if a - c < b else 0
        out.append(bool(c))
    return tuple(out)


@dataclass(frozen=True)
class Structure:
    op: str  # "+" | "-"
    digits: tuple[int, int]
    columns: tuple[bool, ...]  # carries (add) / borrows (sub) per column
    negative: bool

    @classmethod
    def of(cls, a: int, op: str, b: int) -> Structure:
        value = a + b if op == "+" else a - b
        return cls(op, (len(str(a)), len(str(b))), _columns(a, b, op), value < 0)

    @property
    def name(self) -> str:
        marks = "".join("c" if x else "." for x in reversed(self.columns))
        kind = "carry" if self.op == "+" else "borrow"
        sign = " negative" if self.negative else ""
        return f"{self.op} {self.digits[0]}x{self.digits[1]} digits, {kind} [{marks}]{sign}"


def parse(question: str) -> tuple[int, str, int, re.Match] | None:
    """The first ``a+b`` / ``a-b`` of a question, or None."""
    m = _EXPR.search(question)
    if m is None:
        return None
    return int(m.group(1)), m.group(2), int(m.group(3)), m


def _draw(rng: random.Random, digits: int) -> int:
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def similar(
    question: str, n: int, rng: random.Random, max_tries: int = 20000
) -> list[tuple[str, str, Structure]]:
    """Up to ``n`` distinct questions with the structure of ``question`` (its text around the
    expression kept), each with its answer; fewer when the structure is rare (a 1-digit sum
    with a carry has few instances), none when the question has no expression."""
    found = parse(question)
    if found is None:
        return []
    a, op, b, m = found
    want = Structure.of(a, op, b)
    seen = {(a, b)}
    out = []
    for _ in range(max_tries):
        if len(out) == n:
            break
        x, y = _draw(rng, want.digits[0]), _draw(rng, want.digits[1])
        if (x, y) in seen or Structure.of(x, op, y) != want:
            continue
        seen.add((x, y))
        text = question[: m.start()] + f"{x}{op}{y}" + question[m.end() :]
        out.append((text, str(x + y if op == "+" else x - y), want))
    return out
