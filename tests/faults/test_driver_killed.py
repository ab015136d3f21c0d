"""The driver SIGKILLed mid-run (what the OOM killer does): nothing of the run survives it, and
running the same command again resumes from the latest complete checkpoint and ends exactly
where the uninterrupted run ends (every metric value, the final weights bit for bit, on CPU).

A real SFT run (Ray, FSDP2) in a subprocess, a checkpoint every 2 steps; the driver is killed
once step 5 is logged (in the update of step 6 or just before). Every process of its Ray
instance (head, workers, the dashboard and runtime-env agents) must be gone within 10 s: the
watcher of ``logics_rl/controller/reaper.py`` ends what Ray leaves behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil
import pytest

pytestmark = pytest.mark.faults


def rows_of(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        rows = [json.loads(x) for x in fh if x.strip()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_driver_sigkill_then_rerun_equals_the_uninterrupted_run(
    sft_recipe, sft_reference, reference_settings, assert_same_run, main_cmd, main_run, tmp_path
):
    settings = reference_settings
    run_dir = str(tmp_path / "killed")
    cmd = main_cmd(sft_recipe, run_dir, *settings)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = psutil.Process(proc.pid)
    family: dict[int, float] = {}
    names: set[str] = set()
    try:
        deadline = time.monotonic() + 300
        while not any(r["step"] >= 5 for r in _rows_or_empty(run_dir)):
            assert proc.poll() is None, "the run ended before step 5"
            assert time.monotonic() < deadline
            for p in driver.children(recursive=True):
                family.setdefault(p.pid, p.create_time())
                names.add(_name(p.pid))
            time.sleep(0.05)
        for p in driver.children(recursive=True):
            family.setdefault(p.pid, p.create_time())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert {"raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= {
        n.split("/")[-1] for n in names
    }, names
    t0 = time.monotonic()
    while _alive(family) and time.monotonic() - t0 < 10:
        time.sleep(0.2)
    assert _alive(family) == [], "processes of the killed run still running"
    print(f"\nmeasured: all processes of the killed run gone {time.monotonic() - t0:.1f} s after")

    code, out, _ = main_run(sft_recipe, run_dir, *settings)
    assert code == 0, out[-3000:]
    assert f"resumed from {run_dir}/checkpoints/step_4 at step 4" in out
    assert_same_run(run_dir, sft_reference)


def _rows_or_empty(run_dir: str) -> list[dict]:
    try:
        return rows_of(run_dir)
    except (OSError, ValueError):
        return []


def _name(pid: int) -> str:
    try:
        return psutil.Process(pid).cmdline()[0].strip()
    except (psutil.Error, IndexError):
        return ""


def _alive(family: dict[int, float]) -> list[int]:
    out = []
    for pid, created in family.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            continue
    return out
