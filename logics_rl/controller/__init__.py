"""Single controller on Ray: resource pools, workers, worker groups and dispatch modes."""

from logics_rl.controller.cluster import init_ray
from logics_rl.controller.dispatch import Dispatch, register
from logics_rl.controller.errors import (
    WorkerDiedError,
    WorkerError,
    WorkerGroupError,
    WorkerTimeoutError,
)
from logics_rl.controller.resource_pool import ResourcePool
from logics_rl.controller.worker import Worker
from logics_rl.controller.worker_group import GroupFuture, WorkerGroup

__all__ = [
    "Dispatch",
    "GroupFuture",
    "ResourcePool",
    "Worker",
    "WorkerDiedError",
    "WorkerError",
    "WorkerGroup",
    "WorkerGroupError",
    "WorkerTimeoutError",
    "init_ray",
    "register",
]
