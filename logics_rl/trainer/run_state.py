"""``RunState``: what every stage's run keeps between steps and across restarts.

The step counter, the data sampler, the checkpoint manager and the tracker, with one way to save
and resume. A checkpoint holds the workers' state (written by ``workers.save_checkpoint``),
``trainer_state.json`` (the step, the sampler position and whatever the stage adds) and the
resolved ``config.yaml``. Resuming restores them in an order that fails fast (the data first)
and drops metrics an interrupted run logged after the checkpoint.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from typing import Any

from rich.console import Console

from logics_rl.checkpoint import CheckpointManager, read_json
from logics_rl.config.loader import to_yaml
from logics_rl.config.schema import Config, OnNonFinite
from logics_rl.data.sampler import EpochSampler
from logics_rl.errors import TrainingError
from logics_rl.tracking import Tracker, plot_curves

TRAINER_STATE = "trainer_state.json"


class RunState:
    """Step, sampler, checkpoints and tracking of one stage's run in ``run_dir``."""

    def __init__(
        self,
        cfg: Config,
        run_dir: str,
        sampler: EpochSampler,
        *,
        name: str,
        console: Console,
    ):
        t = cfg.trainer
        self.cfg, self.run_dir, self.sampler, self.console = cfg, run_dir, sampler, console
        self.step = 0
        self.nonfinite_steps = 0  # optimizer steps skipped for a non-finite loss or gradient
        self.ckpt = CheckpointManager(
            os.path.join(run_dir, "checkpoints"),
            t.keep_last,
            prune_before_save=t.prune_before_save,
            on_corrupt=t.on_corrupt_checkpoint.value,
            warn=lambda msg: console.print(f"[yellow]warning:[/yellow] {msg}", highlight=False),
        )
        self.tracker = Tracker(
            t.loggers, run_dir, project=t.project, name=name, config=asdict(cfg), console=console
        )

    def due(self, every: int) -> bool:
        """Whether a cadence of ``every`` steps falls on this step (0: never)."""
        return every > 0 and self.step % every == 0

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.tracker.log(metrics, self.step if step is None else step)

    def save(self, workers, extra: dict[str, Any] | None = None) -> str:
        """An atomic checkpoint of the workers and the trainer state (plus ``extra``)."""
        state = {
            "step": self.step,
            "sampler": self.sampler.state_dict(),
            "nonfinite_steps": self.nonfinite_steps,
            **(extra or {}),
        }

        def write(tmp: str) -> None:
            workers.save_checkpoint(tmp)
            with open(os.path.join(tmp, TRAINER_STATE), "w", encoding="utf-8") as fh:
                json.dump(state, fh)
            with open(os.path.join(tmp, "config.yaml"), "w", encoding="utf-8") as fh:
                fh.write(to_yaml(self.cfg))

        return self.ckpt.save(self.step, write)

    def resume(self, workers) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """Restore the checkpoint ``trainer.resume`` selects, if any.

        Returns the trainer state (with the stage's extras) and the metrics rows kept up to the
        checkpoint's step, or None on a fresh run.
        """
        path = self.ckpt.resume_path(self.cfg.trainer.resume)
        if path is None:
            return None
        state = read_json(os.path.join(path, TRAINER_STATE))
        self.sampler.load_state_dict(state["sampler"])  # first: fails fast if the data changed
        workers.load_checkpoint(path)
        self.step = int(state["step"])
        self.nonfinite_steps = int(state.get("nonfinite_steps", 0))
        rows = self.tracker.truncate_after(self.step)
        self.console.print(f"resumed from {path} at step {self.step}")
        return state, rows

    def check_finite(
        self, metrics: dict[str, float], keys: tuple[str, ...], skipped: float
    ) -> None:
        """Apply ``trainer.on_nonfinite`` to this step's update.

        ``keys`` name the loss and gradient-norm metrics; ``skipped`` is how many optimizer steps
        the engine skipped because the gradient norm was not finite (it never applies one).
        ``skip`` counts them and goes on until more than ``trainer.max_nonfinite_steps`` were
        skipped over the run; ``stop`` raises at the first. Adds ``train/nonfinite_steps``."""
        bad = [k for k in keys if not math.isfinite(metrics.get(k, 0.0))]
        if bad or skipped:
            t = self.cfg.trainer
            self.nonfinite_steps += max(1, int(skipped))
            what = (
                f"step {self.step}: non-finite {', '.join(bad) or 'gradient'}; "
                f"{int(skipped)} optimizer step(s) skipped (the weights did not move on them)"
            )
            limit = t.max_nonfinite_steps
            if t.on_nonfinite == OnNonFinite.stop or self.nonfinite_steps > limit:
                why = (
                    "trainer.on_nonfinite=stop"
                    if t.on_nonfinite == OnNonFinite.stop
                    else f"{self.nonfinite_steps} so far, over trainer.max_nonfinite_steps={limit}"
                )
                raise TrainingError(
                    f"{what}; stopping ({why}); the last good checkpoint is "
                    f"{self.latest_checkpoint()}"
                )
            self.console.print(
                f"[yellow]warning:[/yellow] {what}; going on ({self.nonfinite_steps} of "
                f"trainer.max_nonfinite_steps={limit})",
                highlight=False,
            )
        metrics["train/nonfinite_steps"] = float(self.nonfinite_steps)

    def latest_checkpoint(self) -> str | None:
        return self.ckpt.latest()

    def finish(self, title: str) -> None:
        """The curves PNG (when configured), then close the tracker."""
        if self.cfg.trainer.plot:
            plot_curves(
                self.tracker.jsonl_path, os.path.join(self.run_dir, "curves.png"), title=title
            )
        self.close()

    def close(self) -> None:
        self.tracker.close()  # idempotent: a run that raised still flushes tensorboard / wandb
