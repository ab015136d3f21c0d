"""repetition: dense token n-grams counted by hand, sparse word n-grams, a 100k-token response."""

from __future__ import annotations

import random

import pytest

from logics_rl.rewards import MissingComponentError, RewardInput, repetition
from logics_rl.rewards.repetition import DENSE_N, repeated_token_mask, word_ngram_repeat_ratio


def test_dense_on_a_crafted_sequence():
    #          0  1  2  3  4  5  6  7  8  9 10 11
    tokens = [1, 2, 3, 9, 1, 2, 3, 1, 2, 8, 2, 3]
    # 3-grams: (1,2,3)@0 first, (1,2,3)@4 repeat -> tokens 4,5,6; (2,3,1)@5 is new; (3,1,2)@6 new;
    # (1,2,8)@7 new, (2,8,2)@8 new, (8,2,3)@9 new. 2-grams would add more; n=3 here.
    b = RewardInput.build(["..."], response_token_ids=[tokens])
    res = repetition(b, ngram_size=3, penalty=-0.5)
    assert res.token_scores == [[0, 0, 0, 0, -0.5, -0.5, -0.5, 0, 0, 0, 0, 0]]
    assert res.scores == [0.0]  # dense: the penalty lives in token_scores only
    assert res.components["repetition"] == [-1.5]
    assert res.components["repetition_ratio"] == [3 / 12]
    # n = 2: (1,2)@4, (2,3)@5, (1,2)@7, (2,3)@10 repeat -> tokens 4,5,6,7,8,10,11.
    mask = repeated_token_mask(tokens, 2)
    assert [i for i, m in enumerate(mask) if m] == [4, 5, 6, 7, 8, 10, 11]


def test_dense_only_start_marks_the_first_ngram_of_a_repeated_span():
    tokens = [5, 6, 7, 8] * 3  # from index 4 on everything repeats
    assert sum(repeated_token_mask(tokens, 2)) == 8
    assert [i for i, m in enumerate(repeated_token_mask(tokens, 2, only_start=True)) if m] == [4, 5]


def test_dense_defaults_are_the_papers():
    tokens = list(range(50)) + list(range(45))  # one 45-token repeat of the opening
    res = repetition(RewardInput.build(["..."], response_token_ids=[tokens]))
    # n = 40: repeated 40-grams start at 50..55 -> tokens 50..94 penalised at -0.05.
    assert res.components["repetition"][0] == pytest.approx(-0.05 * 45)
    assert len(res.token_scores[0]) == 95


def test_sparse_penalises_wrong_answers_only():
    text = "the cat sat " * 10  # 30 words, 3 distinct words
    b = RewardInput.build([text, text, "a b c d e"], components={"correct": [0.0, 1.0, 0.0]})
    res = repetition(b, mode="sparse", ngram_size=3, max_penalty=-2.0)
    # 28 word 3-grams, 3 unique -> 1 - 3/28 repeated share.
    expected = (1 - 3 / 28) * -2.0
    assert res.scores == pytest.approx([expected, 0.0, 0.0])
    assert res.components["repetition_ratio"] == pytest.approx([1 - 3 / 28, 1 - 3 / 28, 0.0])
    assert res.token_scores is None
    assert word_ngram_repeat_ratio("The CAT the cat", 2) == pytest.approx(1 - 2 / 3)


def test_sparse_needs_correctness_and_dense_needs_token_ids():
    with pytest.raises(MissingComponentError, match="'correct'"):
        repetition(RewardInput.build(["a"]), mode="sparse")
    with pytest.raises(ValueError, match="response_token_ids"):
        repetition(RewardInput.build(["a"]))
    with pytest.raises(ValueError, match="<= 0"):
        repetition(RewardInput.build(["a"], response_token_ids=[[1]]), penalty=0.1)


def test_a_100k_token_response_marks_exactly_the_repeated_half():
    # Its speed (linear in the length) is measured in benchmarks/bench_rewards.py, not here.
    rng = random.Random(0)
    tokens = [rng.randrange(50_000) for _ in range(50_000)]
    tokens += tokens  # the second half repeats the first
    res = repetition(RewardInput.build(["..."], response_token_ids=[tokens]))
    assert res.components["repetition_ratio"][0] == pytest.approx(0.5)
    mask = repeated_token_mask(tokens, DENSE_N)
    assert mask == [False] * 50_000 + [True] * 50_000
