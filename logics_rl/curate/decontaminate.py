"""The decontaminate step: drop training rows that share a word n-gram with a benchmark.

Texts are compared as ``text.words`` (normalised word tokens); ``ngram`` (13 by default) words
in a row of a training field equal to ``ngram`` words of a benchmark text remove the row, with
the reason ``contaminated: <benchmark>`` (the first benchmark that matches). A benchmark text
shorter than ``ngram`` words must appear whole. The benchmarks' n-grams are hashed to 64 bits on
the driver and sent to every task as sorted arrays (8 bytes per n-gram); a training batch is
hashed in one vectorised pass (rolling polynomial hash over the batch's word ids, windows that
cross a row boundary masked).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from logics_rl.config.loader import to_plain
from logics_rl.config.schema import CurateConfig
from logics_rl.curate.rows import mark, tasks
from logics_rl.curate.text import window_hashes, word_ids, words
from logics_rl.data.files import DataError, iter_rows


def text_hashes(text: str, n: int, cache: dict[str, int]) -> tuple[np.ndarray, int | None]:
    """A benchmark text's n-gram hashes, or its whole-text hash and length when it is shorter."""
    ids = word_ids(words(text), cache)
    if len(ids) >= n:
        return window_hashes(ids, n), None
    return (window_hashes(ids, len(ids)), len(ids)) if len(ids) else (np.zeros(0, np.uint64), None)


def benchmark_index(benchmarks: list[dict], n: int) -> list[dict]:
    """Per benchmark: its name, the sorted n-gram hashes and the short texts' hashes by length."""
    out = []
    for b in benchmarks:
        name = b["name"] or os.path.splitext(os.path.basename(b["path"].rstrip("/")))[0]
        cache: dict[str, int] = {}
        grams, short = [], {}
        for row in iter_rows(b["path"]):
            text = row.data.get(b["field"]) if isinstance(row.data, dict) else None
            if not isinstance(text, str):
                raise DataError(f"{row.where}: benchmark field {b['field']!r} is not a string")
            h, length = text_hashes(text, n, cache)
            if length is None:
                grams.append(h)
            else:
                short.setdefault(length, []).append(h)
        out.append(
            {
                "name": name,
                "grams": np.unique(np.concatenate(grams)) if grams else np.zeros(0, np.uint64),
                "short": {k: np.unique(np.concatenate(v)) for k, v in short.items()},
            }
        )
    return out


def _hits(ids: np.ndarray, bounds: np.ndarray, n: int, table: np.ndarray) -> np.ndarray:
    """Per row (``bounds`` = row starts + total), whether a window of ``n`` words lies in
    ``table``."""
    rows = len(bounds) - 1
    hit = np.zeros(rows, bool)
    if len(ids) < n or len(table) == 0:
        return hit
    h = window_hashes(ids, n)
    starts = np.arange(len(h))
    row_of = np.searchsorted(bounds, starts, side="right") - 1
    inside = starts + n <= bounds[row_of + 1]
    found = np.isin(h, table) & inside
    hit[np.unique(row_of[found])] = True
    return hit


def _decontaminate(batch: pa.Table, index: list[dict], n: int, fields: list[str]) -> pa.Table:
    cache: dict[str, int] = {}
    reasons: list[str | None] = [None] * batch.num_rows
    for f in fields:
        texts = batch.column(f).to_pylist()
        toks = [words(t) if t else [] for t in texts]
        bounds = np.r_[0, np.cumsum([len(t) for t in toks])]
        ids = word_ids([w for t in toks for w in t], cache)
        for b in index:
            hit = _hits(ids, bounds, n, b["grams"])
            for length, table in b["short"].items():
                hit |= _hits(ids, bounds, length, table)
            for i in np.flatnonzero(hit):
                reasons[i] = reasons[i] or f"contaminated: {b['name']}"
    return mark(batch, reasons)


class Decontaminate:
    name = "decontaminate"

    def __init__(self, cfg: CurateConfig):
        self.cfg = cfg.decontaminate
        if not self.cfg.benchmarks:
            raise ValueError(
                "curate.decontaminate.benchmarks is empty: give [{path: ..., field: ...}] or "
                "take decontaminate out of curate.stages"
            )

    def settings(self) -> dict:
        files = []
        for b in self.cfg.benchmarks:
            st = os.stat(b.path) if os.path.exists(b.path) else None
            files.append([os.path.abspath(b.path), st and st.st_size, st and st.st_mtime_ns])
        return {**to_plain(self.cfg), "files": files}

    def apply(self, ds, ctx):
        c = self.cfg
        index = benchmark_index([to_plain(b) for b in c.benchmarks], c.ngram)
        extra = {
            "benchmarks": {
                b["name"]: int(len(b["grams"]) + sum(len(v) for v in b["short"].values()))
                for b in index
            }
        }
        fields = list(c.fields)
        ds = ds.map_batches(
            _decontaminate,
            fn_kwargs={"index": index, "n": c.ngram, "fields": fields},
            batch_format="pyarrow",
            compute=tasks(ctx.concurrency),
        )
        return ds, extra
