"""Question / answer rows with planted duplicates and contamination, and their ground truth.

``planted_rows(n)`` streams ``n`` math-flavoured rows (``question``, ``answer``, ``solution``,
``source``) in which some rows are copies of earlier ones, so a dedup or decontamination stage
can be scored against what was planted (``dedup_scores``). Every row says what it is:

- ``uid``: its 0-based position in the stream;
- ``kind``: ``"original"``, ``"exact"`` or ``"near"``;
- ``cluster``: the ``uid`` of the original it copies (its own ``uid`` for an original);
- ``level``: the Jaccard similarity a near copy was edited towards (1.0 for the others);
- ``jaccard``: the true Jaccard similarity of its ``text.shingles(question, shingle_size)`` to
  its original's (measured for near copies, 1.0 for the others);
- ``contaminated``: whether the question shares a 13-word n-gram (``text.words``) with the
  benchmark passed as ``benchmark`` (always False without one).

What is planted, and how:

- Originals: an opening verb and 25-60 words drawn from a vocabulary of 32,768 made-up words
  and ~130 math words, with one to three LaTeX bits (``\\frac{a}{b}``, ``x^3``, ``\\sqrt{17}``,
  ``\\pi``, integers), some in ``$...$``. The numerator of a fraction is the original's ordinal
  number, bits are at least three words apart and flanked by made-up words, so every 5-word
  shingle holds a unique number, a rare word or several words: two originals essentially
  never share a shingle (over 20,000 originals, 29 pairs shared one). The answer is an
  integer or a fraction; the solution is 20-400 words (log-uniform) ending in
  ``\\boxed{answer}``.
- Exact copies (``exact_fraction`` of the rows): an earlier original with cosmetic changes only
  that ``text.normalize`` removes (upper / title case, doubled spaces and line breaks, ``\\,``
  and ``\\quad`` spacing, ``$`` toggled around LaTeX bits), with a solution of another length.
- Near copies (``near_fraction``): an earlier original with words substituted, inserted or
  deleted, aiming at each of ``jaccard_levels`` in turn. Edits inside the question are spaced
  so that their shingles do not overlap (a substitution removes ``k`` shingles and adds ``k``,
  an insertion ``k - 1`` / ``k``, a deletion ``k`` / ``k - 1``) and the last step substitutes
  words at the two ends (removing / adding 1 shingle each): the predicted Jaccard
  ``(S - removed) / (S + added)`` of an ``S``-shingle question lands within a shingle of the
  target. The value stored is the one measured with ``text.shingles``.
- Copies are made of a uniform sample of the originals seen so far (a reservoir of at most
  ``reservoir`` of them), so they come after their original, at any distance; memory stays
  bounded by the reservoir.
- Contamination: ``benchmark_rows(originals, m)`` makes a small benchmark (``problem``,
  ``answer``) in which some questions copy given training originals (``train_question`` /
  ``train_uid`` say which) and the others are fresh. ``planted_rows(..., benchmark=bench, contaminate=c)``
  then inserts ``c`` training rows that copy fresh benchmark problems (cosmetically, or with
  their first / last 1-3 words replaced, which keeps at least 24 words in a row intact), and
  flags as contaminated the training originals the benchmark copied, their exact copies and
  those of their near copies that still share a 13-gram (checked against the benchmark).
  Inserted rows do not move the other rows' content: the plain stream for the same seed, with
  its uids shifted, is what remains, so ``originals`` can come from a first, plain call.

Speed: about 45,000-50,000 rows/s on one core here (originals alone ~90,000; a near copy
costs ~60-100 us, most of it the two ``text.shingles`` calls that measure its Jaccard).

    >>> rows = list(planted_rows(1000, seed=1))
    >>> bench = benchmark_rows([r for r in rows if r["kind"] == "original"][:10], 20)
    >>> rows = list(planted_rows(1000, seed=1, benchmark=bench, contaminate=5))
    >>> sum(r["contaminated"] for r in rows) >= 15
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from logics_rl.curate.text import shingles, words

SOURCES = ("aops_forum", "amc_aime", "cn_k12", "olympiads", "synthetic_math")
OPENERS = (
    "Find",
    "Compute",
    "Determine",
    "Evaluate",
    "Show",
    "Suppose",
    "Let",
    "Prove",
    "Given",
    "Calculate",
)
MATH_WORDS = tuple(
    """
    integer integers real rational prime primes divisor divisors multiple remainder sum product
    difference quotient ratio fraction square cube root roots polynomial coefficient degree
    equation inequality function sequence series term terms limit derivative integral area
    volume perimeter radius diameter circle triangle rectangle polygon hexagon angle angles
    side sides vertex vertices edge edges chord tangent secant median altitude bisector
    centroid incircle circumcircle parallel perpendicular probability expected value random
    coin dice die card deck choose arrange permutation combination subset set element digits
    digit base binary decimal modulo congruent gcd lcm factor factorial exponent logarithm
    minimum maximum positive negative nonnegative distinct consecutive ordered pairs triples
    solution solutions number numbers largest smallest possible values satisfies holds exists
    unique least greatest mean mode average graph plane point points line lines segment
    segments distance midpoint coordinate origin axis matrix vector determinant
    """.split()  # noqa: SIM905
)
SOLUTION_WORDS = (
    *"""
    we have so then thus hence therefore since because note that substituting gives yields
    it follows the value of is equals and or by applying squaring both sides simplifying
    factoring expanding dividing multiplying subtracting adding case when if for all each
    every there exists which means this implies a an with from into as at on to in using
    induction similarly finally checking small cases verifying obtain recall
    """.split(),  # noqa: SIM905
    *("=", "+", "-", "x", "y", "n", "k", "$x^2$", "$n+1$", "$2k$", "(1)", "(2)"),
)
PSEUDO_WORDS = 32_768
MATH_WORD_SHARE = 0.25  # of the question vocabulary draws
LATEX_SHARE_DOLLARS = 0.5
END = 4  # first / last words of an original that hold no LaTeX bit (near copies edit there)
NGRAM = 13

__all__ = ["benchmark_rows", "dedup_scores", "planted_rows"]


# --------------------------------------------------------------------------- vocabulary
@dataclass(frozen=True)
class _Vocab:
    pseudo: np.ndarray  # made-up words (fresh words for edits come from here)
    question: np.ndarray  # what question words are drawn from: pseudo + math words
    corpus: str  # solution text, sliced by word offsets
    offsets: list[int]


@lru_cache(maxsize=1)
def _vocab() -> _Vocab:
    """The vocabularies, fixed for every seed (built once, ~30 ms)."""
    rng = np.random.default_rng(20_240_601)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    picks = rng.choice(len(syllables) ** 3, PSEUDO_WORDS, replace=False)
    s = len(syllables)
    pseudo = [syllables[i // (s * s)] + syllables[(i // s) % s] + syllables[i % s] for i in picks]
    repeat = round(MATH_WORD_SHARE * len(pseudo) / ((1 - MATH_WORD_SHARE) * len(MATH_WORDS)))
    question = np.array(pseudo + list(MATH_WORDS) * repeat, dtype=object)
    sol = rng.choice(np.array(SOLUTION_WORDS, dtype=object), 1 << 16).tolist()
    numbers = rng.integers(0, 1000, len(sol))
    sol = [str(numbers[i]) if i % 11 == 5 else w for i, w in enumerate(sol)]
    offsets, pos = [], 0
    for w in sol:
        offsets.append(pos)
        pos += len(w) + 1
    offsets.append(pos)
    return _Vocab(np.array(pseudo, dtype=object), question, " ".join(sol) + " ", offsets)


class _Draw:
    """Buffered draws from one numpy Generator: Python-speed access to uniform numbers and words."""

    def __init__(self, rng: np.random.Generator, block: int = 1 << 14):
        self.rng, self.block = rng, block
        self.vocab = _vocab()
        self._u: list[float] = []
        self._ui = 0
        self._w: list[str] = []
        self._wi = 0
        self._f: list[str] = []
        self._fi = 0

    def us(self, k: int) -> list[float]:
        """``k`` uniform numbers in ``[0, 1)``."""
        if self._ui + k > len(self._u):
            self._u, self._ui = self.rng.random(max(self.block, k)).tolist(), 0
        self._ui += k
        return self._u[self._ui - k : self._ui]

    def u(self) -> float:
        return self.us(1)[0]

    def int(self, lo: int, hi: int) -> int:
        """Uniform in ``[lo, hi)``."""
        return lo + int(self.us(1)[0] * (hi - lo))

    def words(self, k: int) -> list[str]:
        """``k`` question words (a new list)."""
        if self._wi + k > len(self._w):
            idx = self.rng.integers(0, len(self.vocab.question), max(self.block, k))
            self._w, self._wi = self.vocab.question[idx].tolist(), 0
        self._wi += k
        return self._w[self._wi - k : self._wi]

    def fresh(self) -> str:
        """A made-up word, to substitute or insert."""
        if self._fi >= len(self._f):
            idx = self.rng.integers(0, len(self.vocab.pseudo), self.block)
            self._f, self._fi = self.vocab.pseudo[idx].tolist(), 0
        self._fi += 1
        return self._f[self._fi - 1]


# --------------------------------------------------------------------------- texts
def _latex(r: list[float], numerator: int | None) -> tuple[str, int]:
    """A LaTeX bit from 4 uniforms and its number of ``text.words`` tokens; a fraction over
    ``numerator`` when it is set."""
    if numerator is not None:
        bit, ntok = f"\\frac{{{numerator}}}{{{2 + int(r[1] * 98)}}}", 7
    elif r[0] < 0.35:
        bit, ntok = f"{'abcmnxyz'[int(r[1] * 8)]}^{2 + int(r[2] * 8)}", 3
    elif r[0] < 0.65:
        bit, ntok = f"\\sqrt{{{2 + int(r[1] * 998)}}}", 4
    elif r[0] < 0.8:
        return "\\pi", 1
    else:
        return str(2 + int(r[1] * 9998)), 1
    return (f"${bit}$" if r[3] < LATEX_SHARE_DOLLARS else bit), ntok


def _question(draw: _Draw, lo: int, hi: int, numerator: int | None) -> tuple[list[str], list[int]]:
    """Pieces (whitespace-separated) of a new question of ``lo..hi`` pieces, with their token
    counts: an opener, words, 1-3 LaTeX bits (the first maybe a fraction over ``numerator``)
    at least 3 words apart and ``END`` pieces away from both ends, with made-up words on both
    sides, and a final ``?`` or ``.``."""
    r = draw.us(22)
    n = lo + int(r[0] * (hi - lo + 1))
    pieces = draw.words(n)
    pieces[0] = OPENERS[int(r[1] * len(OPENERS))]
    pieces[-1] += "?" if r[2] < 0.7 else "."
    ntok = [1] * n
    ntok[-1] = 2
    bits = 1 + int(r[3] * 3)
    seg = (n - 2 * END - 1) // bits
    for i in range(bits):
        q = r[4 + 6 * i : 10 + 6 * i]
        at = END + seg * i + int(q[0] * (seg - 3))
        pieces[at], ntok[at] = _latex(q[2:], numerator if i == 0 and q[1] < 0.7 else None)
        if ntok[at] > 1:  # rare neighbours: a shingle across a bit's few numbers stays unique
            pieces[at - 1], pieces[at + 1] = draw.fresh(), draw.fresh()
    return pieces, ntok


def _answer(r: list[float]) -> str:
    """An integer or a fraction, from 3 uniforms."""
    if r[0] < 0.7:
        return str(int(r[1] * 2021) - 20)
    return f"\\frac{{{1 + int(r[1] * 99)}}}{{{2 + int(r[2] * 98)}}}"


_LOG_SPAN = math.log(401 / 20)


def _solution_length(u: float, avoid: int = -1) -> int:
    """20-400 words, log-uniform; never ``avoid``."""
    length = int(math.exp(u * _LOG_SPAN) * 20)
    return length + 1 if length == avoid else length


def _solution(vocab: _Vocab, answer: str, length: int, u: float) -> str:
    """About ``length`` words of solution text ending in ``\\boxed{answer}``."""
    body = max(length - 5, 1)
    s = int(u * (len(vocab.offsets) - body - 1))
    text = vocab.corpus[vocab.offsets[s] : vocab.offsets[s + body] - 1]
    return f"{text}. Therefore the answer is $\\boxed{{{answer}}}$."


_SEPARATORS = ("  ", "\n", " \\, ", " \\quad ", "\t")


def _cosmetic(text: str, draw: _Draw) -> str:
    """``text`` with differences ``normalize`` removes: ``$`` toggled around about half of the
    LaTeX bits, a fifth of the words upper / lower / title-cased, a tenth followed by extra
    whitespace, ``\\,`` or ``\\quad``, maybe whitespace around it all."""
    pieces = text.split(" ")
    n = len(pieces)
    k_case, k_sep = 1 + n // 5, 1 + n // 10
    r = draw.us(2 * k_case + 2 * k_sep + 4)
    mask = int(r[-1] * (1 << 30))
    for j, i in enumerate(i for i, p in enumerate(pieces) if "\\" in p or "^" in p):
        if mask >> (j % 30) & 1:
            p = pieces[i]
            pieces[i] = p[1:-1] if len(p) > 1 and p[0] == p[-1] == "$" else f"${p}$"
    for j in range(k_case):
        i = int(r[j] * n)
        p = pieces[i]
        if r[k_case + j] < 0.5:
            pieces[i] = p.upper()
        else:
            pieces[i] = p.lower() if p[:1].isupper() else p.capitalize()
    o = 2 * k_case
    for j in range(k_sep):
        pieces[int(r[o + j] * (n - 1))] += _SEPARATORS[int(r[o + k_sep + j] * 5)]
    copy = " ".join(pieces)
    if r[-2] < 0.3:
        copy = _SEPARATORS[int(r[-3] * 5)] + copy + " "
    return copy if copy != text else text.upper()


def _light_edit(text: str, draw: _Draw) -> str:
    """``text`` (at least 30 pieces) with its first 1-3 and last 0-3 pieces replaced: the 24+
    pieces in between, so every 13-gram there, stay as they were."""
    pieces = text.split()
    if len(pieces) < 30:
        raise ValueError("a light edit needs a question of at least 30 words")
    for i in range(draw.int(1, 4)):
        pieces[i] = draw.fresh()
    pieces[0] = pieces[0].capitalize()
    for i in range(1, draw.int(0, 4) + 1):
        pieces[-i] = draw.fresh() + ("?" if i == 1 else "")
    return " ".join(pieces)


def _ngrams(text: str, size: int = NGRAM) -> set[str]:
    w = words(text)
    return {" ".join(w[i : i + size]) for i in range(len(w) - size + 1)}


# --------------------------------------------------------------------------- near copies
@dataclass(slots=True)
class _Original:
    uid: int
    pieces: list[str]
    ntok: list[int]
    question: str
    answer: str
    solution_length: int
    contaminated: bool
    shingles: set[str] | None = None


_OPS = ("sub", "ins", "del")
_EFFECTS = {"sub": (0, 0), "ins": (-1, 0), "del": (0, -1)}  # (removed, added) shingles, minus k


def _near_copy(orig: _Original, target: float, k: int, draw: _Draw) -> str:
    """A copy of ``orig`` edited so that its shingle Jaccard to it is close to ``target``."""
    n, ntok = len(orig.pieces), orig.ntok
    tokpos, pos = [], 0
    for t in ntok:
        tokpos.append(pos)
        pos += t
    s = pos - k + 1  # shingles of the original (all distinct)
    removed = added = 0

    def jac(r: int, a: int) -> float:
        return (s - r) / (s + a)

    r = draw.us(4)
    # interior edits: single-token pieces clear of the ends' shingles, more than k tokens apart,
    # visited from a random start; each op tried in a random rotation, kept while J >= target
    lo, hi = END + k, pos - END - 2 - k
    cands = [i for i in range(END, n - END) if ntok[i] == 1 and lo <= tokpos[i] <= hi]
    start = int(r[0] * len(cands))
    ops: dict[int, str] = {}
    last = -(1 << 30)
    first = None
    for i in cands[start:] + cands[:start]:
        p = tokpos[i]
        if abs(p - last) <= k or (first is not None and abs(p - first) <= k):
            continue
        rot = int(r[1] * 3)
        for j in range(3):
            op = _OPS[(rot + j) % 3]
            dr, da = _EFFECTS[op]
            if jac(removed + k + dr, added + k + da) >= target:
                ops[i], removed, added, last = op, removed + k + dr, added + k + da, p
                first = p if first is None else first
                break
        else:
            break
    # the ends: replacing the first `a` words removes / adds a shingles, the last `b` words (the
    # last keeps its punctuation) b + 1; take the count nearest the target
    best = min(range(2 * END + 2), key=lambda e: abs(jac(removed + e, added + e) - target))
    splits = [(a, b) for a in range(END + 1) for b in range(END + 1) if a + b + (b > 0) == best]
    a, b = splits[int(r[2] * len(splits))]
    out = []
    fresh = draw.fresh
    for i, piece in enumerate(orig.pieces):
        if i < a:
            out.append(fresh().capitalize() if i == 0 else fresh())
        elif i >= n - b:
            out.append(fresh() + piece[-1] if i == n - 1 else fresh())
        else:
            op = ops.get(i)
            if op is None:
                out.append(piece)
            elif op == "sub":
                out.append(fresh())
            elif op == "ins":
                out.extend((fresh(), piece))
            # "del": nothing
    return " ".join(out)


# --------------------------------------------------------------------------- the stream
def planted_rows(
    n: int,
    *,
    seed: int = 0,
    exact_fraction: float = 0.05,
    near_fraction: float = 0.10,
    jaccard_levels: tuple[float, ...] = (0.9, 0.8, 0.7, 0.5),
    shingle_size: int = 5,
    benchmark: Sequence[dict] | None = None,
    contaminate: int = 0,
    reservoir: int = 4096,
) -> Iterator[dict]:
    """Yield ``n`` rows with planted exact and near duplicates (see the module docstring).

    With a ``benchmark`` (from ``benchmark_rows``), the training originals it copied and their
    copies that still share a 13-gram with it are flagged ``contaminated``, and ``contaminate``
    rows (at most one per fresh benchmark problem) copying benchmark problems are inserted at
    random places; the other rows are the plain stream of ``seed`` in order (uids shifted).
    Copies are drawn from a reservoir of at most ``reservoir`` originals.
    """
    if exact_fraction + near_fraction > 1 or min(exact_fraction, near_fraction) < 0:
        raise ValueError("exact_fraction and near_fraction must be >= 0 and sum to <= 1")
    if near_fraction > 0 and not jaccard_levels:
        raise ValueError("near copies need jaccard_levels")
    if not 1 <= shingle_size <= 20:
        raise ValueError("shingle_size must be within 1..20 (questions have 26+ tokens)")
    bench = list(benchmark or ())
    fresh = [b for b in bench if not b.get("train_question")]
    if contaminate > len(fresh):
        raise ValueError(f"contaminate={contaminate} > {len(fresh)} fresh benchmark problems")
    bench_grams = set().union(*(_ngrams(b["problem"]) for b in bench)) if bench else set()
    copied = {b["train_question"] for b in bench if b.get("train_question")}
    crng = np.random.default_rng([seed, 0xC0])
    inserts = set(crng.choice(n, contaminate, replace=False).tolist()) if contaminate else set()
    fresh_order = crng.permutation(len(fresh)).tolist()[:contaminate]
    cdraw = _Draw(crng, block=256)

    draw = _Draw(np.random.default_rng(seed))
    vocab, us = draw.vocab, draw.us
    pool: list[_Original] = []
    originals = near_count = 0
    near_edge = exact_fraction + near_fraction
    n_sources = len(SOURCES)
    for uid in range(n):
        if uid in inserts:
            yield _contaminated_row(uid, fresh[fresh_order.pop()], bench_grams, cdraw)
            continue
        r = us(8)  # kind, source, reservoir slot, solution length / start, answer (3)
        source = SOURCES[int(r[1] * n_sources)]
        if pool and r[0] < near_edge:
            orig = pool[int(r[2] * len(pool))]
            if r[0] < exact_fraction:
                kind, level, jac, dirty = "exact", 1.0, 1.0, orig.contaminated
                q = _cosmetic(orig.question, draw)
                length = _solution_length(r[3], avoid=orig.solution_length)
            else:
                kind, level = "near", jaccard_levels[near_count % len(jaccard_levels)]
                near_count += 1
                q = _near_copy(orig, level, shingle_size, draw)
                if orig.shingles is None:
                    orig.shingles = shingles(orig.question, shingle_size)
                sh = shingles(q, shingle_size)
                jac = len(orig.shingles & sh) / len(orig.shingles | sh)
                dirty = orig.contaminated and bool(_ngrams(q) & bench_grams)
                length = _solution_length(r[3])
            answer, cluster = orig.answer, orig.uid
        else:
            pieces, ntok = _question(draw, 25, 60, numerator=originals + 2)
            q = " ".join(pieces)
            kind, level, jac, cluster = "original", 1.0, 1.0, uid
            answer = _answer(r[5:])
            length = _solution_length(r[3])
            dirty = bool(copied) and q in copied and bool(_ngrams(q) & bench_grams)
            entry = _Original(uid, pieces, ntok, q, answer, length, dirty)
            originals += 1
            if len(pool) < reservoir:
                pool.append(entry)
            else:
                j = int(r[2] * originals)
                if j < reservoir:
                    pool[j] = entry
        yield {
            "uid": uid,
            "question": q,
            "answer": answer,
            "solution": _solution(vocab, answer, length, r[4]),
            "source": source,
            "cluster": cluster,
            "kind": kind,
            "level": level,
            "jaccard": jac,
            "contaminated": dirty,
        }


def _contaminated_row(uid: int, problem: dict, bench_grams: set[str], draw: _Draw) -> dict:
    """A training row copying a benchmark ``problem``: cosmetically, or with its ends edited."""
    q = problem["problem"]
    r = draw.us(4)
    q = _light_edit(q, draw) if r[0] < 0.5 and len(q.split()) >= 30 else _cosmetic(q, draw)
    answer = str(problem["answer"])
    return {
        "uid": uid,
        "question": q,
        "answer": answer,
        "solution": _solution(draw.vocab, answer, _solution_length(r[1]), r[2]),
        "source": SOURCES[int(r[3] * len(SOURCES))],
        "cluster": uid,
        "kind": "original",
        "level": 1.0,
        "jaccard": 1.0,
        "contaminated": bool(_ngrams(q) & bench_grams),
    }


# --------------------------------------------------------------------------- benchmark
def benchmark_rows(
    originals: Sequence[dict], m: int, *, seed: int = 0, copied: int | None = None
) -> list[dict]:
    """A benchmark of ``m`` rows (``uid``, ``problem``, ``answer``, ``source``, ``train_uid``,
    ``train_question``): ``copied`` of them (default ``min(len(originals), m // 2)``) copy
    distinct training ``originals`` (cosmetically, or with their ends edited when they have 30+
    words: either way they share a 13-gram), the rest are fresh 30-60-word problems. Rows are
    shuffled; ``train_question`` / ``train_uid`` say which training row a copy came from."""
    copied = min(len(originals), m // 2) if copied is None else copied
    if not 0 <= copied <= min(len(originals), m):
        raise ValueError(f"copied={copied} must be within 0..min(len(originals), m)")
    rng = np.random.default_rng([seed, 0xBE])
    draw = _Draw(rng, block=1024)
    rows = []
    for i in rng.choice(len(originals), copied, replace=False).tolist() if copied else []:
        o = originals[i]
        q = o["question"]
        edit = draw.u() < 0.5 and len(q.split()) >= 30
        problem = _light_edit(q, draw) if edit else _cosmetic(q, draw)
        rows.append(
            {
                "problem": problem,
                "answer": o["answer"],
                "train_uid": o.get("uid"),
                "train_question": q,
            }
        )
    for _ in range(m - copied):
        pieces, _ntok = _question(draw, 30, 60, numerator=draw.int(10, 100_000))
        rows.append(
            {
                "problem": " ".join(pieces),
                "answer": _answer(draw.us(3)),
                "train_uid": None,
                "train_question": None,
            }
        )
    order = rng.permutation(len(rows)).tolist()
    return [{"uid": j, **rows[i], "source": "benchmark"} for j, i in enumerate(order)]


# --------------------------------------------------------------------------- scoring
def dedup_scores(rows_kept: Iterable[dict], rows_all: Iterable[dict], threshold: float) -> dict:
    """Score a dedup run against the planted truth. ``rows_kept`` are the surviving rows (dicts
    with ``uid``, or plain uids); ``rows_all`` the planted stream.

    - ``recall``: removed / planted duplicates that should go (exact copies, and near copies
      whose measured ``jaccard >= threshold``);
    - ``precision``: removed rows that are planted duplicates of any level / removed rows (an
      original removed counts against it, even when one of its copies survives);
    - ``survivors_per_cluster_max``: the most rows kept of one cluster whose copies are all
      ``>= threshold`` (1 when dedup is right; 0 when it removed a whole cluster, which
      ``clusters_emptied`` counts);
    - ``recall_any_survivor`` / ``precision_any_member``: the same, per cluster, for a dedup
      that may keep a copy instead of the original. A cluster's rows at ``>= threshold`` (its
      original, exact copies, near copies at or above it) should lose all but one: each
      counts ``min(removed among them, their number - 1)`` of ``their number - 1``; a removed
      row is right when its cluster has another row;
    - ``by_kind`` and ``by_level`` (near copies by target level): rows, removed, ``recall``
      (removed / rows) and, per level, the mean measured Jaccard.
    """
    kept = {r["uid"] if isinstance(r, dict) else int(r) for r in rows_kept}
    # cluster -> [rows, survivors, all copies >= threshold, rows >= threshold, removed of those]
    clusters: dict[int, list] = {}
    by_kind: dict[str, dict] = {}
    by_level: dict[float, dict] = {}
    rows = removed = targets = removed_targets = removed_dups = 0
    for r in rows_all:
        rows += 1
        gone = r["uid"] not in kept
        kind, jac = r["kind"], r["jaccard"]
        target = kind == "exact" or (kind == "near" and jac >= threshold)
        removed += gone
        targets += target
        removed_targets += gone and target
        removed_dups += gone and kind != "original"
        k = by_kind.setdefault(kind, {"rows": 0, "removed": 0})
        k["rows"] += 1
        k["removed"] += gone
        if kind == "near":
            lv = by_level.setdefault(r["level"], {"rows": 0, "removed": 0, "jaccard_sum": 0.0})
            lv["rows"] += 1
            lv["removed"] += gone
            lv["jaccard_sum"] += jac
        c = clusters.setdefault(r["cluster"], [0, 0, True, 0, 0])
        c[0] += 1
        c[1] += not gone
        if kind == "near" and jac < threshold:
            c[2] = False
        else:
            c[3] += 1
            c[4] += gone
    for k in by_kind.values():
        k["recall"] = k["removed"] / k["rows"]
    for lv in by_level.values():
        lv["recall"] = lv["removed"] / lv["rows"]
        lv["jaccard_mean"] = lv.pop("jaccard_sum") / lv["rows"]
    checked = [c[1] for c in clusters.values() if c[0] > 1 and c[2]]
    credited = sum(min(c[4], c[3] - 1) for c in clusters.values() if c[3] > 1)
    removed_members = sum(c[0] - c[1] for c in clusters.values() if c[0] > 1)
    return {
        "threshold": threshold,
        "rows": rows,
        "kept": rows - removed,
        "removed": removed,
        "targets": targets,
        "recall": removed_targets / targets if targets else 1.0,
        "precision": removed_dups / removed if removed else 1.0,
        "recall_any_survivor": credited / targets if targets else 1.0,
        "precision_any_member": removed_members / removed if removed else 1.0,
        "survivors_per_cluster_max": max(checked, default=0),
        "clusters_checked": len(checked),
        "clusters_emptied": sum(1 for c in clusters.values() if c[1] == 0),
        "originals_removed": by_kind.get("original", {}).get("removed", 0),
        "by_kind": by_kind,
        "by_level": dict(sorted(by_level.items(), reverse=True)),
    }
