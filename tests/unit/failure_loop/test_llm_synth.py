"""The LLM synthesizer on fixed teacher replies (the prompt it sends, the ``Problem:`` lines it
parses) and the agreement check on fixed teacher answers: agreeing answers (in any equivalent
form) give the question its ground truth, disagreeing ones drop it."""

from __future__ import annotations

import random

import pytest

from logics_rl.evaluation.answers import AnswerOptions, analyse
from logics_rl.failure_loop.loop import agreement
from logics_rl.failure_loop.synthesize import (
    SYNTHESIZERS,
    Failure,
    SynthRequest,
    fill_prompt,
    parse_problems,
)

REPLY = """Sure! Here are new problems.
Problem: A tank holds 40 litres and leaks 3 litres per hour. How much is left after 5 hours?
2. Problem: What is 17 times 23?
**Problem 3:** Find x if 5x - 4 = 21.
Problem: What is 17 times 23?
Answer: 391
Problem: ok"""


def test_parse_problems():
    assert parse_problems(REPLY, 10) == [
        "A tank holds 40 litres and leaks 3 litres per hour. How much is left after 5 hours?",
        "What is 17 times 23?",
        "Find x if 5x - 4 = 21.",
    ]  # repeats, answers and too-short lines left out
    assert len(parse_problems(REPLY, 2)) == 2 and parse_problems("no problems here", 3) == []


FAILS = [
    Failure(4, "What is 12 times 13?", "156", "mult", 0.0, ["146"]),
    Failure(9, "Solve 2x + 3 = 11.", "4", "linear", 0.25, ["5", None]),
]


def test_the_prompt_holds_the_failure_and_its_neighbours():
    text = fill_prompt(
        "{question}|{retrieved}|{n}", FAILS[0], [{"text": "What is 11 times 14?"}], 3
    )
    assert text == "What is 12 times 13?|Related material:\n- What is 11 times 14?\n\n|3"
    assert fill_prompt("{question}|{retrieved}|{n}", FAILS[0], [], 2) == "What is 12 times 13?||2"


def test_llm_synthesizer_on_fixed_replies():
    sent = {}

    def teacher(users, n, temperature, top_p, max_tokens):
        sent.update(users=users, n=n, temperature=temperature)
        return [[REPLY], []]  # the second prompt was too long: no reply

    fn = SYNTHESIZERS.get("llm")
    req = SynthRequest(FAILS, [[], []], 2, random.Random(0), teacher)
    out = fn(req, temperature=0.5)
    assert [c.question for c in out] == parse_problems(REPLY, 2)
    assert all(c.ground_truth is None and c.failure == 4 and c.data_source == "mult" for c in out)
    assert (
        sent["n"] == 1 and sent["temperature"] == 0.5 and "What is 12 times 13?" in sent["users"][0]
    )
    whole = fn(
        SynthRequest(
            FAILS,
            [[], []],
            3,
            random.Random(0),
            lambda *a, **k: [
                ["A new problem here.", "A new problem here.", "x"],
                ["Another problem."],
            ],
        ),
        reply_format="whole",
    )
    assert [(c.question, c.failure) for c in whole] == [
        ("A new problem here.", 4),
        ("Another problem.", 9),
    ]
    with pytest.raises(ValueError, match="needs a teacher"):
        fn(SynthRequest(FAILS, [[], []], 2, random.Random(0)))


def groups_of(*replies):
    found, _ = analyse([None] * len(replies), [list(r) for r in replies], AnswerOptions())
    return found


def test_agreement_on_fixed_teacher_answers():
    agree, split, none, tie = groups_of(
        [r"\boxed{0.5}", r"\boxed{\frac{1}{2}}", r"so \boxed{1/2}", r"\boxed{3}"],
        [r"\boxed{3}", r"\boxed{5}", r"\boxed{7}", r"\boxed{3}"],
        ["no idea", "hmm", "", "?"],
        [r"\boxed{2}", r"\boxed{2}", r"\boxed{9}", r"\boxed{9}"],
    )
    assert agreement(agree, 0.75) == ("0.5", 0.75, "")
    assert agreement(split, 0.75) == (None, 0.5, "teacher agreement below 0.75")
    assert agreement(none, 0.75) == (None, 0.0, "teacher gave no answer")
    assert agreement(tie, 0.5)[0] is None  # two answers with half the votes each: no majority
