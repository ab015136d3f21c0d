"""Fault-suite helpers: a small SFT run of the tiny model through ``python -m logics_rl.main``
(real Ray, FSDP2 over gloo, real checkpoints) in a subprocess the tests can kill, starve of disk
or tamper with."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

from logics_rl.config.schema import SyntheticDataConfig
from logics_rl.data.synthetic import write_task


@pytest.fixture(scope="session")
def task_files(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("fault_data")
    cfg = SyntheticDataConfig(task="arithmetic", train_size=64, val_size=4, max_digits=2, seed=3)
    return write_task(cfg, str(out))


@pytest.fixture(scope="session")
def rl_recipe(tiny_model, task_files, tmp_path_factory) -> str:
    """A recipe: two GRPO steps of the tiny model (HF rollout engine), a checkpoint every step."""
    recipe = {
        "mode": "rl",
        "model": {"path": tiny_model},
        "data": {"train_files": [task_files["rl_train"]], "max_prompt_length": 128},
        "rollout": {"engine": "hf", "n": 2, "max_response_length": 8},
        "validation": {"at_start": False, "at_end": False},
        "trainer": {
            "prompts_per_step": 2,
            "total_steps": 2,
            "save_every": 1,
            "progress": False,
            "plot": False,
        },
        "cluster": {"call_timeout_s": 600},
    }
    path = tmp_path_factory.mktemp("fault_rl") / "rl.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


@pytest.fixture(scope="session")
def sft_recipe(tiny_model, task_files, tmp_path_factory) -> str:
    """A recipe: SFT of the tiny model on arithmetic, a checkpoint every step, no validation."""
    out = tmp_path_factory.mktemp("fault_sft")
    files = task_files
    recipe = {
        "mode": "sft",
        "model": {"path": tiny_model},
        "sft": {
            "train_files": [files["sft_train"]],
            "max_length": 256,
            "batch_size": 8,
            "total_steps": 2,
            "save_every": 1,
            "optim": {"lr": 1e-3, "warmup_steps": 1},
        },
        "trainer": {"progress": False, "plot": False, "keep_last": 2},
        "cluster": {"call_timeout_s": 600},
    }
    path = out / "sft.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def main_command(recipe: str, run_dir: str, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "logics_rl.main",
        "--config",
        recipe,
        f"trainer.run_dir={run_dir}",
        *overrides,
    ]


def run_main(recipe: str, run_dir: str, *overrides: str, timeout: float = 600, env=None):
    """Run to the end; (exit code, console output, seconds)."""
    t0 = time.monotonic()
    proc = subprocess.run(
        main_command(recipe, run_dir, *overrides),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "2000", **(env or {})},
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - t0


@pytest.fixture(scope="session")
def main_run():
    """``run_main`` for the tests: (exit code, console output, seconds) of a whole run."""
    return run_main


def kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 400, poll=0.1) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds (checked every ``poll`` seconds); fails if
    the run ends first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"the run ended before {what}"
            assert time.monotonic() < deadline, f"no {what} in {timeout:.0f} s"
            time.sleep(poll)
    finally:
        proc.kill()  # SIGKILL
        proc.wait(30)


def kill_after(cmd: list[str], marker: str, what: str, timeout: float = 400) -> None:
    """Start ``cmd`` and SIGKILL it as soon as a file matching the glob ``marker`` exists (the
    step ``what`` finished)."""
    import glob

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, lambda: glob.glob(marker), f"{what} finished", timeout)


@pytest.fixture(scope="session")
def kill_process_when():
    """``kill_when``: SIGKILL a started process once a condition holds."""
    return kill_when


@pytest.fixture(scope="session")
def kill_run_after():
    """``kill_after``: run a command and SIGKILL it once a step's marker file exists."""
    return kill_after


@pytest.fixture(scope="session")
def main_cmd():
    """``main_command``: the argv of ``python -m logics_rl.main`` for a recipe and run dir."""
    return main_command


REFERENCE = ("sft.total_steps=8", "sft.save_every=2")


@pytest.fixture(scope="session")
def sft_reference(sft_recipe, tmp_path_factory) -> str:
    """The run dir of an uninterrupted SFT run with the ``REFERENCE`` settings."""
    run_dir = str(tmp_path_factory.mktemp("sft_reference") / "run")
    code, out, _ = run_main(sft_recipe, run_dir, *REFERENCE)
    assert code == 0, out[-3000:]
    return run_dir


def _measured(key: str) -> bool:
    """Metrics of the machine, not of the run: wall-clock times, throughput, memory."""
    return key.startswith(("time/", "throughput/", "memory/")) or key.endswith("/seconds")


def same_run(got_dir: str, want_dir: str) -> None:
    """Every metric value (times, throughput and memory aside) and the final weights, bit for
    bit."""
    import json

    def rows(d: str) -> list[dict]:
        with open(os.path.join(d, "metrics.jsonl")) as fh:
            rows = [json.loads(x) for x in fh if x.strip()]
        return [{k: v for k, v in r.items() if not _measured(k)} for r in rows]

    assert rows(got_dir) == rows(want_dir)
    got, want = _final_tensors(got_dir), _final_tensors(want_dir)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].equal(want[k]), k


def _final_tensors(run_dir: str) -> dict:
    """The exported weights (``hf/``, SFT) or, without an export (RL), every tensor of the last
    checkpoint's shards: the weights and the optimizer state."""
    import glob

    from safetensors.torch import load_file

    hf = os.path.join(run_dir, "hf", "model.safetensors")
    if os.path.exists(hf):
        return load_file(hf)
    from logics_rl.checkpoint import find_latest

    path, _ = find_latest(run_dir)
    out = {}
    for shard in sorted(glob.glob(os.path.join(path, "shards", "*.safetensors"))):
        out.update({f"{os.path.basename(shard)}:{k}": v for k, v in load_file(shard).items()})
    assert out, f"no weights in {path}"
    return out


@pytest.fixture(scope="session")
def reference_settings():
    return REFERENCE


@pytest.fixture(scope="session")
def assert_same_run():
    return same_run
