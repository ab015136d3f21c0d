"""The dedup step: exact and near-duplicate questions, one row kept per cluster.

1. **Rank.** Every row gets a 63-bit key ``rank << 32 | id``: ``rank`` orders the rows of a
   cluster by the keep rule (preferred source first, then the longest / shortest solution, or
   input order), so the smallest key of a cluster is the row it keeps, and ties fall to the
   earlier row.
2. **Buckets.** Each row lands in the bucket of its normalised question's hash (``exact``;
   ``text.normalize``: case, whitespace, LaTeX spacing, math delimiters) and in one bucket per
   MinHash band (``near``): signatures of the question's word shingles (the ``rensa`` library,
   about 18x faster than ``datasketch``'s bulk API here) cut into ``bands`` x ``rows``, chosen
   from ``threshold`` when not given (the pair minimising the false-positive plus
   false-negative area of the LSH S-curve). Each bucket becomes a star of edges to its
   smallest key. A MinHash edge is kept only when the two questions' shingle sets have a
   Jaccard similarity of at least ``threshold`` (computed exactly for the rows on candidate
   edges): band collisions of dissimilar rows are rare per pair but many over all pairs, and a
   signature's estimate is noisy near the threshold; on short templated questions ("Compute
   61-48.") either would chain unrelated rows into one component.
3. **Components.** Connected components of that graph by alternating large-star / small-star
   rounds (Kiveris et al., "Connected Components in MapReduce and Beyond", 2014) until every
   edge joins a row to the smallest key of its component; every other row of a component is
   removed: as an ``exact duplicate`` when a row with a smaller key has the same normalised
   question, else as a ``near duplicate``. The column ``dup_cluster`` holds the id of the row
   each component kept (null for rows without duplicates), so clusters can be inspected.

Every grouping is a Ray Data hash shuffle (``repartition(keys=...)``) followed by vectorised
numpy on each partition, so buckets and components are computed by the cluster, not the driver;
the driver holds the duplicate edges between rounds (16 bytes per removed row) to detect that
the rounds converged. The result does not depend on how many workers or partitions run it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyarrow as pa

from logics_rl.config.loader import to_plain
from logics_rl.config.schema import CurateConfig
from logics_rl.curate.rows import mark, tasks
from logics_rl.curate.text import exact_key, normalize, shingle_hashes

_RANK_BITS = 31
_LEN_BITS = 28
_MULT = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xBF58476D1CE4E5B9)


def lsh_params(threshold: float, num_perm: int, fp_weight: float = 0.5) -> tuple[int, int]:
    """``(bands, rows)`` with ``bands * rows <= num_perm`` minimising the weighted area under
    the S-curve ``1 - (1 - s**rows)**bands`` below ``threshold`` (false positives) and above
    it (false negatives)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"curate.dedup.threshold must be in (0, 1), got {threshold}")
    best, best_err = (1, 1), math.inf
    lo, hi = np.linspace(0.0, threshold, 200), np.linspace(threshold, 1.0, 200)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(1 - (1 - lo**r) ** b, lo)
            fn = np.trapezoid((1 - hi**r) ** b, hi)
            err = fp_weight * fp + (1 - fp_weight) * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


def rank_keys(batch: pa.Table, keep: str, prefer: list[str]) -> np.ndarray:
    """``rank << 32 | id`` per row (smaller = kept first)."""
    ids = batch.column("id").to_numpy().astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 32):
        raise ValueError("row ids must be in [0, 2**32)")
    sources = batch.column("source").to_pylist()
    order = {s: i for i, s in enumerate(prefer[:7])}
    src_rank = np.array([order.get(s, 7) for s in sources], dtype=np.int64)
    lengths = np.array(
        [len(s) if s else 0 for s in batch.column("solution").to_pylist()], dtype=np.int64
    )
    lengths = np.minimum(lengths, (1 << _LEN_BITS) - 1)
    if keep == "longest_solution":
        pen = (1 << _LEN_BITS) - 1 - lengths
    elif keep == "shortest_solution":
        pen = lengths
    else:
        pen = np.zeros_like(lengths)
    rank = (src_rank << _LEN_BITS) | pen
    return (rank << 32) | ids


