"""Training engines behind ``base.TrainEngine``: FSDP2 (``fsdp.py``) and megatron-core
(``megatron/``).

``build_train_engine`` is the one place that names an engine class; workers and trainers ask
for ``actor.engine`` by its config value. A checkpoint records the engine kind that wrote it
(``engine.json``), and ``export_checkpoint`` hands the checkpoint to that engine's offline export.
"""

from __future__ import annotations

import os

from logics_rl.config.schema import TrainEngineConfig
from logics_rl.engines.train.base import TrainEngine
from logics_rl.registry import load_import_path

# kind -> import path: engines load their heavy dependencies only when chosen
ENGINES = {
    "fsdp": "logics_rl.engines.train.fsdp:FSDPEngine",
    "megatron": "logics_rl.engines.train.megatron.engine:MegatronEngine",
}


def engine_class(kind: str) -> type[TrainEngine]:
    if str(kind) not in ENGINES:
        raise ValueError(f"unknown train engine {kind!r}; available: {', '.join(ENGINES)}")
    return load_import_path(ENGINES[str(kind)])


def build_train_engine(
    cfg: TrainEngineConfig,
    model_path: str,
    *,
    trainable: bool = True,
    total_steps: int = 1,
    seed: int = 0,
) -> TrainEngine:
    """The engine ``cfg.engine`` names, loaded from ``model_path`` (a HF model directory).

    ``trainable=False`` builds a frozen copy without an optimizer (the KL reference);
    ``total_steps`` is the number of optimizer steps of the run (the lr schedule).
    Collective: every rank of the worker group calls it after ``init_distributed``.
    """
    cls = engine_class(cfg.engine)
    return cls(model_path, cfg, trainable=trainable, total_steps=total_steps, seed=seed)


def export_checkpoint(checkpoint: str, out_dir: str) -> str:
    """Write the model of a complete, verified checkpoint as a HF directory (one process, no
    Ray); a file that differs from the checkpoint's manifest is an error naming it."""
    from logics_rl.checkpoint import COMPLETE, read_json, verify

    if not os.path.exists(os.path.join(checkpoint, COMPLETE)):
        raise FileNotFoundError(f"{checkpoint} is not a complete checkpoint (no {COMPLETE} marker)")
    verify(checkpoint)  # before anything in it is opened
    kind = read_json(os.path.join(checkpoint, "engine.json"))["engine"]
    engine_class(kind).export_offline(checkpoint, out_dir)
    return out_dir


__all__ = ["ENGINES", "TrainEngine", "build_train_engine", "engine_class", "export_checkpoint"]
