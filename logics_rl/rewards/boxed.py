"""Find ``\\boxed{...}`` answers in a response (linear time, nested braces handled).

>>> boxed_answers(r"so \\boxed{\\frac{1}{2}} and \\fbox{3}")
['\\\\frac{1}{2}', '3']
"""

from __future__ import annotations

import re

_BOX = re.compile(r"\\(?:boxed|fbox)\s*(\{)")
_BRACE = re.compile(r"\\.|[{}]", re.DOTALL)


def boxed_answers(text: str) -> list[str | None]:
    """Contents of every ``\\boxed{}`` / ``\\fbox{}`` in order; None for one whose braces never close.

    A box nested inside another box is part of the outer one's content, not a separate answer.
    """
    out: list[str | None] = []
    pos = 0
    while True:
        m = _BOX.search(text, pos)
        if m is None:
            return out
        start = m.end(1)
        depth, end = 1, None
        for tok in _BRACE.finditer(text, start):  # \{ and \} are literal (set) braces, skipped
            c = tok.group()
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    end = tok.start()
                    break
        if end is None:
            out.append(None)
            return out  # everything after an unclosed box is inside it
        out.append(text[start:end])
        pos = end + 1
