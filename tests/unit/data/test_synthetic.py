"""The synthetic task is a pure function of its config: the same config writes the same rows."""

from __future__ import annotations

import hashlib
import json

from logics_rl.config.schema import SyntheticDataConfig
from logics_rl.data.synthetic import write_task

CFG = SyntheticDataConfig(
    task="arithmetic",
    train_size=40,
    val_size=8,
    min_digits=1,
    max_digits=3,
    seed=5,
    teacher_error_rate=0.5,
)
# Digests of the parsed rows written by CFG. A change here changes every synthetic run's data
# (problems, their order, or which solutions carry a slip): only on purpose.
PINNED = {
    "rl_train": "61ad2b0f37251ade",
    "rl_val": "82867ebf7ebaabe7",
    "sft_train": "473a609f806978db",
    "sft_val": "ef6b861a1584b0df",
}


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def digest(path):
    return hashlib.sha256(json.dumps(rows(path), sort_keys=True).encode()).hexdigest()[:16]


def test_rows_are_pinned_for_a_config(tmp_path):
    paths = write_task(CFG, str(tmp_path))
    assert list(paths) == ["rl_train", "rl_val", "sft_train", "sft_val"]
    assert {k: digest(p) for k, p in paths.items()} == PINNED
    sft = rows(paths["sft_train"])
    # 742-283 = 459 is written cleanly; 30+19 = 49 carries a slip in column 1 (3+1=3).
    assert sft[0]["messages"][1]["content"] == (
        "12-3=9, borrow 1; 13-8=5, borrow 1; 6-2=4. \\boxed{459}"
    )
    assert sft[2]["messages"][0]["content"].startswith("Compute 30+19.")
    assert sft[2]["messages"][1]["content"] == "0+9=9; 3+1=3. \\boxed{39}"


def test_same_config_same_bytes(tmp_path):
    a, b = write_task(CFG, str(tmp_path / "a")), write_task(CFG, str(tmp_path / "b"))
    for key in a:
        with open(a[key], "rb") as fa, open(b[key], "rb") as fb:
            assert fa.read() == fb.read()


def test_a_borrow_weakness_for_stage_one(tmp_path):
    """``sft_borrow_keep`` drops most borrowing subtractions from the SFT set only, labels them
    ``sub_<d>d_borrow`` everywhere, and leaves every problem where it was."""
    import dataclasses

    from logics_rl.data.synthetic import borrows

    base = write_task(dataclasses.replace(CFG, teacher_error_rate=0.0), str(tmp_path / "a"))
    weak = write_task(
        dataclasses.replace(CFG, teacher_error_rate=0.0, train_size=400, sft_borrow_keep=0.0),
        str(tmp_path / "b"),
    )
    sources = {r["data_source"] for r in rows(weak["rl_train"])}
    assert sources >= {"sub_2d_borrow", "sub_3d_borrow", "sub_1d", "add_2d"}  # 1 digit: no borrow
    assert "sub_1d_borrow" not in sources
    for r in rows(weak["rl_train"]) + rows(weak["rl_val"]):
        a, op, b = r["prompt"].split()[1].rstrip(".").partition("-")
        if op:
            p = type("P", (), {"op": "sub", "a": int(a), "b": int(b)})
            assert borrows(p) == r["data_source"].endswith("_borrow"), r
    assert not [r for r in rows(weak["sft_train"]) if r["data_source"].endswith("_borrow")]
    assert len(rows(weak["rl_train"])) == 400
    # the default writes exactly what it wrote before
    again = write_task(
        dataclasses.replace(CFG, teacher_error_rate=0.0, sft_borrow_keep=1.0), str(tmp_path / "c")
    )
    assert {k: digest(p) for k, p in again.items()} == {k: digest(p) for k, p in base.items()}
    assert borrows(type("P", (), {"op": "sub", "a": 100, "b": 1})) and not borrows(
        type("P", (), {"op": "add", "a": 19, "b": 1})
    )
