"""NaN in a real run's loss (a policy-loss plugin, loaded by import path in the Ray worker, that
returns NaN on one call): GRPO of the tiny model through Ray and FSDP2.

- ``trainer.on_nonfinite=skip`` (the default): the step's optimizer step is skipped and counted,
  a warning names the step, the run finishes, and every weight of every checkpoint is finite;
- ``trainer.on_nonfinite=stop``: the run stops at that step with exit 3 and a message naming
  the step, the policy and the last good checkpoint, which stays complete and finite."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from logics_rl.checkpoint import verify

pytestmark = pytest.mark.faults

PLUGIN = '''
from logics_rl.algorithms.policy_losses import ppo_clip

CALLS = [0]


def nan_on_call(inp, nan_call: int = 2, **params):
    """ppo_clip, except that call number ``nan_call`` of this process returns NaN."""
    CALLS[0] += 1
    out = ppo_clip(inp, **params)
    if CALLS[0] == nan_call:
        out.loss_BT = out.loss_BT * float("nan")
    return out
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("nan_plugin")
    (d / "nan_plugin.py").write_text(PLUGIN)
    return str(d)


def run(main_run, rl_recipe, plugin_dir, run_dir, *extra):
    return main_run(
        rl_recipe,
        run_dir,
        "trainer.total_steps=3",
        "algorithm.policy_loss.name=nan_plugin:nan_on_call",
        "algorithm.policy_loss.params={nan_call: 2}",
        *extra,
        env={"PYTHONPATH": os.pathsep.join([plugin_dir, os.environ.get("PYTHONPATH", "")])},
    )


def finite(checkpoint: str) -> bool:
    verify(checkpoint)
    shards = load_file(os.path.join(checkpoint, "shards", "rank00000.safetensors"))
    return all(torch.isfinite(t).all() for t in shards.values() if t.is_floating_point())


def test_skip_counts_the_step_and_goes_on(main_run, rl_recipe, plugin_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    code, out, _ = run(main_run, rl_recipe, plugin_dir, run_dir)
    assert code == 0, out[-3000:]
    assert "warning: step 2: non-finite actor/pg_loss, actor/grad_norm; 1 optimizer step(s)" in out
    assert "(1 of trainer.max_nonfinite_steps=3)" in out
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        rows = {r["step"]: r for r in map(json.loads, fh) if "actor/skipped_steps" in r}
    assert [rows[s]["actor/skipped_steps"] for s in (1, 2, 3)] == [0.0, 1.0, 0.0]
    assert [rows[s]["train/nonfinite_steps"] for s in (1, 2, 3)] == [0.0, 1.0, 1.0]
    assert rows[2]["actor/grad_norm"] is None  # NaN is written as null
    ckpts = os.path.join(run_dir, "checkpoints")
    for name in os.listdir(ckpts):
        assert finite(os.path.join(ckpts, name)), name


def test_stop_ends_the_run_at_that_step(main_run, rl_recipe, plugin_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    code, out, _ = run(main_run, rl_recipe, plugin_dir, run_dir, "trainer.on_nonfinite=stop")
    assert code == 3, out[-3000:]
    assert "error: step 2: non-finite actor/pg_loss, actor/grad_norm; 1 optimizer step(s)" in out
    assert "stopping (trainer.on_nonfinite=stop); the last good checkpoint is " in out
    assert "Traceback" not in out
    ckpts = os.path.join(run_dir, "checkpoints")
    assert os.listdir(ckpts) == ["step_1"] and finite(os.path.join(ckpts, "step_1"))
