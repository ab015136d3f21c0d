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

import numpy as np

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


def words_of_normalized(text: str) -> list[str]:
    """``words`` of a text already normalised."""
    return _WORD.findall(text)


def shingles(text: str, size: int) -> set[str]:
    """The set of ``size``-word shingles (a text shorter than ``size`` words is one shingle)."""
    w = words(text)
    if len(w) <= size:
        return {" ".join(w)} if w else set()
    return {" ".join(w[i : i + size]) for i in range(len(w) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def exact_key(text: str, normalized: bool = False) -> int:
    """A 63-bit hash of the normalised text (exact duplicates share it)."""
    norm = text if normalized else normalize(text)
    digest = hashlib.blake2b(norm.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


_P = np.uint64(0x100000001B3)


def word_ids(tokens: list[str], cache: dict[str, int]) -> np.ndarray:
    """A stable 64-bit id per word (``cache`` keeps those already hashed)."""
    for t in set(tokens).difference(cache):
        cache[t] = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "big")
    return np.fromiter(map(cache.__getitem__, tokens), np.uint64, count=len(tokens))


def window_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """The hash of every ``n``-word window of ``ids`` (``len(ids) - n + 1`` values): a polynomial
    of the word ids, so equal word sequences hash alike in any process."""
    if len(ids) < n or n < 1:
        return np.zeros(0, np.uint64)
    m = len(ids) - n + 1
    out = np.zeros(m, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):  # sum of ids[i + j] * P ** (n - 1 - j), wrapping at 2**64
            out += ids[j : j + m] * (_P ** np.uint64(n - 1 - j))
    return out


def shingle_hashes(
    texts: list[str], size: int, cache: dict[str, int], normalized: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The hashed ``size``-word shingles of every text, flat, with row offsets (row ``i`` owns
    ``flat[offsets[i]:offsets[i + 1]]``): the sets ``shingles`` builds, as 64-bit hashes computed
    for the whole batch at once. A text shorter than ``size`` words is one shingle; an empty
    one the shingle of no words. ``normalized``: the texts are already ``normalize``d."""
    toks = [_WORD.findall(t if normalized else normalize(t)) for t in texts]
    lengths = np.array([len(t) for t in toks], np.int64)
    bounds = np.r_[0, np.cumsum(lengths)]
    ids = word_ids([w for t in toks for w in t], cache)
    h = window_hashes(ids, size)
    starts = np.arange(len(h))
    row_of = np.searchsorted(bounds, starts, side="right") - 1
    valid = starts + size <= bounds[row_of + 1]
    counts = np.bincount(row_of[valid], minlength=len(texts))
    short = np.flatnonzero(counts == 0)
    counts[short] = 1
    offsets = np.r_[0, np.cumsum(counts)]
    flat = np.empty(offsets[-1], np.uint64)
    slot = np.ones(len(flat), bool)
    slot[offsets[short]] = False
    flat[slot] = h[valid]
    for r in short:
        row = ids[bounds[r] : bounds[r + 1]]
        flat[offsets[r]] = window_hashes(row, len(row))[0] if len(row) else np.uint64(0)
    return flat, offsets
