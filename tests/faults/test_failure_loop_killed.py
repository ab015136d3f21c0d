"""The failure-driven loop end to end on the tiny model (vLLM CPU evaluation, the arithmetic
synthesizer, the data engine's dedup and decontamination, the mix), and its driver SIGKILLed
between steps: re-running the same command re-uses the finished steps and ends with the same
stage-two data as the uninterrupted run."""

from __future__ import annotations

import glob
import json
import os

import pytest
import yaml

pytestmark = [pytest.mark.faults, pytest.mark.slow]  # about 100 s: make test-slow


@pytest.fixture(scope="module")
def loop_recipe(tiny_model, task_files, tmp_path_factory) -> str:
    recipe = {
        "mode": "failure_loop",
        "model": {"path": tiny_model},
        "data": {
            "train_files": [task_files["rl_train"]],
            "val_files": [task_files["rl_val"]],
            "max_prompt_length": 128,
        },
        "rollout": {"engine": "vllm", "max_response_length": 12, "vllm": {"kv_cache_gb": 0.05}},
        "failure_loop": {
            "max_probes": 12,
            "k": 4,
            "synthesizer": {"name": "arithmetic", "per_failure": 3},
            "mix_ratio": 0.25,
        },
        "curate": {"workers": 1, "dedup": {"near": False}},
        "cluster": {"call_timeout_s": 600},
    }
    path = tmp_path_factory.mktemp("failure_loop") / "loop.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def read(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def step_rows(run_dir, step):
    (path,) = glob.glob(os.path.join(run_dir, "failure_loop", f"*-{step}-*", "out.jsonl"))
    return read(path)


def test_the_loop_end_to_end_then_killed_and_resumed(
    loop_recipe, task_files, tiny_model, main_cmd, main_run, kill_run_after, tmp_path
):
    from transformers import AutoTokenizer

    from logics_rl.data.prompts import load_prompts
    from logics_rl.data.sft import load_conversations
    from logics_rl.failure_loop.arithmetic import Structure, parse

    ref_dir = str(tmp_path / "reference")
    code, out, _ = main_run(loop_recipe, ref_dir)
    assert code == 0, out[-3000:]
    with open(os.path.join(ref_dir, "failure_loop", "report.json"), encoding="utf-8") as fh:
        report = json.load(fh)
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["evaluate", "retrieve", "synthesize", "verify", "filter", "mix"]
    fails = step_rows(ref_dir, "evaluate")
    assert steps["evaluate"]["extra"]["failures"] == len(fails) > 0  # an untrained model fails
    assert all(f["pass_rate"] < 0.5 and len(f["answers"]) == 4 for f in fails)
    cands = step_rows(ref_dir, "synthesize")
    by_uid = {f["uid"]: f for f in fails}
    for c in cands:  # each candidate has its failure's structure and a computed answer
        a, op, b, _ = parse(by_uid[c["failure"]]["question"])
        x, o, y, _ = parse(c["question"])
        assert Structure.of(a, op, b) == Structure.of(x, o, y)
        assert int(c["ground_truth"]) == (x + y if o == "+" else x - y)
    train = {r["prompt"] for r in read(task_files["rl_train"])}
    kept = step_rows(ref_dir, "filter")
    assert len(kept) == len(cands) - sum(steps["filter"]["dropped"].values())
    assert not {c["question"] for c in kept} & train  # nothing already in the training set
    rows = read(report["train_file"])
    synth = [r for r in rows if "synthesized_for" in (r.get("extras") or {})]
    assert len(synth) == steps["mix"]["extra"]["synthesized_used"] > 0
    assert len(rows) - len(synth) == len(train)
    # the mixed sets are what the RL trainer and the SFT trainer load
    tok = AutoTokenizer.from_pretrained(tiny_model)
    records, counts = load_prompts([report["train_file"]], tok, max_prompt_length=128)
    assert len(records) == len(rows) and counts["too_long"] == 0
    sft_file = steps["mix"]["extra"]["sft_file"]  # worked solutions of the synthesized problems
    convs, counts = load_conversations([sft_file], tok, max_length=256)
    assert len(convs) == steps["mix"]["extra"]["sft_synthesized_used"] > 0

    run_dir = str(tmp_path / "killed")
    marker = os.path.join(run_dir, "failure_loop", "02-synthesize-*", "DONE")
    kill_run_after(main_cmd(loop_recipe, run_dir), marker, "synthesize")
    assert not glob.glob(os.path.join(run_dir, "failure_loop", "05-mix-*", "DONE"))

    code, out, _ = main_run(loop_recipe, run_dir)
    assert code == 0, out[-3000:]
    lines = [x for x in out.splitlines() if x.startswith("failure loop · ")]
    cached = [("(cached)" in x) for x in lines]
    assert len(cached) == 6 and cached[:3] == [True] * 3 and not cached[-1], lines
    assert cached == sorted(cached, reverse=True), lines  # the finished steps, then the rest
    assert read(os.path.join(run_dir, "failure_loop", "output", "rl.jsonl")) == rows
