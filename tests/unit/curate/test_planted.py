"""The planted-duplicates generator: determinism, its ground truth and the dedup scores."""

from __future__ import annotations

import statistics
from collections import defaultdict

import pytest

from logics_rl.curate import text
from logics_rl.curate.planted import benchmark_rows, dedup_scores, planted_rows

LEVELS = (0.9, 0.8, 0.7, 0.5)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return list(planted_rows(4000, seed=7))


def test_deterministic_per_seed():
    a = list(planted_rows(1500, seed=3))
    assert a == list(planted_rows(1500, seed=3))
    b = list(planted_rows(1500, seed=4))
    assert [r["question"] for r in a] != [r["question"] for r in b]


@pytest.mark.parametrize("n", [0, 1, 2, 17, 1000])
def test_exact_count_and_uids(n):
    out = list(planted_rows(n, seed=1))
    assert len(out) == n
    assert [r["uid"] for r in out] == list(range(n))


def test_streams_lazily():
    it = planted_rows(10**12, seed=0, reservoir=8)  # nothing is built up front
    first = [next(it) for _ in range(200)]
    assert [r["uid"] for r in first] == list(range(200))
    # a reservoir of 8 originals is enough to draw copies from
    assert {r["kind"] for r in first} == {"original", "exact", "near"}


def test_fields_and_kinds(rows):
    fields = {
        "uid",
        "question",
        "answer",
        "solution",
        "source",
        "cluster",
        "kind",
        "level",
        "jaccard",
        "contaminated",
    }
    assert all(set(r) == fields for r in rows)
    kinds = defaultdict(int)
    for r in rows:
        kinds[r["kind"]] += 1
    assert abs(kinds["exact"] / len(rows) - 0.05) < 0.02
    assert abs(kinds["near"] / len(rows) - 0.10) < 0.03
    for r in rows:
        assert isinstance(r["answer"], str)
        n_words = len(r["solution"].split())
        assert 20 <= n_words <= 410
        assert r["solution"].endswith(f"\\boxed{{{r['answer']}}}$.")
        assert not r["contaminated"]
    originals = [r for r in rows if r["kind"] == "original"]
    assert all(25 <= len(r["question"].split()) <= 60 for r in originals)


def test_copies_come_after_their_original(rows):
    for r in rows:
        if r["kind"] == "original":
            assert r["cluster"] == r["uid"]
            assert r["jaccard"] == r["level"] == 1.0
        else:
            orig = rows[r["cluster"]]
            assert r["cluster"] < r["uid"]
            assert orig["kind"] == "original"
            assert r["answer"] == orig["answer"]


def test_exact_copies_differ_only_cosmetically(rows):
    exact = [r for r in rows if r["kind"] == "exact"]
    assert exact
    for r in exact:
        orig = rows[r["cluster"]]
        assert r["question"] != orig["question"]
        assert text.normalize(r["question"]) == text.normalize(orig["question"])
        assert text.exact_key(r["question"]) == text.exact_key(orig["question"])
        assert r["jaccard"] == 1.0
    assert sum(len(r["solution"]) != len(rows[r["cluster"]]["solution"]) for r in exact) == len(
        exact
    )


def test_near_copies_hit_their_levels(rows):
    by_level = defaultdict(list)
    for r in rows:
        if r["kind"] != "near":
            continue
        orig = rows[r["cluster"]]
        measured = text.jaccard(text.shingles(r["question"], 5), text.shingles(orig["question"], 5))
        assert r["jaccard"] == pytest.approx(measured)
        assert r["jaccard"] < 1.0
        by_level[r["level"]].append(r["jaccard"])
    assert sorted(by_level) == sorted(LEVELS)
    counts = [len(v) for v in by_level.values()]
    assert max(counts) - min(counts) <= 1  # levels taken in turn
    for level, values in by_level.items():
        assert abs(statistics.mean(values) - level) < 0.1
        assert all(abs(v - level) < 0.1 for v in values)


