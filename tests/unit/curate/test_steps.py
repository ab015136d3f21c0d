"""The curation steps' pure parts, against hand-computed values (no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from logics_rl.curate import annotate, decontaminate, dedup, generate, rows, stratify, text


def test_normalize_makes_cosmetic_variants_equal():
    a = r"What is $\frac{1}{2}\,x$  when   X = 3?"
    b = r"what is \(\frac{1}{2} x\) when x = 3?"
    assert text.normalize(a) == text.normalize(b)
    assert text.exact_key(a) == text.exact_key(b)
    assert text.words("x+1 = 2y") == ["x", "+", "1", "=", "2y"]
    assert text.shingles("a b c d e f", 5) == {"a b c d e", "b c d e f"}
    assert text.shingles("a b", 5) == {"a b"}


@pytest.mark.parametrize(
    "answer, kind",
    [
        ("42", "integer"),
        ("-1,000", "integer"),
        ("3.5", "number"),
        ("\\frac{1}{2}", "number"),
        ("2/3", "number"),
        ("(B)", "choice"),
        ("[0, 1)", "interval"),
        ("\\{1, 2\\}", "set"),
        ("x^2 + 1", "expression"),
        ("\\sqrt{2}", "expression"),
        ("Paris", "text"),
        ("", "none"),
        (None, "none"),
        ("\\boxed{7}", "integer"),
    ],
)
def test_answer_type(answer, kind):
    assert annotate.answer_type(answer) == kind


def test_verifiable_uses_math_verify_in_its_pool():
    got = annotate.verifiable(["\\frac{1}{2}", "", None, "x^2+1"], workers=1, timeout_s=10)
    assert got == [True, False, False, True]


def test_filters_drop_with_the_first_failing_reason():
    t = pa.table({"verifiable": [True, False, True], "question_tokens": [5, 5, 50]})
    fs = [
        {"field": "verifiable", "op": "==", "value": True},
        {"field": "question_tokens", "op": "<=", "value": 10},
    ]
    out = annotate.apply_filters(t, fs)
    assert out.column(rows.DROP).to_pylist() == [
        None,
        "filter: verifiable == True",
        "filter: question_tokens <= 10",
    ]
    with pytest.raises(ValueError, match="no column 'nope'"):
        annotate.apply_filters(t, [{"field": "nope", "op": "==", "value": 1}])


def test_lsh_params_put_the_s_curve_midpoint_near_the_threshold():
    for t in (0.5, 0.7, 0.8):
        b, r = dedup.lsh_params(t, 128)
        assert b * r <= 128
        # the S-curve's steepest point (1/b)^(1/r) lies near the threshold
        assert abs((1 / b) ** (1 / r) - t) < 0.1


def _batch(ids, solutions, sources=None):
    n = len(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "solution": pa.array(solutions, pa.string()),
            "source": pa.array(sources or ["s"] * n, pa.string()),
        }
    )


def test_rank_keys_order_rows_by_the_keep_rule():
    b = _batch([0, 1, 2], ["aa", "aaaa", None], ["x", "y", "x"])
    longest = dedup.rank_keys(b, "longest_solution", [])
    assert np.argsort(longest).tolist() == [1, 0, 2]
    assert (longest & 0xFFFFFFFF).tolist() == [0, 1, 2]
    assert np.argsort(dedup.rank_keys(b, "shortest_solution", [])).tolist() == [2, 0, 1]
    assert np.argsort(dedup.rank_keys(b, "first", [])).tolist() == [0, 1, 2]
    # a preferred source wins before length
    assert np.argsort(dedup.rank_keys(b, "longest_solution", ["x"])).tolist() == [0, 2, 1]


def test_equal_bands_share_buckets_and_different_bands_do_not():
    sig = np.array([[1, 2, 3, 4], [1, 2, 9, 9], [5, 6, 3, 4]], np.uint32)
    bk = dedup.band_buckets(sig, bands=2, rows=2)
    assert bk[0, 0] == bk[1, 0] and bk[0, 1] == bk[2, 1]
    assert bk[0, 0] != bk[2, 0] and bk[0, 1] != bk[1, 1]
    assert bk[0, 0] != bk[0, 1]  # the band index is part of the hash


def test_star_edges_link_each_bucket_to_its_smallest_key():
    out = dedup.star_edges(
        {"bucket": np.array([7, 7, 7, 8, 9, 9]), "key": np.array([30, 10, 20, 5, 6, 6])}
    )
    assert sorted(zip(out["u"].tolist(), out["v"].tolist())) == [(10, 20), (10, 30)]
    assert out["exact"].tolist() == [True, True]  # odd buckets are exact-hash buckets


def test_star_rounds_on_a_chain():
    # edges 1-2, 2-3 (both directions): large-star links 3 to min(N(2) + 2) = 1
    ways = dedup.both_ways({"u": np.array([1, 2]), "v": np.array([2, 3])})
    large = dedup.star_round(ways, large=True)
    assert sorted(zip(large["u"].tolist(), large["v"].tolist())) == [(2, 1), (3, 1)]
    assert dedup.is_star_forest(np.array([[2, 1], [3, 1]]))
    assert not dedup.is_star_forest(np.array([[2, 1], [3, 2]]))


def test_cluster_ids_name_the_kept_row():
    stars = np.array([[(1 << 32) | 5, 3], [(2 << 32) | 6, 3]])  # keys of ids 5, 6 -> key 3
    keys = np.array([3, (1 << 32) | 5, (2 << 32) | 6, 9])
    assert dedup.cluster_ids(keys, stars) == [3, 3, 3, None]


def test_window_hashes_match_a_direct_polynomial():
    ids = np.array([3, 1, 4, 1, 5], np.uint64)
    p = int(text._P)
    want = [
        (3 * p * p + 1 * p + 4) % 2**64,
        (1 * p * p + 4 * p + 1) % 2**64,
        (4 * p * p + p + 5) % 2**64,
    ]
    assert text.window_hashes(ids, 3).tolist() == want


def test_decontamination_ignores_windows_across_rows_and_matches_short_texts_whole():
    bench = [{"text": "alpha beta gamma delta"}, {"text": "one two"}]
    import json
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "b.jsonl")
        with open(path, "w") as fh:
            fh.writelines(json.dumps(b) + "\n" for b in bench)
        index = decontaminate.benchmark_index([{"path": path, "field": "text", "name": "B"}], 3)
    t = pa.table(
        {
            "question": [
                "say alpha beta gamma now",  # a 3-gram of the first text
                "alpha beta",  # only across the boundary with the next row
                "gamma is here",
                "count one two three",  # the short text, whole
                "one three two",
            ]
        }
    )
    out = decontaminate._decontaminate(t, index, 3, ["question"])
    assert out.column(rows.DROP).to_pylist() == [
        "contaminated: B",
        None,
        None,
        "contaminated: B",
        None,
    ]


def test_stratify_cut_points_and_strata():
    lengths = np.arange(1, 101)
    strata = [{"upper_pct": 25.0, "keep": 0.1}, {"upper_pct": 100.0, "keep": 1.0}]
    cuts = stratify.cut_points(lengths, strata)
    assert cuts == [25.75, 100.0]
    assert stratify.stratum_of(np.array([1, 25, 26, 100]), cuts).tolist() == [0, 0, 1, 1]
    u = stratify.uniform(np.arange(20000), seed=0)
    assert 0.49 < u.mean() < 0.51 and (u == stratify.uniform(np.arange(20000), 0)).all()


def test_parse_reply_takes_the_first_object_with_every_key_typed():
    fields = {"difficulty": "int", "topic": "str"}
    assert generate.parse_reply('ok {"difficulty": 3, "topic": "algebra"} done', fields) == {
        "difficulty": 3,
        "topic": "algebra",
    }
    assert generate.parse_reply('{"difficulty": "3", "topic": "x"}', fields) is None
    assert generate.parse_reply('{"difficulty": 2} {"difficulty": 4, "topic": "t"}', fields) == {
        "difficulty": 4,
        "topic": "t",
    }
    assert generate.parse_reply("no json here", fields) is None


def test_choose_keeps_first_shortest_or_all_correct():
    texts = ["long answer 1", "a 1", "wrong", "mid 1"]
    correct = [1.0, 1.0, 0.0, 1.0]
    assert generate.choose(texts, correct, "first") == [0]
    assert generate.choose(texts, correct, "shortest") == [1]
    assert generate.choose(texts, correct, "all") == [0, 1, 3]
    assert generate.choose(texts, [0.0] * 4, "shortest") == []


def test_rows_conform_mark_and_fill():
    t = pa.table({"id": [1, 2], "answer": pa.array([None, None], pa.null())})
    t = rows.conform(t)
    assert t.schema.field("answer").type == pa.string()
    assert t.column(rows.DROP).to_pylist() == [None, None]
    t = rows.mark(rows.mark(t, ["first", None]), ["second", "later"])
    assert t.column(rows.DROP).to_pylist() == ["first", "later"]
    assert rows.fill(r"{question} \boxed{}", {"question": "Q"}) == r"Q \boxed{}"


def test_verify_edges_by_exact_jaccard():
    import numpy as np

    from logics_rl.curate.dedup import verify_edges

    sets = {
        1: np.array([1, 2, 3, 4], np.uint64),
        2: np.array([1, 2, 3, 5], np.uint64),  # 3 of 5: 0.6
        3: np.array([1, 2, 3, 4, 9], np.uint64),  # 4 of 5: 0.8
    }
    est, ok = verify_edges(np.array([[2, 1], [3, 1], [3, 2]]), sets, 0.7)
    assert est.tolist() == [0.6, 0.8, 0.5] and ok.tolist() == [False, True, False]
