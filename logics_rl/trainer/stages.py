"""A run is a list of stages, each taking the previous stage's output: ``mode`` names the list.

    rl       RL from model.path
    sft      SFT from model.path
    sft_rl   SFT, then RL from the SFT weights (the Logics-STEM two-stage recipe)

A stage is an object with a ``name`` and ``run(ctx) -> StageOutput``; it reads the model the
previous stage produced from the context and leaves its own (an HF directory) plus the held-out
metrics it measured. The before / after report is built from the stages that ran. New stages
(curation, evaluation, the failure-driven loop) are new entries here, not new branches.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from logics_rl.config.schema import Config, Mode
from logics_rl.trainer.setup import prepare_run_dir, resolve_data, resolve_model


@dataclass
class StageOutput:
    model_path: str  # the model the next stage starts from
    metrics: dict[str, float] = field(default_factory=dict)  # the stage's final metrics
    # held-out evaluation columns for the report: {"column title": metrics}
    report: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class RunContext:
    cfg: Config
    run_dir: str
    console: Console
    model_path: str  # the current model: model.path, then each stage's output
    stages: int = 1  # how many stages the run has (a lone stage writes into run_dir itself)


@contextlib.contextmanager
def _trainer(cls, ctx: RunContext, name: str):
    """A stage's trainer in its run directory (``run_dir/<name>`` when several stages run),
    shut down however the stage ends."""
    run_dir = ctx.run_dir if ctx.stages == 1 else os.path.join(ctx.run_dir, name)
    trainer = cls(ctx.cfg, ctx.model_path, run_dir, ctx.console)
    try:
        yield trainer
    finally:
        trainer.shutdown()


class SFTStage:
    name = "sft"

    def run(self, ctx: RunContext) -> StageOutput:
        from logics_rl.trainer.sft import SFTTrainer

        with _trainer(SFTTrainer, ctx, self.name) as trainer:
            metrics = trainer.fit()
            hf = trainer.export_hf(os.path.join(trainer.run_dir, "hf"))
        ctx.console.print(f"SFT model exported to {hf}")
        return StageOutput(hf, metrics)


class RLStage:
    name = "rl"

    def run(self, ctx: RunContext) -> StageOutput:
        from logics_rl.trainer.rl import RLTrainer

        with _trainer(RLTrainer, ctx, self.name) as trainer:
            after = trainer.fit()
        two = ctx.stages > 1
        before_title = "SFT (stage one)" if two else "initial policy"
        after_title = "SFT + RL (stage two)" if two else "after RL"
        report = {before_title: trainer.initial_val, after_title: after}
        return StageOutput(ctx.model_path, after, report)


STAGES = {"sft": SFTStage, "rl": RLStage}
MODES = {Mode.rl: ["rl"], Mode.sft: ["sft"], Mode.sft_rl: ["sft", "rl"]}


def run(cfg: Config, console: Console | None = None) -> dict[str, StageOutput]:
    """Run the stages ``cfg.mode`` names, in order; returns each stage's output by name."""
    console = console or Console()
    run_dir = prepare_run_dir(cfg)
    cfg = resolve_data(cfg, run_dir)
    names = MODES[cfg.mode]
    ctx = RunContext(cfg, run_dir, console, resolve_model(cfg, run_dir), stages=len(names))
    console.print(f"run directory: {run_dir}")
    outputs: dict[str, StageOutput] = {}
    for name in names:
        out = STAGES[name]().run(ctx)
        outputs[name] = out
        ctx.model_path = out.model_path
    report = {title: m for out in outputs.values() for title, m in out.report.items()}
    if report:
        write_report(console, run_dir, report)
    return outputs


def write_report(console: Console, run_dir: str, columns: dict[str, dict[str, float]]) -> None:
    """Held-out avg@k / pass@k per model (and per data source), printed and saved as JSON."""
    keys = sorted(
        {
            k
            for m in columns.values()
            for k in m
            if k.startswith("val/") and ("avg@k" in k or "pass@k" in k)
        }
    )
    keys.sort(key=lambda k: (k.count("/"), k))
    table = Table(title="held-out evaluation")
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for k in keys:
        table.add_row(k, *[f"{columns[c][k]:.3f}" if k in columns[c] else "-" for c in columns])
    console.print(table)
    with open(os.path.join(run_dir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(columns, fh, indent=2)
