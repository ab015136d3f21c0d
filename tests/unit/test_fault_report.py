"""The paragraph ``python -m logics_rl.main`` prints when a fault ends a run (``fault_report``);
the real faults behind it are in ``tests/faults/``."""

from __future__ import annotations

import argparse

from logics_rl.checkpoint import CheckpointManager
from logics_rl.controller.errors import WorkerDiedError, WorkerTimeoutError
from logics_rl.errors import DiskFullError
from logics_rl.main import fault_report

OOM = (
    "1 worker(s) were killed due to the node running low on memory. Memory on the node (IP: "
    "10.0.0.1) was 22.22GB used / 23.54GB limit (0.944081)"
)


def args(*argv: str) -> argparse.Namespace:
    return argparse.Namespace(argv=list(argv))


def write(tmp: str) -> None:
    with open(f"{tmp}/x", "w") as fh:
        fh.write("x")


def test_a_dead_worker_with_a_checkpoint(tmp_path):
    CheckpointManager(str(tmp_path / "checkpoints")).save(6, write)
    text = fault_report(
        WorkerDiedError(1, "update_actor", OOM, pid=4242),
        str(tmp_path),
        args("--config", "r.yaml", "trainer.resume=never", "trainer.seed=1"),
        "run.log",
    )
    assert text == (
        "[red]error:[/red] worker rank 1 (pid 4242) died while running update_actor(). Cause: "
        "Ray's memory monitor killed it, the node ran low on memory.\n"
        f"Last complete checkpoint: {tmp_path}/checkpoints/step_6 (step 6). Resume from it with: "
        "python -m logics_rl.main --config r.yaml trainer.seed=1\n(trainer.max_restarts=1 makes "
        "the run restart its workers by itself.)\nFull traceback: run.log"
    )


def test_a_timeout_without_a_checkpoint_and_restarts_used(tmp_path):
    exc = WorkerTimeoutError("generate", 600, [0], "raise cluster.repeat_call_timeout_min_s")
    text = fault_report(exc, str(tmp_path), args(), "run.log", max_restarts=2)
    assert "error:[/red] generate() did not finish within 600 s on ranks [0] (raise" in text
    assert "No complete checkpoint was written yet. Re-running starts over." in text
    assert "(after 2 restart(s): trainer.max_restarts=2)" in text


def test_a_killed_worker_without_a_memory_message(tmp_path):
    text = fault_report(
        WorkerDiedError(0, "train_step", "connection error"), str(tmp_path), args(), "l"
    )
    assert "Likely cause: the process was killed with SIGKILL (the kernel's OOM killer" in text
    assert "(pid" not in text


def test_a_checkpoint_error_is_passed_through(tmp_path):
    text = fault_report(
        DiskFullError("disk full before the next checkpoint: ..."), str(tmp_path), args(), "l"
    )
    assert text.startswith("[red]error:[/red] disk full before the next checkpoint: ...\n")
    assert "max_restarts" not in text


def test_a_worker_on_a_lost_node(tmp_path):
    detail = "its node 5f3a is down (Ray marked it dead); The actor died unexpectedly"
    text = fault_report(
        WorkerDiedError(1, "train_step", detail, pid=77), str(tmp_path), args(), "l"
    )
    assert (
        "worker rank 1 (pid 77) died while running train_step(). Cause: its node 5f3a died" in text
    )
    assert "Likely cause: the process was killed with SIGKILL" not in text
