"""Data loading: the prompt schema and its errors, length filtering, resumable sampling, the
synthetic task, and SFT assistant-only loss masks."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from logics_rl.config.schema import SyntheticDataConfig
from logics_rl.data.files import DataError, iter_files, iter_rows, write_jsonl
from logics_rl.data.prompts import load_prompts, to_batch
from logics_rl.data.sampler import EpochSampler
from logics_rl.data.sft import collate, load_conversations, tokenize_conversation
from logics_rl.data.synthetic import worked_addition, worked_subtraction, write_task


@pytest.fixture(scope="module")
def tok(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def read_rows(path: str) -> list[dict]:
    return [r.data for r in iter_rows(path)]


def jsonl(tmp_path, rows, name="d.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(p)


def test_prompts_schema_and_chat_template(tmp_path, tok):
    path = jsonl(
        tmp_path,
        [
            {"prompt": "1+1?", "ground_truth": "2", "data_source": "a"},
            {
                "messages": [{"role": "user", "content": "2+2?"}],
                "ground_truth": "4",
                "extras": {"k": 1},
            },
        ],
    )
    recs, counts = load_prompts([path], tok, max_prompt_length=100)
    assert counts == {"rows": 2, "too_long": 0}
    assert recs[0].prompt == "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(recs[0].prompt_ids) == recs[0].prompt
    assert recs[1].data_source == "default" and recs[1].extras == {"k": 1}
    b = to_batch(recs, tok.pad_token_id, width=40, uid_start=10)
    assert b["prompt_ids"].shape == (2, 40) and list(b["uid"]) == [10, 11]
    assert int(b["prompt_mask"][0].sum()) == len(recs[0].prompt_ids) and bool(
        b["prompt_mask"][0, -1]
    )


@pytest.mark.parametrize(
    "row,message",
    [
        ('{"prompt": "x"', "row 2: not valid JSON"),
        ('{"ground_truth": "1"}', "row 2: needs a string 'prompt'"),
        ('{"prompt": "x"}', "row 2: missing 'ground_truth'"),
        ('{"prompt": "x", "ground_truth": "1", "extras": 3}', "row 2: 'extras' must be an object"),
        (
            '{"messages": [{"role": "assistant", "content": "a"}], "ground_truth": "1"}',
            "row 2: the last message",
        ),
        ("[1, 2]", "row 2: expected a JSON object"),
    ],
)
def test_malformed_row_names_file_and_row(tmp_path, tok, row, message):
    path = jsonl(tmp_path, [{"prompt": "ok", "ground_truth": "1"}, row])
    with pytest.raises(DataError) as info:
        load_prompts([path], tok, max_prompt_length=100)
    assert path in str(info.value) and message in str(info.value)


def test_too_long_prompts_are_dropped_and_counted(tmp_path, tok):
    path = jsonl(
        tmp_path,
        [{"prompt": "x" * 200, "ground_truth": "1"}, {"prompt": "short", "ground_truth": "1"}],
    )
    recs, counts = load_prompts([path], tok, max_prompt_length=50)
    assert len(recs) == 1 and counts["too_long"] == 1
    with pytest.raises(DataError, match="no usable prompts"):
        load_prompts([path], tok, max_prompt_length=5)


def test_file_formats(tmp_path):
    rows = [{"prompt": "a", "ground_truth": "1"}, {"prompt": "b", "ground_truth": "2"}]
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    (tmp_path / "d.json").write_text(json.dumps(rows))
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    for p in ("d.parquet", "d.json", "ds"):
        got = [{k: r[k] for k in ("prompt", "ground_truth")} for r in read_rows(str(tmp_path / p))]
        assert got == rows
    with pytest.raises(DataError, match="does not exist"):
        read_rows(str(tmp_path / "missing.jsonl"))
    (tmp_path / "d.csv").write_text("prompt,ground_truth\n")
    with pytest.raises(DataError, match="unsupported"):
        read_rows(str(tmp_path / "d.csv"))


def test_rows_stream_with_file_and_row_numbers(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from logics_rl.data import files

    big = [{"prompt": f"q{i}", "ground_truth": str(i)} for i in range(2500)]
    pq.write_table(pa.Table.from_pylist(big), tmp_path / "big.parquet", row_group_size=700)
    path = jsonl(
        tmp_path, [{"prompt": "a", "ground_truth": "1"}, "", {"prompt": "b", "ground_truth": "2"}]
    )
    stream = iter_files([path, str(tmp_path / "big.parquet")])
    first = next(stream)  # nothing read beyond what is asked for
    assert (first.file, first.number, first.data["prompt"]) == (path, 1, "a")
    second = next(stream)
    assert second.number == 3 and second.where == f"{path} row 3"  # blank line 2 skipped
    rest = list(stream)
    assert [r.number for r in rest] == list(range(1, 2501))
    assert rest[-1].data == big[-1] and len(big) > files._PARQUET_BATCH_ROWS
    (tmp_path / "cut.parquet").write_bytes((tmp_path / "big.parquet").read_bytes()[:300])
    with pytest.raises(DataError, match="cut.parquet: not a readable parquet file"):
        list(iter_rows(str(tmp_path / "cut.parquet")))


def test_sampler_epochs_and_exact_resume():
    a = EpochSampler(5, seed=3)
    first = a.take(3) + a.take(3)  # crosses the epoch boundary
    assert sorted(first[:5]) == [0, 1, 2, 3, 4] and a.epoch == 1
    state = a.state_dict()
    nxt = a.take(4)
    b = EpochSampler(5, seed=3)
    b.load_state_dict(state)
    assert b.take(4) == nxt
    assert EpochSampler(4, seed=0, shuffle=False).take(6) == [0, 1, 2, 3, 0, 1]


def test_synthetic_task_is_disjoint_and_correct(tmp_path):
    cfg = SyntheticDataConfig(
        task="arithmetic", train_size=200, val_size=40, min_digits=1, max_digits=2, seed=1
    )
    paths = write_task(cfg, str(tmp_path))
    train = read_rows(paths["rl_train"])
    val = read_rows(paths["rl_val"])
    assert len(train) == 200 and len(val) == 40
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in val}
    for r in train[:50]:
        expr = r["prompt"].split("Compute ")[1].split(".")[0]
        assert str(eval(expr)) == r["ground_truth"]  # noqa: S307 - generated digits and +/-
    assert worked_addition(58, 67) == "8+7=15, carry 1; 5+6+1=12, carry 1; carry 1. \\boxed{125}"
    assert worked_subtraction(52, 37) == "12-7=5, borrow 1; 4-3=1. \\boxed{15}"
    with pytest.raises(ValueError, match="distinct"):
        write_task(
            SyntheticDataConfig(
                task="arithmetic", train_size=500, val_size=10, min_digits=1, max_digits=1
            ),
            str(tmp_path),
        )


def test_sft_loss_mask_covers_assistant_tokens_only(tok):
    msgs = [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4!"},
    ]
    conv = tokenize_conversation(msgs, tok)
    trained = "".join(
        tok.convert_ids_to_tokens([i for i, m in zip(conv.input_ids, conv.loss_mask) if m])
    )
    assert trained == "2<|im_end|>4!<|im_end|>"
    batch = collate([conv, tokenize_conversation(msgs[:2], tok)], tok.pad_token_id)
    # targets are shifted by one: loss_mask[j] covers input token j+1
    assert batch["loss_mask"][0].tolist() == conv.loss_mask[1:]
    assert (
        int(batch["loss_mask"][1].sum()) == 2
        and batch["response_mask"].shape[1] == len(conv.input_ids) - 1
    )


def test_sft_rows_validated(tmp_path, tok):
    good = {"prompt": "q", "response": "a"}
    path = jsonl(tmp_path, [good, {"messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(DataError, match=r"row 2: no assistant message"):
        load_conversations([path], tok, 100)
    path = jsonl(tmp_path, [good, {"text": "x"}], name="e.jsonl")
    with pytest.raises(DataError, match=r"e.jsonl row 2: needs 'messages'"):
        load_conversations([path], tok, 100)
    convs, counts = load_conversations(
        [jsonl(tmp_path, [good, {"prompt": "q" * 300, "response": "a"}], "f.jsonl")], tok, 100
    )
    assert len(convs) == 1 and counts["too_long"] == 1
    write_jsonl(str(tmp_path / "w.jsonl"), [good])
    assert read_rows(str(tmp_path / "w.jsonl"))[0]["prompt"] == "q"


def test_teacher_slips_by_hand():
    # column 0 off by +1: 8+7 written as 16, the answer follows the working
    assert (
        worked_addition(58, 67, (0, 1))
        == "8+7=16, carry 1; 5+6+1=12, carry 1; carry 1. \\boxed{126}"
    )
    # a slip that would go below 0 goes the other way
    assert worked_addition(10, 20, (0, -1)) == "0+0=1; 1+2=3. \\boxed{31}"
    assert worked_subtraction(52, 37, (1, -1)) == "12-7=5, borrow 1; 4-3=0. \\boxed{5}"
    assert worked_subtraction(50, 41, (1, -1)) == "10-1=9, borrow 1; 4-4=1. \\boxed{19}"


def test_teacher_error_rate_only_touches_sft_training_solutions(tmp_path):
    import re

    def wrong_share(rows):
        bad = 0
        for r in rows:
            expr = r["messages"][0]["content"].split("Compute ")[1].split(".")[0]
            boxed = re.search(r"\\boxed\{(-?\d+)\}", r["messages"][1]["content"]).group(1)
            bad += int(boxed) != eval(expr)  # noqa: S307 - generated digits and +/-
        return bad / len(rows)

    base = dict(task="arithmetic", train_size=1000, val_size=200, min_digits=2, max_digits=2)
    clean = write_task(SyntheticDataConfig(**base), str(tmp_path / "clean"))
    noisy = write_task(SyntheticDataConfig(**base, teacher_error_rate=0.3), str(tmp_path / "noisy"))
    assert wrong_share(read_rows(clean["sft_train"])) == 0.0
    assert 0.25 < wrong_share(read_rows(noisy["sft_train"])) < 0.35  # 1000 draws at p = 0.3
    assert wrong_share(read_rows(noisy["sft_val"])) == 0.0
    for key in ("rl_train", "rl_val"):  # same problems, true answers, whatever the rate
        assert read_rows(clean[key]) == read_rows(noisy[key])
    with pytest.raises(ValueError, match="teacher_error_rate"):
        write_task(SyntheticDataConfig(**base, teacher_error_rate=1.5), str(tmp_path / "x"))
