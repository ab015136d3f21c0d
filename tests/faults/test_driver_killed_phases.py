"""The driver SIGKILLed at the two moments where a kill can do the most harm besides the update
(``test_driver_killed.py``): while the rollout engine generates, and while a checkpoint is being
written. Each time, re-running the same command resumes from the latest complete checkpoint and
ends exactly where the uninterrupted run ends (every metric value, the final weights bit for bit).
"""

from __future__ import annotations

import glob
import os
import subprocess
import threading

import pytest

pytestmark = pytest.mark.faults

# 64 tokens per sample (EOS ignored): each generation takes about 0.4 s, long enough to be
# caught in the middle.
RL_STEPS = (
    "trainer.total_steps=3",
    "trainer.save_every=1",
    "rollout.max_response_length=64",
    "rollout.sampling.ignore_eos=true",
)


def test_killed_while_writing_a_checkpoint(
    sft_recipe,
    sft_reference,
    reference_settings,
    assert_same_run,
    main_cmd,
    main_run,
    kill_process_when,
    tmp_path,
):
    run_dir = str(tmp_path / "killed")
    ckpt = os.path.join(run_dir, "checkpoints")
    tmp4 = os.path.join(ckpt, ".tmp-step_4")
    proc = subprocess.Popen(
        main_cmd(sft_recipe, run_dir, *reference_settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def writing() -> bool:  # step 4's checkpoint has begun to fill and is not complete
        try:
            return bool(os.listdir(tmp4))
        except OSError:
            return False

    kill_process_when(proc, writing, "checkpoint write of step 4", poll=0.002)
    assert not os.path.exists(os.path.join(ckpt, "step_4")), "killed too late: step_4 complete"
    assert os.path.isdir(tmp4)  # the half-written checkpoint is there ...

    code, out, _ = main_run(sft_recipe, run_dir, *reference_settings)
    assert code == 0, out[-3000:]
    # ... and is never taken for a checkpoint: the run resumes from step 2
    assert f"resumed from {run_dir}/checkpoints/step_2 at step 2" in out
    assert not glob.glob(os.path.join(ckpt, ".tmp-*"))
    assert_same_run(run_dir, sft_reference)


@pytest.fixture(scope="module")
def rl_reference(rl_recipe, main_run, tmp_path_factory) -> str:
    run_dir = str(tmp_path_factory.mktemp("rl_reference") / "run")
    code, out, _ = main_run(rl_recipe, run_dir, *RL_STEPS)
    assert code == 0, out[-3000:]
    return run_dir


def test_killed_while_generating(
    rl_recipe, rl_reference, assert_same_run, main_cmd, main_run, kill_process_when, tmp_path
):
    run_dir = str(tmp_path / "killed")
    # A heartbeat line every 0.05 s says what the driver waits for: the test kills the driver
    # while it waits for step 3's generation (steps 1 and 2 are checkpointed).
    settings = (*RL_STEPS, "cluster.heartbeat_s=0.05")
    proc = subprocess.Popen(
        main_cmd(rl_recipe, run_dir, *settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = threading.Event()
    step2 = os.path.join(run_dir, "checkpoints", "step_2", "COMPLETE")

    def watch() -> None:
        for line in proc.stderr:
            if "for generate_sequences on ranks" in line and os.path.exists(step2):
                seen.set()

    threading.Thread(target=watch, daemon=True).start()
    kill_process_when(proc, seen.is_set, "generation of step 3", poll=0.002)
    assert not os.path.exists(os.path.join(run_dir, "checkpoints", "step_3"))

    code, out, _ = main_run(rl_recipe, run_dir, *RL_STEPS)
    assert code == 0, out[-3000:]
    assert f"resumed from {run_dir}/checkpoints/step_2 at step 2" in out
    assert_same_run(run_dir, rl_reference)
