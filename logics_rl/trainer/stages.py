"""A run is a list of stages, each taking the previous stage's output: ``mode`` names the list.

    rl       RL from model.path
    sft      SFT from model.path
    sft_rl   SFT, then RL from the SFT weights (the Logics-STEM two-stage recipe)
    curate   the data engine: raw question / answer files in, SFT and RL sets out
    eval     evaluate model.path (an HF directory or a checkpoint) on benchmark files
    failure_loop   model.path's verified failures -> targeted RL data (also inside sft_rl when
             failure_loop.enabled: SFT, the loop on the SFT model, RL on the mixed data; with
             failure_loop.sft_steps, SFT on the loop's worked solutions before RL)

A stage is an object with a ``name`` and ``run(ctx) -> StageOutput``; it reads the model the
previous stage produced from the context and leaves its own (an HF directory) plus the held-out
metrics it measured. The before / after report is built from the stages that ran. New stages
(curation, evaluation, the failure-driven loop) are new entries here, not new branches.

A worker that dies or hangs during a stage ends the run, or, with ``trainer.max_restarts``, the
stage shuts its trainer down and starts a new one that resumes from its latest checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from logics_rl.config.schema import Config, Mode, SFTConfig
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
    loop_sft_file: str | None = None  # the failure loop's continued-SFT set, when it wrote one
    before_rl: str = "SFT (stage one)"  # what the RL stage starts from, in the report


@contextlib.contextmanager
def _trainer(cls, ctx: RunContext, name: str, cfg: Config | None = None):
    """A stage's trainer in its run directory (``run_dir/<name>`` when several stages run),
    shut down however the stage ends."""
    trainer = cls(cfg or ctx.cfg, ctx.model_path, _stage_dir(ctx, name), ctx.console)
    try:
        yield trainer
    finally:
        trainer.shutdown()


def _stage_dir(ctx: RunContext, name: str) -> str:
    return ctx.run_dir if ctx.stages == 1 else os.path.join(ctx.run_dir, name)


def _with_restarts(ctx: RunContext, name: str, body, cfg: Config | None = None):
    """``body(cfg)`` (``cfg``: the run's by default), again after a worker died or hung, up to
    ``trainer.max_restarts`` times:
    the failed trainer is shut down (its workers killed, its resources released) and a new one
    resumes from the stage's latest complete checkpoint, as a re-run of the command would."""
    from logics_rl.checkpoint import find_latest
    from logics_rl.controller.errors import WorkerDiedError, WorkerTimeoutError

    cfg = cfg or ctx.cfg
    limit = cfg.trainer.max_restarts
    for attempt in range(limit + 1):
        try:
            return body(cfg)
        except (WorkerDiedError, WorkerTimeoutError) as exc:
            if attempt == limit:
                raise
            found = find_latest(os.path.join(_stage_dir(ctx, name), "checkpoints"))
            if found:
                cfg = dataclasses.replace(
                    cfg, trainer=dataclasses.replace(cfg.trainer, resume=found[0])
                )
            where = f"step {found[1]} ({found[0]})" if found else "the start (no checkpoint yet)"
            ctx.console.print(
                f"[yellow]{name}: {str(exc).splitlines()[0]}; restart {attempt + 1} of {limit}: "
                f"new workers, resuming from {where}[/yellow]",
                highlight=False,
            )
    raise AssertionError("unreachable")


class SFTStage:
    name = "sft"

    def run(self, ctx: RunContext) -> StageOutput:
        from logics_rl.trainer.sft import SFTTrainer

        def body(cfg: Config) -> tuple[dict[str, float], str]:
            with _trainer(SFTTrainer, ctx, self.name, cfg) as trainer:
                metrics = trainer.fit()
                return metrics, trainer.export_hf(os.path.join(trainer.run_dir, "hf"))

        metrics, hf = _with_restarts(ctx, self.name, body)
        ctx.console.print(f"SFT model exported to {hf}")
        return StageOutput(hf, metrics)


class RLStage:
    name = "rl"

    def run(self, ctx: RunContext) -> StageOutput:
        from logics_rl.trainer.rl import RLTrainer

        def body(cfg: Config):
            with _trainer(RLTrainer, ctx, self.name, cfg) as trainer:
                return trainer, trainer.fit()

        trainer, after = _with_restarts(ctx, self.name, body)
        two = ctx.stages > 1
        before_title = ctx.before_rl if two else "initial policy"
        after_title = "SFT + RL (stage two)" if two else "after RL"
        report = {before_title: trainer.initial_val, after_title: after}
        return StageOutput(ctx.model_path, after, report)


def _resolver(ctx: RunContext):
    """A model setting (None: model.path, ``tiny`` / ``smollm2``, or a directory) -> directory."""

    def model_path(name: str | None) -> str:
        if name is None or name in ("tiny", "smollm2"):
            cfg = ctx.cfg
            if name is not None:
                cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, path=name))
            return resolve_model(cfg, ctx.run_dir)
        return name

    return model_path


class CurateStage:
    """The data engine (``logics_rl.curate``): leaves the curated SFT and RL sets in the run
    directory's ``output/`` and the model untouched."""

    name = "curate"

    def run(self, ctx: RunContext) -> StageOutput:
        from logics_rl.curate.pipeline import run_curate

        run_curate(ctx.cfg, _stage_dir(ctx, self.name), ctx.console, _resolver(ctx))
        return StageOutput(ctx.model_path)