def band_buckets(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``[n, bands]`` int64 bucket ids: a hash of each band's ``rows`` values and its index."""
    sig = sig.astype(np.uint64)
    out = np.empty((sig.shape[0], bands), dtype=np.int64)
    for j in range(bands):
        h = np.full(sig.shape[0], ((j + 1) * int(_MIX)) % (1 << 64), dtype=np.uint64)
        for c in range(j * rows, (j + 1) * rows):
            with np.errstate(over="ignore"):
                h = (h ^ sig[:, c]) * _MULT
        out[:, j] = (h >> np.uint64(1)).astype(np.int64)
    return out


def star_edges(batch: dict) -> dict:
    """Rows sharing a ``bucket`` -> edges from each to the bucket's smallest ``key``; ``exact``
    marks edges of exact-hash buckets (odd bucket ids)."""
    bucket, key = batch["bucket"], batch["key"]
    o = np.lexsort((key, bucket))
    bucket, key = bucket[o], key[o]
    start = np.r_[True, bucket[1:] != bucket[:-1]] if len(bucket) else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(start, np.arange(len(key)), 0))
    u, v, b = key[first][~start], key[~start], bucket[~start]
    keep = u != v
    return {"u": u[keep], "v": v[keep], "exact": (b[keep] & 1) == 1}


def both_ways(batch: dict) -> dict:
    return {
        "a": np.concatenate([batch["u"], batch["v"]]),
        "b": np.concatenate([batch["v"], batch["u"]]),
    }


def star_round(batch: dict, large: bool) -> dict:
    """One large-star (``large``) or small-star step on the edges of whole neighbourhoods.

    For a node ``a`` with neighbours ``N`` and ``m = min(N + [a])``: large-star links every
    neighbour larger than ``a`` to ``m``; small-star links every neighbour smaller than ``a``,
    and ``a`` itself, to ``m``."""
    a, b = batch["a"], batch["b"]
    if len(a) == 0:
        return {"u": a, "v": b}
    o = np.lexsort((b, a))
    a, b = a[o], b[o]
    start = np.r_[True, a[1:] != a[:-1]]
    idx = np.flatnonzero(start)
    m = np.minimum(a[idx], b[idx])  # b is sorted within a group: b[idx] is the group's min
    m_row = np.repeat(m, np.diff(np.r_[idx, len(a)]))
    if large:
        sel = b > a
        u, v = b[sel], m_row[sel]
    else:
        sel = b < a
        u, v = np.concatenate([b[sel], a[idx]]), np.concatenate([m_row[sel], m])
    keep = u != v
    u, v = u[keep], v[keep]
    pairs = np.unique(np.stack([np.maximum(u, v), np.minimum(u, v)], axis=1), axis=0)
    return {"u": pairs[:, 0], "v": pairs[:, 1]}


def _collect(ds) -> tuple[np.ndarray, np.ndarray]:
    """All ``(u, v)`` edges of ``ds`` and their ``exact`` flags (False when absent)."""
    parts = list(ds.iter_batches(batch_format="numpy", batch_size=None))
    if not parts:
        return np.zeros((0, 2), np.int64), np.zeros(0, bool)
    pairs = np.stack(
        [np.concatenate([p["u"] for p in parts]), np.concatenate([p["v"] for p in parts])], 1
    )
    flags = [p["exact"] if "exact" in p else np.zeros(len(p["u"]), bool) for p in parts]
    return pairs.astype(np.int64), np.concatenate(flags)


def is_star_forest(pairs: np.ndarray) -> bool:
    """Whether canonical ``(larger, smaller)`` edges already join every row to the smallest key
    of its component: each larger end has one edge and no smaller end is a larger end."""
    hi, lo = pairs[:, 0], pairs[:, 1]
    return len(np.unique(hi)) == len(hi) and not np.isin(lo, hi).any()


def _grouped(ds, key: str, fn, partitions: int, concurrency, **kwargs):
    return ds.repartition(partitions, keys=[key]).map_batches(
        fn, fn_kwargs=kwargs, batch_size=None, batch_format="numpy", compute=tasks(concurrency)
    )


def components(
    pairs: np.ndarray, partitions: int, concurrency, max_rounds: int
) -> tuple[np.ndarray, int]:
    """The connected components of the edges ``pairs`` as ``(key, smallest key of its
    component)`` rows sorted by key, for every key that is not the smallest; and the rounds it
    took (0 when the candidate edges already form stars around each component's smallest key)."""
    import ray.data

    current = _canonical(pairs)
    for rounds in range(max_rounds + 1):
        if is_star_forest(current):
            return current, rounds
        if rounds == max_rounds:
            break
        ds = ray.data.from_arrow(pa.table({"u": current[:, 0], "v": current[:, 1]}))
        ds = ds.map_batches(both_ways, batch_format="numpy")
        ds = _grouped(ds, "a", star_round, partitions, concurrency, large=True)
        ds = ds.map_batches(both_ways, batch_format="numpy")
        ds = _grouped(ds, "a", star_round, partitions, concurrency, large=False)
        current = _canonical(_collect(ds)[0])
    raise RuntimeError(
        f"curate.dedup: connected components did not converge in {max_rounds} rounds "
        "(raise curate.dedup.max_rounds)"
    )


