"""Tracking backends (console, jsonl, tensorboard, wandb offline), phase timer, curves PNG."""

from __future__ import annotations

import glob
import io
import math
import os
import time

import pytest
from rich.console import Console

from logics_rl.tracking import PhaseTimer, Tracker, plot_curves, read_metrics


def test_all_backends_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)  # offline: never blocks on a login
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = io.StringIO()
    console = Console(file=out, width=200)
    tr = Tracker(
        ["console", "jsonl", "tensorboard", "wandb"],
        str(tmp_path),
        name="t",
        config={"a": 1},
        console=console,
    )
    tr.log({"reward/mean": 0.5, "actor/grad_norm": 2.0, "note": "text is skipped"}, 1)
    tr.log({"reward/mean": 0.75, "actor/pg_loss": math.nan}, 2)
    tr.close()
    tr.close()  # idempotent

    rows = read_metrics(tr.jsonl_path)
    assert rows == [
        {"step": 1, "reward/mean": 0.5, "actor/grad_norm": 2.0},
        {"step": 2, "reward/mean": 0.75, "actor/pg_loss": None},  # NaN stays visible as null
    ]
    text = out.getvalue()
    assert "step 1 mean=0.5 grad_norm=2" in text and "step 2 mean=0.75 pg_loss=nan" in text

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    got = [(e.step, e.value) for e in events.Scalars("reward/mean")]
    assert got == [(1, 0.5), (2, 0.75)]
    assert glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "*.wandb"))


def test_unknown_backend_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown tracking backends"):
        Tracker(["console", "mlflow"], str(tmp_path))


def test_phase_timer_accumulates():
    timer = PhaseTimer()
    for _ in range(2):
        with timer("a"):
            time.sleep(0.01)
    with timer("b"):
        pass
    time.sleep(0.05)  # outside every phase
    m = timer.metrics()
    assert m["time/a"] >= 0.02
    # the step is wall time: the phases plus what ran outside them
    assert m["time/step"] >= m["time/a"] + m["time/b"] + 0.05
    assert m["time/other"] == pytest.approx(m["time/step"] - m["time/a"] - m["time/b"])
    assert m["time/other"] >= 0.05


def test_curves_png(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert plot_curves(str(path), str(tmp_path / "none.png")) is None  # nothing logged yet
    tr = Tracker(["jsonl"], str(tmp_path))
    for step in range(1, 4):
        tr.log({"reward/mean": step / 10, "reward/correct": step / 5, "actor/entropy": 1.0}, step)
    tr.log({"val/avg@k": 0.4}, 3)
    png = plot_curves(tr.jsonl_path, str(tmp_path / "curves.png"), title="t")
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 10_000