class FailureLoopStage:
    """The failure-driven loop (``logics_rl.failure_loop``) on the current model: its verified
    failures become targeted questions mixed into the RL data the next stage trains on."""

    name = "failure_loop"

    def run(self, ctx: RunContext) -> StageOutput:
        from logics_rl.failure_loop.loop import FailureLoop

        root = os.path.join(ctx.run_dir, "failure_loop")
        resolve = _resolver(ctx)
        report = FailureLoop(ctx.cfg, root, ctx.console, ctx.model_path, resolve).run()
        data = dataclasses.replace(ctx.cfg.data, train_files=[report["train_file"]])
        ctx.cfg = dataclasses.replace(ctx.cfg, data=data)
        ctx.console.print(f"stage two trains on {report['train_file']}", highlight=False)
        ctx.loop_sft_file = report.get("sft_file")
        return StageOutput(ctx.model_path)


def continued_sft(cfg: Config) -> SFTConfig:
    """The ``sft`` section of the continued SFT (``ContinueSFTStage``) before its training files
    are set: ``failure_loop.sft_steps`` steps, learning rate ``failure_loop.sft_lr`` (default
    ``sft.optim.lr``), warm-up at most a tenth of the steps."""
    lc, sft = cfg.failure_loop, cfg.sft
    optim = dataclasses.replace(
        sft.optim,
        lr=lc.sft_lr if lc.sft_lr is not None else sft.optim.lr,
        warmup_steps=min(sft.optim.warmup_steps, lc.sft_steps // 10),
    )
    return dataclasses.replace(sft, total_steps=lc.sft_steps, optim=optim)


class ContinueSFTStage:
    """``failure_loop.sft_steps`` SFT steps from the current model on the loop's continued-SFT
    set (``failure_loop/output/sft.jsonl``: ``sft.train_files`` plus the worked solutions of the
    synthesized questions at ``mix_ratio``), before RL. RL cannot learn a slice the model never
    solves (every sample of such a prompt fails: no advantage, and the zero-variance filter drops
    the group); a worked solution can teach it. The same SFT settings as stage one except the
    step count, the learning rate (``failure_loop.sft_lr``) and the warm-up (at most a tenth of
    the steps)."""

    name = "sft_continue"

    def run(self, ctx: RunContext) -> StageOutput:
        from logics_rl.trainer.sft import SFTTrainer

        lc = ctx.cfg.failure_loop
        if not ctx.loop_sft_file:
            ctx.console.print(
                "[yellow]failure loop: no synthesized question has a worked solution; no "
                "continued SFT[/yellow]", highlight=False,
            )  # fmt: skip
            return StageOutput(ctx.model_path)
        cont = dataclasses.replace(continued_sft(ctx.cfg), train_files=[ctx.loop_sft_file])

        def body(cfg: Config) -> tuple[dict[str, float], str]:
            with _trainer(SFTTrainer, ctx, self.name, cfg) as trainer:
                metrics = trainer.fit()
                return metrics, trainer.export_hf(os.path.join(trainer.run_dir, "hf"))

        cfg = dataclasses.replace(ctx.cfg, sft=cont)
        metrics, hf = _with_restarts(ctx, self.name, body, cfg)
        ctx.before_rl = "SFT + continued SFT"
        ctx.console.print(
            f"continued SFT on {ctx.loop_sft_file} ({lc.sft_steps} steps): model {hf}",
            highlight=False,
        )
        return StageOutput(hf, metrics)


class EvalStage:
    """``mode: eval`` (``logics_rl.evaluation``): the current model on the benchmark files;
    ``summary.json`` and per-sample rows in the stage's directory."""

    name = "eval"

    def run(self, ctx: RunContext) -> StageOutput:
        from logics_rl.evaluation.run import run_eval

        out_dir = _stage_dir(ctx, self.name)
        os.makedirs(out_dir, exist_ok=True)
        summary = run_eval(ctx.cfg, out_dir, ctx.console, ctx.model_path)
        metrics = {
            f"{name}/{key}": value
            for name, res in summary.items()
            if isinstance(res, dict) and "all" in res
            for key, value in res["all"].items()
        }
        return StageOutput(ctx.model_path, metrics)


STAGES = {
    "sft": SFTStage,
    "rl": RLStage,
    "curate": CurateStage,
    "eval": EvalStage,
    "failure_loop": FailureLoopStage,
    "sft_continue": ContinueSFTStage,
}
MODES = {
    Mode.rl: ["rl"],
    Mode.sft: ["sft"],
    Mode.sft_rl: ["sft", "rl"],
    Mode.curate: ["curate"],
    Mode.eval: ["eval"],
    Mode.failure_loop: ["failure_loop"],
}


def stage_names(cfg: Config) -> list[str]:
    """The stages of ``cfg.mode``; ``sft_rl`` with ``failure_loop.enabled`` runs the loop
    between SFT and RL (and, with ``failure_loop.sft_steps``, continued SFT after it)."""
    names = list(MODES[cfg.mode])
    if cfg.mode == Mode.sft_rl and cfg.failure_loop.enabled:
        names.insert(1, "failure_loop")
        if cfg.failure_loop.sft_steps > 0:
            names.insert(2, "sft_continue")
    return names


def run(cfg: Config, console: Console | None = None) -> dict[str, StageOutput]:
    """Run the stages ``cfg.mode`` names, in order; returns each stage's output by name."""
    console = console or Console()
    run_dir = prepare_run_dir(cfg)
    names = stage_names(cfg)
    if cfg.mode == Mode.curate:  # the model (if a step serves one) is resolved when needed
        ctx = RunContext(cfg, run_dir, console, cfg.model.path, stages=len(names))
    else:
        cfg = resolve_data(cfg, run_dir)
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
