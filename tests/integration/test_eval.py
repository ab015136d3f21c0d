"""``mode: eval`` end to end: the tiny model through vLLM CPU on two rollout workers (data
parallel), two benchmark files with their own sampling settings; the summary recomputed from the
per-sample rows; a malformed file named before any worker starts."""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest
from rich.console import Console

from logics_rl.config.loader import load_config
from logics_rl.evaluation.metrics import pass_at_k
from logics_rl.rewards import RewardInput, math_verify

pytestmark = pytest.mark.integration


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return str(path)


def problems(n, source):
    return [
        {"prompt": f"What is {i} + {i % 3}?", "ground_truth": str(i + i % 3), "data_source": source}
        for i in range(n)
    ]


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def eval_run(ray_cluster, tiny_model, tmp_path_factory):
    from logics_rl.trainer.stages import run

    d = tmp_path_factory.mktemp("eval")
    mixed = write_jsonl(d / "mixed.jsonl", problems(5, "small") + problems(4, "large"))
    plain = write_jsonl(d / "plain.jsonl", problems(3, "plain"))
    run_dir = str(d / "run")
    cfg = load_config(
        None,
        [
            "mode=eval",
            f"model.path={tiny_model}",
            f"trainer.run_dir={run_dir}",
            "data.max_prompt_length=64",
            "rollout.engine=vllm",
            "rollout.vllm.kv_cache_gb=0.05",
            "rollout.max_response_length=12",
            f"eval.files=[{{path: {mixed}, k: 4, temperature: 1.0}}, "
            f"{{path: {plain}, name: arith, k: 3, max_tokens: 6, top_p: 0.9}}]",
            "eval.prompts_per_call=4",  # several calls per file
            "cluster.procs_per_node=2",
            "cluster.cpus_per_proc=1",
            "reward.terms=[{name: math_verify}, {name: format, weight: 0.5}]",
            "cluster.call_timeout_s=600",
        ],
    )
    out = io.StringIO()
    run(cfg, Console(file=out, width=200))
    with open(os.path.join(run_dir, "summary.json"), encoding="utf-8") as fh:
        summary = json.load(fh)
    return summary, out.getvalue(), run_dir


def test_every_sample_is_written_with_its_verdict(eval_run):
    summary, _, run_dir = eval_run
    rows = read_jsonl(os.path.join(run_dir, "eval", "mixed", "samples.jsonl"))
    assert len(rows) == 9 * 4
    assert [(r["prompt_index"], r["sample"]) for r in rows] == [
        (p, s) for p in range(9) for s in range(4)
    ]
    assert {r["data_source"] for r in rows} == {"small", "large"}
    for r in rows:
        assert 0 <= r["length"] <= 12 and r["finish_reason"] in ("stop", "length")
        assert set(r["rewards"]) == {"correct", "format"}
        assert r["correct"] == (r["rewards"]["correct"] == 1.0)
        assert (r["answer"] is None) == (r["answer_class"] == -1)
    # the verdicts are math-verify's on the same responses
    want = math_verify(
        RewardInput.build(
            [r["response"] for r in rows], ground_truths=[r["ground_truth"] for r in rows]
        )
    ).components["correct"]
    assert [float(r["correct"]) for r in rows] == want
    arith = read_jsonl(os.path.join(run_dir, "eval", "arith", "samples.jsonl"))
    assert len(arith) == 3 * 3 and all(r["length"] <= 6 for r in arith)


def test_the_summary_is_what_the_samples_say(eval_run):
    summary, _, run_dir = eval_run
    rows = read_jsonl(os.path.join(run_dir, "eval", "mixed", "samples.jsonl"))
    res = summary["mixed"]
    assert res["settings"] == {
        "k": 4,
        "temperature": 1.0,
        "top_p": 1.0,
        "max_tokens": 12,
        "stop": [],
    }
    assert summary["arith"]["settings"]["k"] == 3 and summary["arith"]["settings"]["top_p"] == 0.9
    m = res["all"]
    right = [sum(r["correct"] for r in rows if r["prompt_index"] == p) for p in range(9)]
    assert m["prompts"] == 9 and m["k"] == 4
    assert m["avg@4"] == pytest.approx(sum(right) / 36)
    assert m["pass@1"] == pytest.approx(m["avg@4"])
    for j in (2, 3, 4):
        assert m[f"pass@{j}"] == pytest.approx(sum(pass_at_k(4, c, j) for c in right) / 9)
    assert m["response_length/mean"] == pytest.approx(sum(r["length"] for r in rows) / 36)
    assert m["response_length/max"] == max(r["length"] for r in rows)
    assert m["truncated"] == pytest.approx(sum(r["finish_reason"] == "length" for r in rows) / 36)
    assert m["reward/format"] == pytest.approx(sum(r["rewards"]["format"] for r in rows) / 36)
    assert set(res["sources"]) == {"small", "large"} and res["sources"]["small"]["prompts"] == 5
    assert set(m) >= {"maj@1", "maj@2", "maj@4", "no_answer"}
    assert res["counters"]["reward/count/answers/timeout"] == 0
    assert res["prompts_too_long"] == 0


def test_two_rollout_workers_and_the_table(eval_run):
    _, text, _ = eval_run
    assert "RolloutWorker: 2 rank(s)" in text
    assert "evaluation of" in text and "mixed" in text and "arith" in text and "  small" in text


def test_a_malformed_file_is_named_before_any_worker_starts(tiny_model, tmp_path):
    from logics_rl.main import main

    bad = write_jsonl(tmp_path / "bad.jsonl", [problems(1, "x")[0], '{"prompt": "no answer"}'])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(
            [
                "mode=eval",
                f"model.path={tiny_model}",
                f"trainer.run_dir={tmp_path / 'run'}",
                f"eval.files=[{{path: {bad}}}]",
            ]
        )
    assert code == 2
    assert "bad.jsonl" in out.getvalue() and "row 2" in out.getvalue()
    assert "ground_truth" in out.getvalue()
