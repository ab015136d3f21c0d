"""The failure loop's retrieval: which vector index, and what embedding costs, on this machine.

    python benchmarks/bench_retrieval.py --corpus 100000 --queries 1000

Side by side in one run, on ``--corpus`` unit vectors (384-d, the size of all-MiniLM-L6-v2's
embeddings) in ``--clusters`` clusters, and ``--queries`` noisy copies of corpus items (each
query's planted neighbour):

* faiss ``IndexFlatIP`` (exact), usearch exact search, usearch HNSW (approximate): build
  seconds, search seconds, queries/s, recall@10 against the exact top 10, and whether the
  planted neighbour comes first;
* the embedding model itself: texts/s encoding ``--texts`` questions with all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def data(n: int, q: int, d: int, clusters: int, seed: int):
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((clusters, d)))
    corpus = unit(centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, d)))
    planted = rng.choice(n, q, replace=False)
    queries = unit(corpus[planted] + 0.04 * rng.standard_normal((q, d)))
    return corpus, queries, planted


def run_faiss(corpus, queries, k):
    import faiss

    t0 = time.perf_counter()
    ix = faiss.IndexFlatIP(corpus.shape[1])
    ix.add(corpus)
    t1 = time.perf_counter()
    _, ids = ix.search(queries, k)
    return ids, t1 - t0, time.perf_counter() - t1


def run_usearch(corpus, queries, k, exact: bool):
    from usearch.index import Index, search

    if exact:
        t0 = time.perf_counter()
        found = search(corpus, queries, k, metric="ip", exact=True)
        return found.keys, 0.0, time.perf_counter() - t0
    t0 = time.perf_counter()
    ix = Index(ndim=corpus.shape[1], metric="ip", dtype="f32")
    ix.add(np.arange(len(corpus)), corpus)
    t1 = time.perf_counter()
    found = ix.search(queries, k)
    return found.keys, t1 - t0, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--corpus", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    print(f"torch threads {torch.get_num_threads()}, corpus {args.corpus} x {args.dim}, "
          f"{args.queries} queries, k={args.k}")  # fmt: skip
    corpus, queries, planted = data(args.corpus, args.queries, args.dim, args.clusters, args.seed)
    ref, _, _ = run_faiss(corpus, queries, args.k)
    rows = []
    for name, fn in (
        ("faiss flat (exact)", lambda: run_faiss(corpus, queries, args.k)),
        ("usearch exact", lambda: run_usearch(corpus, queries, args.k, True)),
        ("usearch hnsw", lambda: run_usearch(corpus, queries, args.k, False)),
    ):
        ids, build, secs = fn()
        recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(ids, ref)])
        first = np.mean(ids[:, 0] == planted)
        rows.append((name, build, secs, args.queries / secs, recall, first))
    print(f"{'index':<20} {'build s':>8} {'search s':>9} {'queries/s':>10} {'recall@10':>10} "
          f"{'planted 1st':>12}")  # fmt: skip
    for name, build, secs, qps, recall, first in rows:
        print(f"{name:<20} {build:>8.2f} {secs:>9.3f} {qps:>10.0f} {recall:>10.4f} {first:>12.3f}")

    from logics_rl.curate.planted import planted_rows
    from logics_rl.failure_loop.retrieval import embed

    texts = [r["question"] for r in planted_rows(args.texts, seed=args.seed)]
    embed(texts[:64])  # load the model
    t0 = time.perf_counter()
    embed(texts)
    secs = time.perf_counter() - t0
    words = np.mean([len(t.split()) for t in texts])
    print(f"all-MiniLM-L6-v2: {len(texts)} questions (~{words:.0f} words) in {secs:.1f} s: "
          f"{len(texts) / secs:.0f} texts/s")  # fmt: skip


if __name__ == "__main__":
    main()
