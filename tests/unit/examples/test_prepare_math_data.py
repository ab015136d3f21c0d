"""examples/prepare_math_data.py: public-set layouts -> the prompt schema the trainer loads."""

from __future__ import annotations

import importlib.util
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from logics_rl.data.prompts import load_prompts

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture(scope="module")
def prep():
    path = os.path.join(ROOT, "examples", "prepare_math_data.py")
    spec = importlib.util.spec_from_file_location("prepare_math_data", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_last_boxed_balances_braces(prep):
    assert prep.last_boxed(r"so \boxed{1} then \boxed{\frac{1}{2}} end") == r"\frac{1}{2}"
    assert prep.last_boxed(r"\fbox{x^{2}}") == "x^{2}"
    assert prep.last_boxed("no box") is None
    assert prep.last_boxed(r"\boxed{unclosed {") is None


def test_three_layouts_convert_and_load(prep, tmp_path, tiny_model):
    from transformers import AutoTokenizer

    gsm = tmp_path / "gsm.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [{"question": "Tom has 1,200 apples and eats 2.", "answer": "1200-2=1198\n#### 1,198"}]
        ),
        gsm,
    )
    math = tmp_path / "math.jsonl"
    math.write_text(
        '{"problem": "Half of one?", "solution": "It is $\\\\boxed{\\\\frac{1}{2}}$.", "level": "Level 1"}\n'
        '{"problem": "Two?", "answer": "2", "solution": "..."}\n'
    )
    dapo = tmp_path / "dapo.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "prompt": [{"role": "user", "content": "Find x. Answer: $Answer"}],
                    "reward_model": {"ground_truth": "34", "style": "rule"},
                }
            ]
        ),
        dapo,
    )
    outs = {}
    for source, src in (("gsm8k", gsm), ("math", math), ("dapo", dapo)):
        out = tmp_path / f"{source}.parquet"
        assert prep.main([source, str(src), str(out)]) == 0
        outs[source] = str(out)

    tok = AutoTokenizer.from_pretrained(tiny_model)
    records, counts = load_prompts(list(outs.values()), tok, max_prompt_length=512)
    assert counts == {"rows": 4, "too_long": 0}
    got = [(r.data_source, r.ground_truth) for r in records]
    assert got == [("gsm8k", "1198"), ("math", r"\frac{1}{2}"), ("math", "2"), ("dapo", "34")]
    assert records[0].prompt.count(prep.INSTRUCTION) == 1
    assert records[1].extras == {"level": "Level 1", "index": 1}
    assert "Find x." in records[3].prompt and prep.INSTRUCTION not in records[3].prompt


def test_bad_row_names_file_and_row(prep, tmp_path):
    src = tmp_path / "math.jsonl"
    src.write_text(
        '{"problem": "ok", "answer": "1"}\n{"problem": "no answer", "solution": "none"}\n'
    )
    with pytest.raises(SystemExit, match=r"math.jsonl: row 2: cannot convert as math"):
        prep.main(["math", str(src), str(tmp_path / "o.jsonl")])
    assert not (tmp_path / "o.jsonl").exists()
