"""The stratify step: length-stratified sampling on the solution's length in tokens.

``strata`` cut the length distribution at percentiles (``upper_pct``), each with the share of its
rows to keep, e.g. the shortest quarter at 0.2, the middle half at 0.6, the longest quarter
whole. Cut points are the percentiles of this step's input lengths (computed on the driver from
one int column); a row is kept when a hash of its id and ``seed`` falls below its stratum's
share, so the sample is the same on any number of workers and re-runs. The report holds the
cut points and the length histogram before and after (equal-count bins of the input).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from logics_rl.config.loader import to_plain
from logics_rl.config.schema import CurateConfig
from logics_rl.curate.annotate import token_lengths, tokenizer
from logics_rl.curate.rows import mark, tasks


def _with_lengths(batch: pa.Table, tokenizer_path: str | None, field: str) -> pa.Table:
    if field not in batch.column_names:
        raise ValueError(f"curate.stratify.length_field: no column {field!r}")
    lengths = token_lengths(batch.column(field).to_pylist(), tokenizer(tokenizer_path))
    return batch.append_column("_length", pa.array(lengths, pa.int64()))


def uniform(ids: np.ndarray, seed: int) -> np.ndarray:
    """A value in [0, 1) per id, fixed by the id and ``seed``."""
    out = np.empty(len(ids))
    for i, x in enumerate(ids.tolist()):
        d = hashlib.blake2b(f"{seed}:{x}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(d, "big") / 2.0**64
    return out


def cut_points(lengths: np.ndarray, strata: list[dict]) -> list[float]:
    return [float(np.percentile(lengths, s["upper_pct"])) if len(lengths) else 0.0 for s in strata]


def stratum_of(lengths: np.ndarray, cuts: list[float]) -> np.ndarray:
    """Index of the first stratum whose cut point is >= the length (the last one otherwise)."""
    return np.minimum(np.searchsorted(np.asarray(cuts), lengths, side="left"), len(cuts) - 1)


def _sample(batch: pa.Table, cuts: list[float], keep: list[float], seed: int) -> pa.Table:
    lengths = batch.column("_length").to_numpy()
    share = np.asarray(keep)[stratum_of(lengths, cuts)]
    u = uniform(batch.column("id").to_numpy(), seed)
    reasons = [
        None if ok else f"stratify: stratum {j + 1} (keep {share[i]:g})"
        for i, (ok, j) in enumerate(zip(u < share, stratum_of(lengths, cuts)))
    ]
    return mark(batch.drop_columns(["_length"]), reasons)


def histogram(lengths: np.ndarray, edges: np.ndarray) -> list[int]:
    return np.histogram(lengths, bins=edges)[0].tolist() if len(lengths) else []


class Stratify:
    name = "stratify"

    def __init__(self, cfg: CurateConfig):
        self.cfg = cfg.stratify
        self.tokenizer = cfg.annotate.tokenizer
        pcts = [s.upper_pct for s in self.cfg.strata]
        if not pcts or pcts != sorted(pcts) or pcts[-1] != 100.0:
            raise ValueError(
                "curate.stratify.strata: upper_pct must increase and end at 100, got " + str(pcts)
            )
        if any(not 0.0 <= s.keep <= 1.0 for s in self.cfg.strata):
            raise ValueError("curate.stratify.strata: keep must be in [0, 1]")

    def settings(self) -> dict:
        return {**to_plain(self.cfg), "tokenizer": self.tokenizer}

    def apply(self, ds, ctx):
        c = self.cfg
        tok = ctx.model_path(self.tokenizer) if self.tokenizer else None
        ds = ds.map_batches(
            _with_lengths,
            fn_kwargs={"tokenizer_path": tok, "field": c.length_field},
            batch_format="pyarrow",
            compute=tasks(ctx.concurrency),
        ).materialize()
        parts = list(ds.select_columns(["id", "_length"]).iter_batches(batch_format="numpy"))
        ids = np.concatenate([p["id"] for p in parts]) if parts else np.zeros(0, np.int64)
        lengths = np.concatenate([p["_length"] for p in parts]) if parts else np.zeros(0, np.int64)
        strata = [to_plain(s) for s in c.strata]
        cuts = cut_points(lengths, strata)
        keep = [s["keep"] for s in strata]
        marked = ds.map_batches(
            _sample, fn_kwargs={"cuts": cuts, "keep": keep, "seed": c.seed}, batch_format="pyarrow"
        )
        chosen = uniform(ids, c.seed) < np.asarray(keep)[stratum_of(lengths, cuts)]
        after = lengths[chosen]
        edges = (
            np.unique(np.percentile(lengths, np.linspace(0, 100, c.bins + 1)))
            if len(lengths)
            else np.zeros(0)
        )
        extra = {
            "cut_points": cuts,
            "histogram_edges": edges.tolist(),
            "histogram_before": histogram(lengths, edges),
            "histogram_after": histogram(after, edges),
        }
        return marked, extra