def _canonical(pairs: np.ndarray) -> np.ndarray:
    """Edges as sorted unique ``(larger, smaller)`` rows."""
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int64)
    hi, lo = np.maximum(pairs[:, 0], pairs[:, 1]), np.minimum(pairs[:, 0], pairs[:, 1])
    return np.unique(np.stack([hi, lo], 1), axis=0)


def _signatures(questions: list[str], cfg: dict) -> np.ndarray:
    """``[n, num_perm]`` uint32 MinHash signatures of the normalised questions' word shingles."""
    import rensa

    flat, offsets = shingle_hashes(questions, cfg["shingle_size"], {}, normalized=True)
    mat = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
        flat, offsets.astype(np.uint64), cfg["num_perm"], cfg["seed"]
    )
    return np.fromiter(
        itertools.chain.from_iterable(mat.to_rows()),
        np.uint32,
        count=len(questions) * cfg["num_perm"],
    ).reshape(len(questions), cfg["num_perm"])


def _records(batch: pa.Table, keep: str, prefer: list[str], cfg: dict) -> dict:
    """``(bucket, key)`` per row and bucket: the exact-hash bucket (odd ids) and the MinHash
    band buckets (even ids)."""
    keys = rank_keys(batch, keep, prefer)
    questions = [normalize(q) for q in batch.column("question").to_pylist()]
    buckets, owners = [], []
    if cfg["exact"]:
        buckets.append(np.array([exact_key(q, normalized=True) for q in questions], np.int64) | 1)
        owners.append(keys)
    if cfg["near"] and len(keys):
        sig = _signatures(questions, cfg)
        bands = band_buckets(sig, cfg["bands"], cfg["rows"]) & ~1
        buckets.append(bands.reshape(-1))
        owners.append(np.repeat(keys, cfg["bands"]))
    if not buckets:
        return {"bucket": np.zeros(0, np.int64), "key": np.zeros(0, np.int64)}
    return {"bucket": np.concatenate(buckets), "key": np.concatenate(owners)}


def _wanted_shingles(
    batch: pa.Table, keep: str, prefer: list[str], cfg: dict, wanted: np.ndarray
) -> pa.Table:
    """``(key, shingles)`` of the rows whose key is in the sorted array ``wanted``: each row's
    distinct hashed word shingles, sorted."""
    keys = rank_keys(batch, keep, prefer)
    hit = np.isin(keys, wanted)
    questions = [normalize(q) for q, h in zip(batch.column("question").to_pylist(), hit) if h]
    flat, offsets = shingle_hashes(questions, cfg["shingle_size"], {}, normalized=True)
    sets = [np.unique(flat[offsets[i] : offsets[i + 1]]) for i in range(len(questions))]
    return pa.table(
        {"key": pa.array(keys[hit], pa.int64()), "shingles": pa.array(sets, pa.list_(pa.uint64()))}
    )


