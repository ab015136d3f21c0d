"""Text normalisation shared by every curation stage: one definition of "the same question".

``normalize`` lower-cases, drops LaTeX spacing commands (``\\,`` ``\\;`` ``\\!`` ``\\ `` ``\\quad``
``\\qquad``), ``\\left`` / ``\\right`` and the ``$`` / ``\\(`` ``\\)`` / ``\\[`` ``\\]`` math
delimiters, and collapses runs of whitespace, so ``What is $\\frac{1}{2}\\,x$?`` and
``what is \\frac{1}{2} x ?`` hash alike. ``words`` splits normalised text into word tokens
(letters / digits runs and single symbols), the unit of shingles and n-grams.

    >>> normalize(r"What  is $\\frac{1}{2}\\,x$?")
    'what is \\\\frac{1}{2} x?'
    >>> words("x+1 = 2y")
    ['x', '+', '1', '=', '2y']
"""

from __future__ import annotations

import hashlib
import re

_SPACING = re.compile(r"\\(?:[,;:! ]|q?quad\b)")
_SIZING = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)\b")
_DELIMS = re.compile(r"\$+|\\[()\[\]]")
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\\[a-zA-Z]+|\w+|[^\w\s]", re.UNICODE)


def normalize(text: str) -> str:
    text = _SPACING.sub(" ", text.lower())
    text = _DELIMS.sub(" ", _SIZING.sub(" ", text))
    return _SPACE.sub(" ", text).strip()


def words(text: str) -> list[str]:
    """Word tokens of ``normalize(text)``: LaTeX commands, runs of letters / digits, symbols."""
    return _WORD.findall(normalize(text))


def shingles(text: str, size: int) -> set[str]:
    """The set of ``size``-word shingles (a text shorter than ``size`` words is one shingle)."""
    w = words(text)
    if len(w) <= size:
        return {" ".join(w)} if w else set()
    return {" ".join(w[i : i + size]) for i in range(len(w) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def exact_key(text: str) -> int:
    """A 63-bit hash of the normalised text (exact duplicates share it)."""
    digest = hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
