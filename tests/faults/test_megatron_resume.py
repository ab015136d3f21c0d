"""The Megatron engine through the real stack (Ray, the hybrid worker, weight sync into the
rollout engine after every update), tensor parallel over 2 ranks: the driver SIGKILLed after a
checkpoint, the same command re-run, and the finished run equals an uninterrupted one (every
metric value; every tensor of the last checkpoint: each rank's weight and Adam moment chunks)."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.faults

pytest.importorskip("megatron.core")

MEGATRON = (
    "actor.engine=megatron",
    "actor.parallel.tensor=2",
    "cluster.procs_per_node=2",
    "cluster.cpus_per_proc=1",
    "trainer.total_steps=4",
    "trainer.save_every=2",
)


def test_megatron_tp2_resume_after_driver_sigkill_equals_the_uninterrupted_run(
    rl_recipe, main_run, main_cmd, kill_run_after, assert_same_run, tmp_path
):
    from logics_rl.checkpoint import COMPLETE

    want = str(tmp_path / "uninterrupted")
    code, out, _ = main_run(rl_recipe, want, *MEGATRON)
    assert code == 0, out[-3000:]
    assert "2 rank(s) on CPU" in out
    # every sync's parity probe: the vLLM / HF rollout engine scores what the actor scores
    probes = [
        r["weight_sync/probe_abs_diff_max"]
        for r in _rows(want)
        if "weight_sync/probe_abs_diff_max" in r
    ]
    assert len(probes) == 4 and max(probes) <= 1e-3, probes

    got = str(tmp_path / "killed")
    marker = os.path.join(got, "checkpoints", "step_2", COMPLETE)
    kill_run_after(main_cmd(rl_recipe, got, *MEGATRON), marker, "the checkpoint of step 2")
    assert not os.path.exists(os.path.join(got, "checkpoints", "step_4"))
    code, out, _ = main_run(rl_recipe, got, *MEGATRON)
    assert code == 0, out[-3000:]
    assert f"resumed from {got}/checkpoints/step_2 at step 2" in out
    assert_same_run(got, want)


def _rows(run_dir: str) -> list[dict]:
    import json

    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        return [json.loads(x) for x in fh if x.strip()]