def verify_edges(
    pairs: np.ndarray, shingles: dict[int, np.ndarray], threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate edge, the Jaccard similarity of its two rows' shingle sets (sorted unique
    hashes by key), and whether it reaches ``threshold``."""
    est = np.empty(len(pairs), np.float64)
    for i, (u, v) in enumerate(pairs):
        a, b = shingles[int(u)], shingles[int(v)]
        inter = len(np.intersect1d(a, b, assume_unique=True))
        est[i] = inter / (len(a) + len(b) - inter) if len(a) + len(b) else 1.0
    return est, est >= threshold


def cluster_ids(keys: np.ndarray, stars: np.ndarray) -> list[int | None]:
    """Per key, the id of the row its component keeps (None for a row without duplicates)."""
    label = np.full(len(keys), -1, np.int64)
    if len(stars):
        pos = np.searchsorted(stars[:, 0], keys).clip(0, len(stars) - 1)
        leaf = stars[pos, 0] == keys
        label[leaf] = stars[pos[leaf], 1]
        centre = np.isin(keys, stars[:, 1])
        label[centre] = keys[centre]
    ids = label & 0xFFFFFFFF
    return [int(i) if lab >= 0 else None for i, lab in zip(ids, label)]


def _mark(
    batch: pa.Table,
    keep: str,
    prefer: list[str],
    exact: np.ndarray,
    near: np.ndarray,
    stars: np.ndarray,
    threshold: float,
) -> pa.Table:
    keys = rank_keys(batch, keep, prefer)
    batch = batch.append_column("dup_cluster", pa.array(cluster_ids(keys, stars), pa.int64()))
    is_exact, is_near = np.isin(keys, exact), np.isin(keys, near)
    reasons = [
        "exact duplicate" if e else (f"near duplicate (jaccard >= {threshold:g})" if n else None)
        for e, n in zip(is_exact, is_near)
    ]
    return mark(batch, reasons)


class Dedup:
    name = "dedup"

    def __init__(self, cfg: CurateConfig):
        self.cfg = cfg.dedup
        c = self.cfg
        if c.bands is None or c.rows is None:
            self.bands, self.rows = lsh_params(c.threshold, c.num_perm)
        else:
            self.bands, self.rows = c.bands, c.rows
        if self.bands * self.rows > c.num_perm:
            raise ValueError(
                f"curate.dedup: bands x rows = {self.bands * self.rows} > num_perm {c.num_perm}"
            )

    def settings(self) -> dict:
        import rensa

        return {
            **to_plain(self.cfg),
            "bands": self.bands,
            "rows": self.rows,
            "rensa": rensa.RMinHash.ALGORITHM_VERSION,
        }

    def _verified(self, ds, pairs, exact, common, opts, conc):
        """The candidate edges whose two questions' shingle sets have a Jaccard similarity of
        at least the threshold (exact-hash edges stand as they are); and how many were
        rejected. Band collisions of dissimilar rows are rare per pair but many over all pairs,
        and a signature's estimate is noisy near the threshold (+-0.04 at 128 permutations):
        on short templated questions either would chain unrelated rows into one component."""
        near = ~exact
        if not near.any():
            return pairs, exact, 0
        wanted = np.unique(pairs[near])
        got = ds.map_batches(
            _wanted_shingles,
            fn_kwargs={**common, "cfg": opts, "wanted": wanted},
            batch_format="pyarrow",
            compute=tasks(conc),
        )
        sets: dict[int, np.ndarray] = {}
        for t in got.iter_batches(batch_format="pyarrow", batch_size=None):
            for key, sh in zip(t.column("key").to_numpy(), t.column("shingles").to_pylist()):
                sets[int(key)] = np.asarray(sh, np.uint64)
        _, ok = verify_edges(pairs[near], sets, self.cfg.threshold)
        keep = exact.copy()
        keep[np.flatnonzero(near)[ok]] = True
        rejected = int(len(_canonical(pairs[near][~ok])))
        return pairs[keep], exact[keep], rejected

    def apply(self, ds, ctx):
        c = self.cfg
        common = {"keep": str(c.keep), "prefer": list(c.prefer_sources)}
        conc, parts = ctx.concurrency, ctx.partitions
        opts = {
            "exact": c.exact,
            "near": c.near,
            "shingle_size": c.shingle_size,
            "num_perm": c.num_perm,
            "seed": c.seed,
            "bands": self.bands,
            "rows": self.rows,
        }
        ds = ds.materialize()
        recs = ds.map_batches(
            _records, fn_kwargs={**common, "cfg": opts}, batch_format="pyarrow", compute=tasks(conc)
        )
        pairs, exact = _collect(_grouped(recs, "bucket", star_edges, parts, conc))
        candidates = int(len(_canonical(pairs)))
        pairs, exact, rejected = self._verified(ds, pairs, exact, common, opts, conc)
        exact_leaves = np.unique(pairs[exact][:, 1]) if len(pairs) else np.zeros(0, np.int64)
        stars, rounds = components(pairs, parts, conc, c.max_rounds)
        removed = stars[:, 0]
        near = np.setdiff1d(removed, exact_leaves)
        exact_removed = np.intersect1d(removed, exact_leaves)
        marked = ds.map_batches(
            _mark,
            fn_kwargs={
                **common,
                "exact": exact_removed,
                "near": near,
                "stars": stars,
                "threshold": c.threshold,
            },
            batch_format="pyarrow",
            compute=tasks(conc),
        )
        extra = {
            "bands": self.bands,
            "rows": self.rows,
            "candidate_edges": candidates,
            "rejected_edges": rejected,
            "component_rounds": rounds,
        }
        return marked, extra
