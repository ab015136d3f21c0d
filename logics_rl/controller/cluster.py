"""Start or join the Ray cluster.

Past one machine, start a Ray cluster (``ray start --head`` on one node, ``ray start
--address=HEAD:6379`` on the others) and point the trainer at it with ``RAY_ADDRESS`` or
``ray.address`` in the config. Without an address a local Ray instance is started with the
machine's CPUs (and GPUs), watched by ``reaper.py``: if the driver dies without shutting it
down (SIGKILL), the processes of that instance are terminated rather than left running.
"""

from __future__ import annotations

import os

# Set in every worker process: vLLM must run in-process inside the actor (its engine core in a
# separate process cannot share the actor's weights), and tokenizers must not fork thread pools.
WORKER_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_DEDUP_LOGS": "1",
}


def init_ray(
    address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True
) -> None:
    """Join ``address`` (or ``$RAY_ADDRESS``); else start a local instance. Idempotent."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    runtime_env = {"env_vars": dict(WORKER_ENV)}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=log_to_driver)
    else:
        ray.init(
            address="local",  # a new instance, even when `ray start` left one on this machine
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            runtime_env=runtime_env,
            log_to_driver=log_to_driver,
        )
        from logics_rl.controller.reaper import start

        start()
