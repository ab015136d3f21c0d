"""The failure loop with a served teacher: the embedding retriever over a corpus, the LLM
synthesizer and the teacher-agreement check, the tiny model as the teacher on vLLM CPU."""

from __future__ import annotations

import io
import json
import os

import pytest
from rich.console import Console

from logics_rl.config.loader import load_config

pytestmark = pytest.mark.integration
pytest.importorskip("sentence_transformers", reason="the retrieval extra is not installed")


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return str(path)


def test_retrieve_synthesize_and_verify_with_a_served_teacher(ray_cluster, tiny_model, tmp_path):
    from logics_rl.trainer.stages import run

    train = write_jsonl(
        tmp_path / "train.jsonl",
        [{"prompt": f"What is {i} + {i + 2}?", "ground_truth": str(2 * i + 2)} for i in range(6)],
    )
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl",
        [{"question": f"Add {i} and {i + 1}."} for i in range(5)]
        + [{"question": "Name the capital of France."}, {"question": "Spell the word cat."}],
    )
    run_dir = str(tmp_path / "run")
    cfg = load_config(
        None,
        [
            "mode=failure_loop",
            f"model.path={tiny_model}",
            f"trainer.run_dir={run_dir}",
            f"data.train_files=[{train}]",
            "data.max_prompt_length=160",
            "rollout.engine=vllm",
            "rollout.vllm.kv_cache_gb=0.05",
            "rollout.max_response_length=12",
            "failure_loop.k=2",
            f"failure_loop.retrieval.corpus=[{corpus}]",
            "failure_loop.retrieval.top_k=2",
            "failure_loop.synthesizer.name=llm",
            "failure_loop.synthesizer.per_failure=2",
            "failure_loop.synthesizer.params={reply_format: whole, max_tokens: 16, prompt: "
            "'Like {question}'}",
            "failure_loop.verify.k=3",
            "failure_loop.verify.agree=0.3",
            "failure_loop.verify.max_tokens=12",
            "curate.workers=1",
            "cluster.call_timeout_s=600",
        ],
    )
    out = io.StringIO()
    run(cfg, Console(file=out, width=200))
    with open(os.path.join(run_dir, "failure_loop", "report.json"), encoding="utf-8") as fh:
        steps = {s["name"]: s for s in json.load(fh)["steps"]}
    failures = steps["evaluate"]["extra"]["failures"]
    assert failures > 0  # an untrained model fails
    root = os.path.join(run_dir, "failure_loop")
    (retrieved,) = [
        os.path.join(root, d, "out.jsonl") for d in os.listdir(root) if "-retrieve-" in d
    ]
    with open(retrieved, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    for r in rows:  # arithmetic questions retrieve the additions of the corpus first
        assert len(r["retrieved"]) == 2
        assert all(x["text"].startswith("Add ") for x in r["retrieved"]), r["retrieved"]
    cands = steps["synthesize"]["extra"]["candidates"]
    assert 0 < cands <= 2 * failures  # the teacher's replies, one problem each
    verify = steps["verify"]
    assert verify["extra"]["teacher_checked"] == cands
    assert verify["rows_in"] == cands
    with open(
        [os.path.join(root, d, "out.jsonl") for d in os.listdir(root) if "-verify-" in d][0],
        encoding="utf-8",
    ) as fh:
        verified = [json.loads(line) for line in fh]
    assert len(verified) + sum(verify["dropped"].values()) == cands
    for v in verified:  # the teacher's majority answer became the ground truth
        assert v["verified_by"] == "teacher" and v["agreement"] >= 0.3 and v["ground_truth"]
    assert "RolloutWorker: 1 rank(s)" in out.getvalue()


def test_sft_rl_runs_the_loop_between_the_stages(ray_cluster, tmp_path):
    """``mode: sft_rl`` with ``failure_loop.enabled``: SFT, the loop on the SFT model, continued
    SFT on the loop's worked solutions (``failure_loop.sft_steps``), and RL from that model on
    the loop's mix (the RL stage's training set is the mixed file)."""
    from logics_rl.main import QUICKSTART
    from logics_rl.tracking import read_metrics
    from logics_rl.trainer.stages import run

    run_dir = str(tmp_path / "run")
    cfg = load_config(
        QUICKSTART,
        [
            f"trainer.run_dir={run_dir}",
            "failure_loop.enabled=true",
            "failure_loop.max_probes=8",
            "failure_loop.k=2",
            "failure_loop.synthesizer.per_failure=2",
            "failure_loop.sft_steps=2",
            "curate.workers=1",
            "curate.dedup.near=false",
            "sft.total_steps=3",
            "sft.batch_size=8",
            "trainer.total_steps=1",
            "trainer.prompts_per_step=4",
            "trainer.progress=false",
            "trainer.plot=false",
            "validation.at_start=false",
            "validation.at_end=false",
            "data.synthetic.train_size=48",
            "data.synthetic.val_size=6",
            "rollout.n=4",
            "rollout.max_response_length=16",
            "rollout.vllm.kv_cache_gb=0.05",
            "cluster.call_timeout_s=600",
        ],
    )
    out = io.StringIO()
    outputs = run(cfg, Console(file=out, width=200))
    assert list(outputs) == ["sft", "failure_loop", "sft_continue", "rl"]
    text = out.getvalue()
    mixed = os.path.join(run_dir, "failure_loop", "output", "rl.jsonl")
    assert f"stage two trains on {mixed}" in text
    with open(os.path.join(run_dir, "failure_loop", "report.json"), encoding="utf-8") as fh:
        report = json.load(fh)
    assert report["model"] == os.path.join(run_dir, "sft", "hf")  # the loop probed the SFT model
    ckpt = os.path.join(run_dir, "rl", "checkpoints", "step_1", "config.yaml")
    with open(ckpt, encoding="utf-8") as fh:
        assert mixed in fh.read()  # the RL stage was configured with the mix
    assert [r["step"] for r in read_metrics(os.path.join(run_dir, "rl", "metrics.jsonl"))] == [1]
    # continued SFT: 2 steps on the loop's SFT set, which holds the synthesized questions' worked
    # solutions; RL started from its model
    out_dir = os.path.join(run_dir, "failure_loop", "output")
    cont = os.path.join(out_dir, "sft.jsonl")
    assert f"continued SFT on {cont} (2 steps)" in text
    steps = read_metrics(os.path.join(run_dir, "sft_continue", "metrics.jsonl"))
    assert [r["step"] for r in steps if "sft/loss" in r] == [1, 2]
    ckpt = os.path.join(run_dir, "sft_continue", "checkpoints", "step_2", "config.yaml")
    with open(ckpt, encoding="utf-8") as fh:
        assert cont in fh.read()
    with open(mixed, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    synth = {r["prompt"] for r in rows if "synthesized_for" in (r.get("extras") or {})}
    with open(cont, encoding="utf-8") as fh:
        taught = {json.loads(line)["messages"][0]["content"] for line in fh}
    assert synth & taught
    assert outputs["sft_continue"].model_path == os.path.join(run_dir, "sft_continue", "hf")
    assert outputs["rl"].model_path == outputs["sft_continue"].model_path
