"""What every trainer does before its loop: the run directory, the model, the data, Ray and the
worker group."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any

from logics_rl.config.loader import to_yaml
from logics_rl.config.schema import Config


def prepare_run_dir(cfg: Config) -> str:
    """Create the run directory and save the resolved config in it."""
    run_dir = os.path.abspath(cfg.trainer.run_dir)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.yaml"), "w", encoding="utf-8") as fh:
        fh.write(to_yaml(cfg))
    return run_dir


def resolve_model(cfg: Config, run_dir: str) -> str:
    """``tiny`` builds a small Qwen3 in the run dir; ``smollm2`` converts the offline GGUF; a
    run's checkpoint (``checkpoints/step_N``) is verified and exported as an HF directory in the
    run dir (``model_from_step_N``)."""
    path = cfg.model.path
    if path == "tiny":
        from logics_rl.models.tiny import TinySize, build_tiny_qwen3

        out = os.path.join(run_dir, "model_init")
        if not os.path.exists(os.path.join(out, "config.json")):
            t = cfg.model.tiny
            build_tiny_qwen3(
                out,
                TinySize(t.hidden, t.layers, t.heads, t.kv_heads, max_positions=t.max_positions),
                seed=cfg.trainer.seed,
            )
        return out
    if path == "smollm2":
        from logics_rl.models.smollm2 import convert_smollm2

        return convert_smollm2()
    if os.path.exists(os.path.join(path, "engine.json")):  # a checkpoint of a run
        from logics_rl.engines.train import export_checkpoint

        out = os.path.join(run_dir, f"model_from_{os.path.basename(os.path.normpath(path))}")
        return export_checkpoint(path, out)
    if not os.path.exists(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"model.path {path!r} is not a HF model directory (no config.json)")
    return path


def resolve_data(cfg: Config, run_dir: str) -> Config:
    """Generate the synthetic task when configured and point empty file lists at it."""
    if cfg.data.synthetic.task is None:
        return cfg
    from logics_rl.data.synthetic import write_task

    paths = write_task(cfg.data.synthetic, os.path.join(run_dir, "data"))
    data = dataclasses.replace(
        cfg.data,
        train_files=cfg.data.train_files or [paths["rl_train"]],
        val_files=cfg.data.val_files or [paths["rl_val"]],
    )
    sft = dataclasses.replace(
        cfg.sft,
        train_files=cfg.sft.train_files or [paths["sft_train"]],
        val_files=cfg.sft.val_files or [paths["sft_val"]],
    )
    return dataclasses.replace(cfg, data=data, sft=sft)


def report_data(console, what: str, kept: int, counts: dict[str, int], limit: str) -> None:
    """One console line per dataset: rows used, and rows dropped as too long (never silently)."""
    line = f"{what}: {kept} of {counts['rows']} rows"
    if counts["too_long"]:
        line += f"; {counts['too_long']} longer than {limit} dropped"
    console.print(line, highlight=False)


def use_gpu(cfg: Config) -> bool:
    """``cluster.use_gpu``, or whether the Ray cluster has GPUs when it is unset."""
    if cfg.cluster.use_gpu is not None:
        return cfg.cluster.use_gpu
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def make_pool(cfg: Config):
    """Join or start Ray, and the resource pool of ``nnodes x procs_per_node`` slots."""
    from logics_rl.controller import ResourcePool, init_ray

    init_ray(cfg.cluster.ray_address)
    return ResourcePool(
        [cfg.cluster.procs_per_node] * cfg.cluster.nnodes,
        use_gpu=use_gpu(cfg),
        cpus_per_process=cfg.cluster.cpus_per_proc,
    )


def start_workers(cfg: Config, worker_cls: type, *args, console=None):
    """The resource pool and a worker group of ``worker_cls(*args)`` with ``init_model`` done.

    Returns ``(pool, group)``. When a worker fails to start (a constructor error, the weight-sync
    probe at start, out of memory, ...), the pool is removed before the error propagates: its
    placement group (and every actor in it) would otherwise hold the cluster's CPUs / GPUs for as
    long as the driver lives, and the next run on a shared Ray cluster could not be scheduled.
    """
    from logics_rl.controller import WorkerGroup

    pool = make_pool(cfg)
    group = None
    try:
        c = cfg.cluster
        group = WorkerGroup(
            pool,
            worker_cls,
            *args,
            timeout_s=c.call_timeout_s,
            repeat_factor=c.repeat_call_timeout_factor,
            repeat_min_s=c.repeat_call_timeout_min_s,
            heartbeat_s=c.heartbeat_s,
        )
        group.init_model()
        threads = sorted(set(group.threads()))
        emulated = set() if pool.use_gpu else group.cpu_emulated_dtypes()
    except BaseException:
        if group is not None:
            with contextlib.suppress(Exception):  # the original error is the one to report
                group.kill()  # and its rendezvous file
        pool.remove()  # kills the actors placed in it too
        raise
    if console is not None:
        where = "GPU" if pool.use_gpu else "CPU"
        nodes = len(set(group.node_ids))
        console.print(
            f"{worker_cls.__name__}: {group.world_size} rank(s) on {where}, {nodes} node(s), "
            "torch threads per "
            f"rank {'/'.join(map(str, threads))} (cluster.cpus_per_proc)",
            highlight=False,
        )
        for line in emulated_dtype_warnings(cfg, emulated):
            console.print(f"[bold yellow]warning:[/] {line}", highlight=False)
    return pool, group


_NATIVE = {"bfloat16": "AVX512-BF16 or AMX", "float16": "AMX-FP16"}


def emulated_dtype_warnings(cfg: Any, emulated: set[str]) -> list[str]:
    """One line per ``dtype`` setting of ``cfg`` that the workers' CPU emulates."""
    return [
        f"{key}={name} on a CPU without {name} matmul instructions ({_NATIVE[name]}): torch "
        f"emulates it, tens to hundreds of times slower than float32; set {key}=float32"
        for key, name in emulated_dtype_keys(cfg, emulated)
    ]


def emulated_dtype_keys(cfg: Any, emulated: set[str], prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, value) of every ``dtype`` setting in ``cfg`` whose value is in ``emulated``."""
    out = []
    if not dataclasses.is_dataclass(cfg):
        return out
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "dtype" and str(value) in emulated:
            out.append((prefix + f.name, str(value)))
        elif dataclasses.is_dataclass(value):
            out.extend(emulated_dtype_keys(value, emulated, f"{prefix}{f.name}."))
    return out
