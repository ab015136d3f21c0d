"""Shared helpers for the benchmarks: a one-process torch.distributed world, peak RSS, tables."""

from __future__ import annotations

import os
import platform
import resource
import time


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPUs ({cpu}), {gpu}, Python {platform.python_version()}, torch {torch.__version__}"


def single_process_world() -> None:
    import torch.distributed as dist

    from logics_rl.controller.worker import free_port

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
        dist.init_process_group("gloo", rank=0, world_size=1)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def today() -> str:
    return time.strftime("%Y-%m-%d")


def model_path(name: str) -> str:
    """``smollm2`` (converted offline), ``tiny`` (built in a temp dir) or a HF directory."""
    if name == "smollm2":
        from logics_rl.models.smollm2 import convert_smollm2

        return convert_smollm2()
    if name == "tiny":
        import tempfile

        from logics_rl.models.tiny import build_tiny_qwen3

        return build_tiny_qwen3(tempfile.mkdtemp())
    return name
