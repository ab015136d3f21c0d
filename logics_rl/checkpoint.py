"""Atomic checkpoints with a retention limit.

A checkpoint is written into ``checkpoints/.tmp-step_N``, flushed to disk, completed with a
``COMPLETE`` marker, then renamed to ``checkpoints/step_N``: a crash while writing leaves the
previous checkpoint the latest complete one. Contents: what the train engine writes (for FSDP2:
the sharded model + optimizer in ``dcp/``, ``scheduler.json``, ``hf_config/`` with the model
config and tokenizer, and ``engine.json`` naming the engine), per-rank worker state
(``worker_rank<r>.json``: RNG, rollout and actor counters), the trainer state
(``trainer_state.json``: step, data position) and the resolved ``config.yaml``.

    python -m logics_rl.export runs/x/checkpoints/step_40 out_dir    # a HF model directory
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable

COMPLETE = "COMPLETE"
_STEP = re.compile(r"^step_(\d+)$")
_OLD = re.compile(r"^\.old-step_(\d+)$")


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: str) -> None:
    """Flush every file of ``root`` (and the directories) to disk before it is marked complete."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            _fsync(os.path.join(dirpath, name))
        _fsync(dirpath)


class CheckpointManager:
    """``root/step_N`` directories; only those holding the ``COMPLETE`` marker count.

    Re-saving a step that exists (a finished run launched again) moves the old directory aside
    to ``.old-step_N`` before renaming the new one into place, so no moment exists without a
    complete copy of that step: a crash between the two renames leaves ``.old-step_N``, which
    counts until a ``step_N`` exists again.
    """

    def __init__(self, root: str, keep_last: int = 2):
        self.root = root
        self.keep_last = keep_last
        os.makedirs(root, exist_ok=True)

    def path_of(self, step: int) -> str:
        return os.path.join(self.root, f"step_{step}")

    def complete(self) -> list[tuple[int, str]]:
        """(step, path) of every complete checkpoint, oldest first."""
        found: dict[int, str] = {}
        for name in sorted(os.listdir(self.root), key=lambda n: n.startswith(".old-")):
            m = _STEP.match(name) or _OLD.match(name)
            path = os.path.join(self.root, name)
            if m and os.path.exists(os.path.join(path, COMPLETE)):
                found.setdefault(int(m.group(1)), path)  # step_N before .old-step_N
        return sorted(found.items())

    def latest(self) -> str | None:
        done = self.complete()
        return done[-1][1] if done else None

    def resume_path(self, resume: str) -> str | None:
        """The checkpoint ``trainer.resume`` selects: ``never`` none, ``auto`` the latest complete
        one here (none on a fresh run), else the given path, which must be complete."""
        if resume == "never":
            return None
        if resume == "auto":
            return self.latest()
        if not os.path.exists(os.path.join(resume, COMPLETE)):
            raise FileNotFoundError(
                f"trainer.resume={resume!r} is not a complete checkpoint (no {COMPLETE} marker); "
                "complete ones are the checkpoints/step_N directories of a run"
            )
        return resume

    def save(self, step: int, write: Callable[[str], None]) -> str:
        """Call ``write(tmp_dir)``, mark it complete, rename it into place, prune old ones."""
        tmp = os.path.join(self.root, f".tmp-step_{step}")
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
        try:
            write(tmp)
            _fsync_tree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a partial checkpoint is of no use: free it
            raise
        with open(os.path.join(tmp, COMPLETE), "w") as fh:
            fh.write(f"{step}\n")
            fh.flush()
            os.fsync(fh.fileno())
        final = self.path_of(step)
        old = os.path.join(self.root, f".old-step_{step}")
        if os.path.exists(final):
            if os.path.exists(old):
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync(self.root)
        self._prune()
        return final

    def _prune(self) -> None:
        """Drop leftovers of interrupted saves, then all but the ``keep_last`` newest."""
        for name in os.listdir(self.root):
            if name.startswith((".tmp-step_", ".old-step_")):
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
        done = self.complete()
        if self.keep_last > 0:
            for _, path in done[: -self.keep_last]:
                shutil.rmtree(path, ignore_errors=True)