def test_other_levels_and_shingle_size():
    out = list(planted_rows(1500, seed=2, near_fraction=0.3, jaccard_levels=(0.6,), shingle_size=3))
    near = [r for r in out if r["kind"] == "near"]
    assert near and all(r["level"] == 0.6 for r in near)
    assert abs(statistics.mean(r["jaccard"] for r in near) - 0.6) < 0.05


def test_originals_share_no_shingle(rows):
    owner: dict[str, int] = {}
    originals = [r for r in rows if r["kind"] == "original"][:400]
    for r in originals:
        for sh in text.shingles(r["question"], 5):
            assert owner.setdefault(sh, r["uid"]) == r["uid"], (sh, owner[sh], r["uid"])


def test_bad_arguments():
    with pytest.raises(ValueError):
        list(planted_rows(10, exact_fraction=0.7, near_fraction=0.5))
    with pytest.raises(ValueError):
        list(planted_rows(10, jaccard_levels=()))
    with pytest.raises(ValueError):
        list(planted_rows(10, benchmark=benchmark_rows([], 3), contaminate=4))


# --------------------------------------------------------------------------- dedup_scores
def _row(uid, kind, cluster, jaccard=1.0, level=1.0):
    return {"uid": uid, "kind": kind, "cluster": cluster, "jaccard": jaccard, "level": level}


HAND = [
    _row(0, "original", 0),
    _row(1, "exact", 0),
    _row(2, "near", 0, 0.85, 0.9),
    _row(3, "original", 3),
    _row(4, "near", 3, 0.5, 0.5),
    _row(5, "original", 5),
]


def test_dedup_scores_perfect():
    kept = [r for r in HAND if r["uid"] in (0, 3, 4, 5)]
    s = dedup_scores(kept, HAND, threshold=0.7)
    assert (s["rows"], s["kept"], s["removed"], s["targets"]) == (6, 4, 2, 2)
    assert s["recall"] == 1.0 and s["precision"] == 1.0
    assert s["survivors_per_cluster_max"] == 1
    assert s["clusters_checked"] == 1  # cluster 3 has a copy below the threshold
    assert s["clusters_emptied"] == 0 and s["originals_removed"] == 0
    assert s["by_kind"]["exact"] == {"rows": 1, "removed": 1, "recall": 1.0}
    assert s["by_level"][0.9]["recall"] == 1.0 and s["by_level"][0.5]["recall"] == 0.0
    assert s["by_level"][0.9]["jaccard_mean"] == pytest.approx(0.85)
    assert s["recall_any_survivor"] == 1.0 and s["precision_any_member"] == 1.0


def test_dedup_scores_partial():
    s = dedup_scores([0, 1, 3, 5], HAND, threshold=0.7)  # plain uids work too
    assert s["removed"] == 2
    assert s["recall"] == 0.5  # the near copy went, the exact one stayed
    assert s["precision"] == 1.0  # the 0.5 copy is a planted duplicate too
    assert s["survivors_per_cluster_max"] == 2
    assert s["by_level"][0.5]["removed"] == 1
    # a lower threshold makes the 0.5 copy a target and checks its cluster
    s = dedup_scores([0, 1, 3, 5], HAND, threshold=0.5)
    assert s["targets"] == 3 and s["recall"] == pytest.approx(2 / 3)
    assert s["clusters_checked"] == 2


def test_dedup_scores_wrong_rows():
    s = dedup_scores([1, 2, 3, 4], HAND, threshold=0.7)
    assert s["removed"] == 2 and s["recall"] == 0.0 and s["precision"] == 0.0
    assert s["originals_removed"] == 2
    assert s["clusters_emptied"] == 1  # cluster 5, a lone original
    assert s["survivors_per_cluster_max"] == 2
    # cluster-level: the original of cluster 0 went and its copies stayed, so one of its two
    # targets is credited; the lone original 5 is a wrong removal
    assert s["recall_any_survivor"] == 0.5 and s["precision_any_member"] == 0.5
    assert dedup_scores(HAND, HAND, 0.7)["precision"] == 1.0  # nothing removed


