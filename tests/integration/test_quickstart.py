"""The embedded quickstart (``python -m logics_rl.main``) through the real stack, shortened: the
tiny model built in the run directory, the synthetic task, SFT, HF export, GRPO with vLLM,
math-verify in worker processes, dynamic sampling, validation, the report and the curves; the
console without the known start-up noise, which lands in run.log."""

from __future__ import annotations

import json
import os

import pytest

from logics_rl.checkpoint import COMPLETE
from logics_rl.logs import BENIGN_RE
from logics_rl.main import main
from logics_rl.tracking import read_metrics

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n"


def test_quickstart_runs_end_to_end(ray_cluster, tmp_path, capsys):
    run_dir = str(tmp_path / "quickstart")
    overrides = [
        "sft.total_steps=3",
        "sft.batch_size=8",
        "trainer.total_steps=2",
        "trainer.prompts_per_step=4",
        "validation.every=0",
        "trainer.progress=false",
        f"trainer.run_dir={run_dir}",
        "data.synthetic.train_size=48",
        "data.synthetic.val_size=6",
        "rollout.n=4",
        "validation.k=2",
        "rollout.max_response_length=24",
        "rollout.vllm.kv_cache_gb=0.05",
        "cluster.call_timeout_s=600",
    ]
    assert main(overrides) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "mode: sft_rl" in out  # the resolved config is printed first

    # the console: metrics, no known start-up noise (vLLM / torch / Ray); run.log: everything
    console = captured.out + captured.err
    assert not [x for x in console.splitlines() if BENIGN_RE.search(x)]
    for step in (1, 2):
        assert any(x.startswith(f"step {step} ") for x in out.splitlines())
    with open(os.path.join(run_dir, "run.log"), encoding="utf-8") as fh:
        run_log = fh.read()
    assert "mode: sft_rl" in run_log and "held-out evaluation" in run_log
    hidden = [x for x in run_log.splitlines() if BENIGN_RE.search(x)]
    assert any("pid=" in x for x in hidden)  # forwarded from the workers, prefix kept

    with open(os.path.join(run_dir, "summary.json")) as fh:
        summary = json.load(fh)
    assert list(summary) == ["SFT (stage one)", "SFT + RL (stage two)"]
    rl_rows = read_metrics(os.path.join(run_dir, "rl", "metrics.jsonl"))
    val_rows = [r for r in rl_rows if "val/avg@k" in r]
    assert [r["step"] for r in val_rows] == [0, 2]
    assert all(r["val/prompts"] == 6 for r in val_rows)
    # the table reports what was measured: before = RL's step-0 validation of the SFT model
    for column, row in zip(summary.values(), val_rows):
        assert column and all(column[k] == row[k] for k in column)
        assert 0.0 <= column["val/avg@k"] <= column["val/pass@k"] <= 1.0
        sources = [k for k in column if k.count("/") == 2]
        assert sources and all(k.split("/")[1].startswith(("add_", "sub_")) for k in sources)
    table = out[out.index("held-out evaluation") :]
    line = next(x for x in table.splitlines() if "val/avg@k" in x)
    for column in summary.values():
        assert f"{column['val/avg@k']:.3f}" in line

    steps = {r["step"]: r for r in rl_rows if "batch/gen_rounds" in r}
    assert sorted(steps) == [1, 2]
    for r in steps.values():
        assert 1 <= r["batch/gen_rounds"] <= 3  # the recipe's max_gen_batches
        assert 0.0 <= r["reward/correct"] <= 1.0  # math-verify, scored in worker processes
    sft_rows = read_metrics(os.path.join(run_dir, "sft", "metrics.jsonl"))
    assert [r["step"] for r in sft_rows if "sft/loss" in r] == [1, 2, 3]
    assert [r["step"] for r in sft_rows if "val/sft_loss" in r] == [3]

    for stage, step in (("sft", 3), ("rl", 2)):
        with open(os.path.join(run_dir, stage, "curves.png"), "rb") as fh:
            assert fh.read(8) == PNG
        assert os.path.exists(os.path.join(run_dir, stage, "checkpoints", f"step_{step}", COMPLETE))
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert os.path.exists(os.path.join(run_dir, "sft", "hf", name))
    assert os.path.exists(os.path.join(run_dir, "config.yaml"))
