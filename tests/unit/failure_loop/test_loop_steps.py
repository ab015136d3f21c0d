"""The loop's verify (computed answers) and mix steps on fixed candidates: answers that do not
parse are dropped and counted; the mix holds every original row and the synthesized ones at the
configured share, repeated when too few, in the prompt schema."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from logics_rl.config.loader import load_config
from logics_rl.failure_loop.loop import FailureLoop


def write(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return str(path)


@pytest.fixture
def loop(tmp_path):
    train = write(
        tmp_path / "train.jsonl",
        [{"prompt": f"Compute {i}+1.", "ground_truth": str(i + 1)} for i in range(14)],
    )

    def make(ratio):
        cfg = load_config(
            None,
            ["mode=failure_loop", f"data.train_files=[{train}]", f"failure_loop.mix_ratio={ratio}"],
        )
        return FailureLoop(cfg, str(tmp_path / "loop"), Console(file=io.StringIO()), "unused")

    return make


def cand(q, gt, failure=0):
    return {"question": q, "ground_truth": gt, "failure": failure, "data_source": "add_1d",
            "info": {"synthesizer": "arithmetic"}}  # fmt: skip


def test_verify_keeps_answers_that_parse(loop):
    step = loop(0.3).verify([cand("a", "12"), cand("b", "\\frac{1}{2}"), cand("c", "}{")])
    assert [r["question"] for r in step.rows] == ["a", "b"]
    assert step.dropped == {"answer does not parse": 1}
    assert all(r["verified_by"] == "construction" for r in step.rows)


def test_mix_ratio_repeats_and_schema(loop):
    cands = [cand(f"Compute {i}+9.", str(i + 9), failure=i) for i in range(4)]
    step = loop(0.3).mix(cands)  # 14 originals: 0.3 / 0.7 x 14 = 6 synthesized, 4 distinct
    x = step.extra
    assert (x["original"], x["synthesized"], x["synthesized_used"], x["repeats"]) == (14, 4, 6, 2)
    assert x["ratio"] == pytest.approx(6 / 20)
    with open(x["train_file"], encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    assert len(rows) == 20
    assert sum("extras" not in r for r in rows) == 14  # every original row, unchanged
    synth = [r for r in rows if "extras" in r]
    assert {r["prompt"] for r in synth} == {c["question"] for c in cands}
    assert all(r["extras"]["synthesized_for"] in range(4) and r["data_source"] == "add_1d"
               for r in synth)  # fmt: skip


def test_mix_subsamples_and_zero_ratio(loop):
    many = [cand(f"Compute {i}+9.", str(i + 9)) for i in range(40)]
    x = loop(0.5).mix(many).extra
    assert (x["synthesized_used"], x["repeats"], x["ratio"]) == (14, 0, 0.5)
    assert loop(0.0).mix(many).extra["synthesized_used"] == 0
    assert loop(0.3).mix([]).extra["synthesized_used"] == 0


def test_mix_ratio_is_checked(tmp_path):
    from logics_rl.config.loader import ConfigError

    cfg = load_config(
        None, ["mode=failure_loop", "data.train_files=[x]", "failure_loop.mix_ratio=1"]
    )
    with pytest.raises(ConfigError, match="mix_ratio"):
        FailureLoop(cfg, str(tmp_path), Console(file=io.StringIO()), "unused")


def test_mix_writes_a_continued_sft_set_from_worked_solutions(loop, tmp_path):
    cands = [
        {**cand(f"Compute {i}+9.", str(i + 9), failure=i), "solution": f"work \\boxed{{{i + 9}}}"}
        for i in range(3)
    ] + [cand("Compute 1-9.", "-8")]  # no worked solution: RL only
    x = loop(0.3).mix(cands).extra
    assert x["synthesized"] == 4 and x["sft_synthesized"] == 3
    assert x["sft_original"] == 0 and x["sft_synthesized_used"] == 3  # no sft.train_files: all
    with open(x["sft_file"], encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    assert sorted(r["messages"][0]["content"] for r in rows) == [
        f"Compute {i}+9." for i in range(3)
    ]
    assert all(r["messages"][1]["role"] == "assistant" for r in rows)
