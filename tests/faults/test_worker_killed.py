"""A worker SIGKILLed mid-run: the user reads one paragraph, not a traceback; with
``trainer.max_restarts=1`` the run restarts its workers itself and ends exactly where the
uninterrupted run ends.

A real SFT run (Ray, FSDP2) in a subprocess; once it has logged step 3 (a checkpoint at every
step), its worker process is SIGKILLed. The driver exits with code 3 within seconds, printing
which rank and pid died in which call, the likely cause, the last complete checkpoint with its
step, and the command that resumes; the traceback goes to run.log only; no process of the run is
left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil
import pytest

from logics_rl.checkpoint import find_latest, verify

pytestmark = pytest.mark.faults


def worker_pid(driver: psutil.Process, name: str, rank: int = 0) -> int | None:
    """The pid of the run's ``name`` actor of ``rank`` (its environment carries RANK)."""
    for p in driver.children(recursive=True):
        try:
            cmd = p.cmdline()
            if cmd and cmd[0].startswith(f"ray::{name}") and p.environ().get("RANK") == str(rank):
                return p.pid
        except psutil.Error:
            continue
    return None


def logged_steps(run_dir: str) -> int:
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
            return max((json.loads(x).get("step", 0) for x in fh if x.strip()), default=0)
    except (OSError, ValueError):
        return 0


def start_until(cmd: list[str], run_dir: str, step: int) -> subprocess.Popen:
    """Start the run and return once it has logged ``step`` (the run still going)."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "2000"},
    )
    deadline = time.monotonic() + 300
    while logged_steps(run_dir) < step:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the run did not reach step {step}: {proc.stdout.read()[-3000:]}")
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("ranks", [1, 2])
def test_sigkill_of_the_worker_is_reported_in_one_paragraph(sft_recipe, main_cmd, tmp_path, ranks):
    """One rank: it is killed; two ranks (one CPU each): rank 1 is killed."""
    run_dir = str(tmp_path / "run")
    layout = [f"cluster.procs_per_node={ranks}", f"cluster.cpus_per_proc={2 // ranks}"]
    cmd = main_cmd(sft_recipe, run_dir, "sft.total_steps=500", *layout)
    proc = start_until(cmd, run_dir, 3)
    driver = psutil.Process(proc.pid)
    try:
        victim = ranks - 1
        pid = worker_pid(driver, "SFTWorker", victim)
        assert pid is not None
        family = [p.pid for p in driver.children(recursive=True)]
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        out, _ = proc.communicate(timeout=120)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, out[-3000:]
    assert took < 60, took
    print(
        f"\nmeasured: SIGKILL of rank {victim} of {ranks} -> exit 3, the paragraph in {took:.1f} s"
    )
    last, step = find_latest(run_dir)
    verify(last)
    assert step >= 2
    expected = (
        f"error: worker rank {victim} (pid {pid}) died while running ",
        "Likely cause: the process was killed with SIGKILL (the kernel's OOM killer",
        "(trainer.max_restarts=1 makes the run restart its workers by itself.)",
        f"Last complete checkpoint: {last} (step {step}).",
        f"Resume from it with: python -m logics_rl.main --config {sft_recipe} "
        f"trainer.run_dir={run_dir} sft.total_steps=500 {' '.join(layout)}",
        f"Full traceback: {os.path.join(run_dir, 'run.log')}",
    )
    for text in expected:
        assert text in out, (text, out[-3000:])
    assert "Traceback (most recent call last)" not in out
    with open(os.path.join(run_dir, "run.log")) as fh:
        log = fh.read()
    assert "Traceback (most recent call last)" in log and "WorkerDiedError" in log
    alive = family
    for _ in range(60):  # the run's processes (and the reaper that watches it) exit by themselves
        alive = [
            p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
        ]
        if not alive:
            break
        time.sleep(0.25)
    assert alive == [], [psutil.Process(p).cmdline()[:1] for p in alive]


def test_max_restarts_recovers_and_equals_the_uninterrupted_run(
    sft_recipe, sft_reference, reference_settings, assert_same_run, main_cmd, tmp_path
):
    run_dir = str(tmp_path / "run")
    cmd = main_cmd(sft_recipe, run_dir, *reference_settings, "trainer.max_restarts=1")
    proc = start_until(cmd, run_dir, 5)
    driver = psutil.Process(proc.pid)
    try:
        pid = worker_pid(driver, "SFTWorker")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert f"sft: worker rank 0 (pid {pid}) died while running " in out
    assert "restart 1 of 1: new workers, resuming from step 4" in out
    assert f"resumed from {run_dir}/checkpoints/step_4 at step 4" in out
    assert_same_run(run_dir, sft_reference)
