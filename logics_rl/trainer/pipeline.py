"""Run a config end to end by its ``mode``: ``rl``, ``sft``, or ``sft_rl`` (stage one SFT, then
RL from the SFT weights, with a before / after table of held-out accuracy)."""

from __future__ import annotations

import json
import os

from rich.console import Console
from rich.table import Table

from logics_rl.config.schema import Config
from logics_rl.trainer.setup import prepare_run_dir, resolve_data, resolve_model


def run(cfg: Config, console: Console | None = None) -> dict[str, dict[str, float]]:
    console = console or Console()
    run_dir = prepare_run_dir(cfg)
    cfg = resolve_data(cfg, run_dir)
    model_path = resolve_model(cfg, run_dir)
    console.print(f"run directory: {run_dir}")
    if cfg.mode == "sft":
        return {"sft": _sft(cfg, model_path, run_dir, console)[0]}
    if cfg.mode == "rl":
        before, after = _rl(cfg, model_path, run_dir, console)
        _report(console, run_dir, {"initial policy": before, "after RL": after})
        return {"before": before, "after": after}
    sft_metrics, sft_model = _sft(cfg, model_path, os.path.join(run_dir, "sft"), console)
    before, after = _rl(cfg, sft_model, os.path.join(run_dir, "rl"), console)
    _report(console, run_dir, {"SFT (stage one)": before, "SFT + RL (stage two)": after})
    return {"sft": sft_metrics, "before": before, "after": after}


def _sft(
    cfg: Config, model_path: str, run_dir: str, console: Console
) -> tuple[dict[str, float], str]:
    from logics_rl.trainer.sft import SFTTrainer

    trainer = SFTTrainer(cfg, model_path, run_dir, console)
    try:
        metrics = trainer.fit()
        hf = trainer.export_hf(os.path.join(run_dir, "hf"))
    finally:
        trainer.shutdown()
    console.print(f"SFT model exported to {hf}")
    return metrics, hf


def _rl(
    cfg: Config, model_path: str, run_dir: str, console: Console
) -> tuple[dict[str, float], dict[str, float]]:
    from logics_rl.trainer.rl import RLTrainer

    trainer = RLTrainer(cfg, model_path, run_dir, console)
    try:
        after = trainer.fit()
    finally:
        trainer.shutdown()
    return trainer.initial_val, after


def _report(console: Console, run_dir: str, columns: dict[str, dict[str, float]]) -> None:
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
