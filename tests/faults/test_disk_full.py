"""A full checkpoint filesystem is named as such (a real tmpfs, a real SFT run).

- room for two checkpoints (keep_last=2), not three: the third save is refused before it starts,
  with "disk full: need X MB at PATH, have Y MB free"; both earlier checkpoints stay complete and
  verified; re-running with ``trainer.prune_before_save=true`` resumes and finishes in the same
  space;
- room for less than one checkpoint: the write itself fails (ENOSPC inside the worker) and the
  user reads "disk full while writing step_1", not a serializer's internal error.

Mounting a tmpfs needs root (CAP_SYS_ADMIN); elsewhere the test is skipped and says so.
"""

from __future__ import annotations

import os
import re
import subprocess
from contextlib import contextmanager

import pytest

from logics_rl.checkpoint import verify

pytestmark = pytest.mark.faults


@contextmanager
def tmpfs(path: str, size_mb: int):
    os.makedirs(path, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", path],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def test_no_room_for_the_next_checkpoint(sft_recipe, main_run, tmp_path):
    run_dir = str(tmp_path / "run")
    root = os.path.join(run_dir, "checkpoints")
    with tmpfs(root, 12):  # a checkpoint of the tiny model and its optimizer: about 5 MB
        code, out, seconds = main_run(sft_recipe, run_dir, "sft.total_steps=4")
        assert code == 3, out[-3000:]
        print(f"\nmeasured: no room for step_3 -> exit 3 after a {seconds:.0f} s run")
        assert re.search(
            r"error: disk full before the next checkpoint: need 4\.\d MB at "
            + re.escape(root)
            + r", have [0-3]\.\d MB free; the last complete checkpoint is .*step_2\. To go on: "
            r"free space there, lower trainer.keep_last \(now 2\), or set "
            r"trainer.prune_before_save=true",
            out,
        ), out[-3000:]
        assert "Traceback" not in out
        assert sorted(os.listdir(root)) == ["step_1", "step_2"]
        for step in (1, 2):
            verify(os.path.join(root, f"step_{step}"))
        code, out, _ = main_run(
            sft_recipe, run_dir, "sft.total_steps=4", "trainer.prune_before_save=true"
        )
        assert code == 0, out[-3000:]
        assert f"resumed from {root}/step_2 at step 2" in out
        assert sorted(os.listdir(root)) == ["step_3", "step_4"]
        verify(os.path.join(root, "step_4"))


def test_a_write_that_runs_out_of_space(sft_recipe, main_run, tmp_path):
    run_dir = str(tmp_path / "run")
    root = os.path.join(run_dir, "checkpoints")
    with tmpfs(root, 2):
        code, out, seconds = main_run(sft_recipe, run_dir)
        assert code == 3, out[-3000:]
        print(f"\nmeasured: ENOSPC while writing step_1 -> exit 3 after a {seconds:.0f} s run")
        assert re.search(
            r"error: disk full while writing step_1: need more than \d\.\d MB at "
            + re.escape(root)
            + r", have \d\.\d MB free; no complete checkpoint yet\. To go on: free space there, "
            r"or put trainer.run_dir on a larger disk\.",
            out,
        ), out[-3000:]
        assert "enforce fail" not in out and "Traceback" not in out
        assert os.listdir(root) == []  # the partial checkpoint was removed
