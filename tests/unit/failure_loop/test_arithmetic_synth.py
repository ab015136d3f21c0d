"""The arithmetic synthesizer: structures by hand (carries, borrows, sign), new problems with
the same structure and their computed answers, the text around the expression kept."""

from __future__ import annotations

import random

import pytest

from logics_rl.failure_loop.arithmetic import Structure, parse, similar
from logics_rl.failure_loop.synthesize import SYNTHESIZERS, Failure, SynthRequest


def test_structures_by_hand():
    s = Structure.of(47, "-", 29)  # 7-9 borrows; 3-2 does not
    assert (s.op, s.digits, s.columns, s.negative) == ("-", (2, 2), (True, False), False)
    s = Structure.of(58, "+", 67)  # 8+7=15 carries, 5+6+1=12 carries
    assert s.columns == (True, True) and s.name == "+ 2x2 digits, carry [cc]"
    assert Structure.of(50, "+", 49).columns == (False, False)
    assert Structure.of(100, "-", 1).columns == (True, True, False)  # the borrow chain
    assert Structure.of(7, "-", 9).negative and Structure.of(7, "-", 9).columns == (False,)  # 9-7
    assert Structure.of(123, "+", 9).digits == (3, 1)


def test_parse_takes_the_expression_not_decimals():
    assert parse("Compute 47-29. Put the final answer in \\boxed{}.")[:3] == (47, "-", 29)
    assert parse("What is 3 + 4?")[:3] == (3, "+", 4)
    assert parse("Compute 2.5+3") is None and parse("no numbers") is None


@pytest.mark.parametrize(
    "question",
    ["Compute 47-29. Put the final answer in \\boxed{}.", "Compute 58+67.", "What is 7-9?"],
)
def test_similar_problems_keep_the_structure_and_are_answered(question):
    a, op, b, _ = parse(question)
    want = Structure.of(a, op, b)
    got = similar(question, 6, random.Random(1))
    assert len(got) == 6 and len({t for t, _, _ in got}) == 6
    for text, answer, structure in got:
        x, o, y, m = parse(text)
        assert structure == want == Structure.of(x, o, y) and (x, y) != (a, b)
        assert int(answer) == (x + y if o == "+" else x - y)
        assert text[: m.start()] == question[: question.index(str(a))]  # the text around kept
        assert text.endswith(question[question.index(f"{a}{op}{b}") + len(f"{a}{op}{b}") :])


def test_a_rare_structure_gives_what_exists():
    # 1-digit additions carrying into a second digit with 9 as first operand: 9+1 .. 9+9
    got = similar("Compute 9+9.", 50, random.Random(0))
    assert all(parse(t)[0] + parse(t)[2] >= 10 for t, _, _ in got)
    assert len(got) == len({(a, b) for a in range(10) for b in range(10) if a + b >= 10}) - 1


def test_the_registered_synthesizer():
    fn = SYNTHESIZERS.get("arithmetic")
    fails = [
        Failure(3, "Compute 47-29.", "18", "sub_2d", 0.0, [None]),
        Failure(5, "Name a prime.", "2", "other", 0.25, ["4"]),
    ]
    out = fn(SynthRequest(fails, [[], []], 3, random.Random(0)))
    assert len(out) == 3 and {c.failure for c in out} == {3}
    assert all(c.data_source == "sub_2d" and c.info["synthesizer"] == "arithmetic" for c in out)
    assert all(c.info["structure"] == "- 2x2 digits, borrow [.c]" for c in out)
    for c in out:  # the built-in task's worked solution, ending in the answer
        assert c.solution.endswith(f"\\boxed{{{c.ground_truth}}}") and "borrow 1" in c.solution
    neg = fn(
        SynthRequest([Failure(1, "Compute 3-8.", "-5", "s", 0.0, [])], [[]], 2, random.Random(0))
    )
    assert len(neg) == 2 and all(c.solution is None and int(c.ground_truth) < 0 for c in neg)