def test_dedup_scores_keeping_a_copy():
    s = dedup_scores([2, 3, 4, 5], HAND, threshold=0.7)  # original 0 and exact 1 went, 2 stayed
    assert s["recall"] == 0.5 and s["precision"] == 0.5
    assert s["recall_any_survivor"] == 1.0 and s["precision_any_member"] == 1.0
    assert s["survivors_per_cluster_max"] == 1 and s["clusters_emptied"] == 0


def test_dedup_scores_on_planted(rows):
    # keep the first row of each exact-normalised question: exact copies go, nothing else
    seen, kept = set(), []
    for r in rows:
        key = text.exact_key(r["question"])
        if key not in seen:
            seen.add(key)
            kept.append(r)
    s = dedup_scores(kept, rows, threshold=0.8)
    assert s["by_kind"]["exact"]["recall"] == 1.0
    assert s["precision"] == 1.0
    n_exact = s["by_kind"]["exact"]["rows"]
    assert s["recall"] == pytest.approx(n_exact / s["targets"])


# --------------------------------------------------------------------------- contamination
def _grams(t: str) -> set[tuple[str, ...]]:
    w = text.words(t)
    return {tuple(w[i : i + 13]) for i in range(len(w) - 12)}


def test_contamination_ground_truth_is_exact():
    kw = {"seed": 5, "exact_fraction": 0.2, "near_fraction": 0.3, "reservoir": 40}
    plain = list(planted_rows(2000, **kw))
    originals = [r for r in plain if r["kind"] == "original"][:20]
    bench = benchmark_rows(originals, 36, seed=1)
    assert len(bench) == 36 and [b["uid"] for b in bench] == list(range(36))
    copies = [b for b in bench if b["train_question"] is not None]
    assert len(copies) == 18
    for b in copies:
        train = plain[b["train_uid"]]
        assert b["train_question"] == train["question"] and b["answer"] == train["answer"]
        assert _grams(b["problem"]) & _grams(train["question"])
    fresh = [b for b in bench if b["train_question"] is None]
    assert all(30 <= len(b["problem"].split()) <= 60 for b in fresh)

    rows = list(planted_rows(2000, **kw, benchmark=bench, contaminate=12))
    assert len(rows) == 2000 and [r["uid"] for r in rows] == list(range(2000))
    bench_grams = set().union(*(_grams(b["problem"]) for b in bench))
    for r in rows:  # brute force: every row against the whole benchmark
        assert r["contaminated"] == bool(_grams(r["question"]) & bench_grams), r
    dirty = [r for r in rows if r["contaminated"]]
    assert {r["kind"] for r in dirty} == {"original", "exact", "near"}
    assert len(dirty) > 12 + 18
    # the inserted rows are new, contaminated originals; the others are the plain stream, in order
    plain_q = [r["question"] for r in plain]
    known = set(plain_q)
    inserted = [r for r in rows if r["question"] not in known]
    assert len(inserted) == 12
    assert all(r["contaminated"] and r["kind"] == "original" for r in inserted)
    assert [r["question"] for r in rows if r["question"] in known] == plain_q[: 2000 - 12]
    # clusters point at the right (shifted) uids
    for r in rows:
        if r["kind"] != "original":
            assert rows[r["cluster"]]["kind"] == "original"
            assert rows[r["cluster"]]["answer"] == r["answer"]


def test_benchmark_without_originals():
    bench = benchmark_rows([], 5, seed=2)
    assert all(b["train_uid"] is None for b in bench)
    rows = list(planted_rows(300, seed=2, benchmark=bench, contaminate=5))
    assert sum(r["contaminated"] for r in rows) == 5
    assert benchmark_rows([], 5, seed=2) == bench
