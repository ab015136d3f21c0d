"""Experiment tracking: console, jsonl, tensorboard and wandb backends (several at once), a step
progress bar with ETA, and the end-of-run PNG of the main curves.

wandb runs offline unless ``WANDB_API_KEY`` is set (then online), so a run never blocks on login.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from typing import Any

from rich.console import Console

# Shown on the console line of every step (when present), in this order.
CONSOLE_KEYS = (
    "reward/mean",
    "reward/correct",
    "val/avg@k",
    "batch/kept_groups",
    "response/length_mean",
    "actor/entropy",
    "actor/pg_loss",
    "actor/grad_norm",
    "time/step",
)


class Tracker:
    """Fan metrics out to the configured backends."""

    def __init__(
        self,
        backends: Iterable[str],
        run_dir: str,
        *,
        project: str = "logics-rl",
        name: str = "run",
        config: dict[str, Any] | None = None,
        console: Console | None = None,
    ):
        self.backends = list(backends)
        self.run_dir = run_dir
        self.console = console or Console()
        os.makedirs(run_dir, exist_ok=True)
        self.jsonl_path = os.path.join(run_dir, "metrics.jsonl")
        self._tb = None
        self._wandb = None
        unknown = set(self.backends) - {"console", "jsonl", "tensorboard", "wandb"}
        if unknown:
            raise ValueError(f"unknown tracking backends {sorted(unknown)}")
        if "tensorboard" in self.backends:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=os.path.join(run_dir, "tensorboard"))
        if "wandb" in self.backends:
            import wandb

            mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
            self._wandb = wandb.init(
                project=project, name=name, dir=run_dir, config=config or {}, mode=mode
            )

    def log(self, metrics: dict[str, float], step: int) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        if "jsonl" in self.backends:
            with open(self.jsonl_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": step, **_finite(clean)}) + "\n")
        if "console" in self.backends:
            shown = [
                f"{k.split('/')[-1] if k != 'val/avg@k' else 'val@k'}={_fmt(clean[k])}"
                for k in CONSOLE_KEYS
                if k in clean
            ]
            self.console.print(f"[bold]step {step}[/bold] " + " ".join(shown), highlight=False)
        if self._tb is not None:
            for k, v in clean.items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(clean, step=step)

    def truncate_after(self, step: int) -> list[dict[str, Any]]:
        """Drop jsonl rows logged after ``step`` (an interrupted run's, superseded on resume);
        returns the rows kept."""
        rows = [r for r in read_metrics(self.jsonl_path) if r["step"] <= step]
        with open(self.jsonl_path, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
        return rows

    def close(self) -> None:
        """Flush and close the backends (idempotent: trainers call it on every exit path)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _finite(d: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None) for k, v in d.items()}


def _fmt(v: float) -> str:
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3):
        return f"{v:.2e}"
    return f"{v:.4g}"


class PhaseTimer:
    """``with timer("generate"): ...`` accumulates seconds per phase into ``time/<phase>``.

    ``time/step`` is the wall time from the timer's creation to ``metrics()``; ``time/other``
    is the part of it outside every named phase (batch assembly, metrics, the progress bar).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.t0 = time.perf_counter()

    def __call__(self, phase: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[phase] = timer.seconds.get(phase, 0.0) + time.perf_counter() - self.t0

        return _Ctx()

    def metrics(self) -> dict[str, float]:
        out = {f"time/{k}": v for k, v in self.seconds.items()}
        wall = time.perf_counter() - self.t0
        out["time/step"] = wall
        out["time/other"] = max(0.0, wall - sum(self.seconds.values()))
        return out


def read_metrics(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


PLOT_PANELS = (
    ("reward", ("reward/mean",)),
    ("accuracy", ("reward/correct", "val/avg@k")),
    ("response length (tokens)", ("response/length_mean",)),
    ("entropy", ("actor/entropy",)),
)


def plot_curves(metrics_path: str, out_png: str, title: str = "") -> str | None:
    """A 2x2 PNG of reward, accuracy (train and validation), response length and entropy."""
    rows = read_metrics(metrics_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (label, keys) in zip(axes.flat, PLOT_PANELS):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(
                    xs, ys, marker="o" if key.startswith("val/") else None, markersize=3, label=key
                )
        ax.set_title(label)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
