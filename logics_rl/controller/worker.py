"""``Worker``: the base class of every Ray actor a ``WorkerGroup`` spawns.

Rank, world size, local rank and the rendezvous address come from environment variables the
group sets when it creates the actor, so they are known in ``__init__``. ``torch.distributed``
is initialised on demand (gloo on CPU, nccl on GPU).

On CPU the worker pins torch's intra-op threads to the CPUs of its slot in ``__init__``, before
any engine is built: vLLM's CPU backend replaces ``torch.set_num_threads`` with a no-op once it
has started, so a later setting would be silently ignored.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta


def node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


def loopback_interface() -> str | None:
    """The name of this machine's loopback interface (``lo`` on Linux, ``lo0`` on macOS)."""
    names = {name for _, name in socket.if_nameindex()}
    return next((n for n in ("lo", "lo0") if n in names), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


class Worker:
    """Base class: rank / world size / device and on-demand ``torch.distributed``."""

    def __init__(self) -> None:
        env = os.environ
        self.rank = int(env.get("RANK", "0"))
        self.world_size = int(env.get("WORLD_SIZE", "1"))
        self.local_rank = int(env.get("LOCAL_RANK", "0"))
        self.local_world_size = int(env.get("LOCAL_WORLD_SIZE", "1"))
        self.master_addr = env.get("MASTER_ADDR", "127.0.0.1")
        self.master_port = int(env.get("MASTER_PORT", "0"))
        # A group on one node meets through a file, not a TCP store (``_spawn``).
        self.init_method = env.get("LOGICS_RL_INIT_METHOD") or None
        self.uses_gpu = env.get("LOGICS_RL_USE_GPU", "0") == "1"
        self.threads = int(env.get("LOGICS_RL_THREADS", "0"))  # 0: leave torch's default
        if self.threads and not self.uses_gpu:
            import torch

            torch.set_num_threads(self.threads)

    def init_distributed(self, backend: str | None = None, timeout_s: float = 1800.0) -> None:
        """Join the group's ``torch.distributed`` world (idempotent)."""
        import torch.distributed as dist

        if dist.is_initialized():
            return
        backend = backend or ("nccl" if self.uses_gpu else "gloo")
        dist.init_process_group(
            backend=backend,
            init_method=self.init_method or f"tcp://{self.master_addr}:{self.master_port}",
            rank=self.rank,
            world_size=self.world_size,
            timeout=timedelta(seconds=timeout_s),
        )

    # The data layout of a worker holding a train engine: set to the engine's ``ParallelInfo``
    # (dp_rank, dp_size, collects) after the engine is built.
    parallel = None

    def dispatch_info(self) -> tuple[int, int, bool]:
        """(data-parallel rank, data-parallel size, collects output) for DP_COMPUTE.

        Pure data parallelism unless ``parallel`` is set: then ranks of one tensor / pipeline
        group share a part and only one of them returns it.
        """
        p = self.parallel
        if p is None:
            return self.rank, self.world_size, True
        return p.dp_rank, p.dp_size, p.collects

    # -- used by WorkerGroup itself (not group methods) ------------------------------------
    def _lrl_dispatch_info(self) -> tuple[int, int, bool]:
        return self.dispatch_info()

    def _lrl_pid(self) -> int:
        return os.getpid()

    def _lrl_where(self) -> tuple[str, int, str]:
        """(node IP, process id, Ray node id)."""
        import ray

        return node_ip(), os.getpid(), ray.get_runtime_context().get_node_id()

    def _lrl_threads(self) -> int:
        import torch

        return torch.get_num_threads()

    def _lrl_cpu_emulated(self) -> list[str]:
        """Half-precision dtypes this worker's CPU emulates (``engines.common``)."""
        from logics_rl.engines.common import cpu_emulated_dtypes

        return cpu_emulated_dtypes()

    def _lrl_ping(self) -> bool:
        return True
