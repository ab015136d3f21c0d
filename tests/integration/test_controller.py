"""The single controller on a real local Ray cluster: dispatch modes, futures, colocation,
torch.distributed across worker processes, and the failure paths."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest
import torch

from logics_rl.controller import (
    Dispatch,
    ResourcePool,
    RoleSpec,
    Worker,
    WorkerDiedError,
    WorkerError,
    WorkerGroup,
    WorkerTimeoutError,
    register,
)
from logics_rl.protocol import Batch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def _pickle_this_module_by_value(ray_cluster):
    # Worker processes cannot import test modules; ship these classes by value.
    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Echo(Worker):
    def __init__(self, scale: int = 1):
        super().__init__()
        self.scale = scale

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def whoami(self, x):
        return (self.rank, self.world_size, x)

    @register(dispatch=Dispatch.ALL_TO_ALL)
    def take(self, x):
        return (self.rank, x)

    @register(dispatch=Dispatch.RANK_ZERO)
    def only_zero(self):
        return ("zero", self.rank)

    @register(dispatch=Dispatch.DP_COMPUTE)
    def double(self, batch: Batch, offset: int = 0) -> Batch:
        out = Batch.from_dict(
            {
                "y": batch["x"] * 2 * self.scale + offset,
                "rank": torch.full((len(batch),), self.rank),
            },
            {"tag": batch["tag"]},
        )
        return out

    @register(dispatch=Dispatch.DP_COMPUTE, blocking=False)
    def double_async(self, batch: Batch) -> Batch:
        return Batch.from_dict({"x": batch["x"] * 2}, {"tag": batch["tag"]})

    @register(dispatch=Dispatch.DP_COMPUTE)
    def rows(self, batch: Batch) -> tuple[int, int]:
        return len(batch), batch.meta.get("dp_pad_rows", 0)

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def total(self, batch: Batch):
        return int(batch["x"].sum())

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def fail_on(self, rank: int):
        if self.rank == rank:
            raise ValueError(f"boom on {rank}")
        return self.rank

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def sleep(self, seconds: float):
        time.sleep(seconds)
        return self.rank

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def die_on(self, rank: int):
        if self.rank == rank:
            os._exit(1)
        time.sleep(30)  # the survivor would wait for the dead one in a real collective
        return self.rank

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def allreduce(self, value: float) -> float:
        import torch.distributed as dist

        self.init_distributed()
        t = torch.tensor([value * (self.rank + 1)], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())


class Counter(Worker):
    def __init__(self):
        super().__init__()
        self.n = 0

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def pid(self):
        return os.getpid()

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def bump(self):
        self.n += 1
        return self.n


class BadInit(Worker):
    def __init__(self):
        super().__init__()
        if self.rank == 1:
            raise RuntimeError("cannot build the model on rank 1")


def _pool(n=2, colocate=1):
    return ResourcePool([n], cpus_per_process=1.0, max_colocate_count=colocate)


@pytest.fixture(scope="module")
def echo(ray_cluster):
    pool = _pool()
    group = WorkerGroup(pool, Echo, 3, timeout_s=60)
    yield group
    group.kill()
    pool.remove()


def _batch(n):
    return Batch.from_dict({"x": torch.arange(n)}, {"tag": [f"s{i}" for i in range(n)]})


def test_one_to_all_all_to_all_rank_zero(echo):
    assert echo.whoami("hi") == [(0, 2, "hi"), (1, 2, "hi")]
    assert echo.take(["a", "b"]) == [(0, "a"), (1, "b")]
    assert echo.only_zero() == ("zero", 0)
    with pytest.raises(ValueError, match="one entry per worker"):
        echo.take(["only-one"])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_dp_compute_splits_pads_and_unpads(echo, n):
    out = echo.double(_batch(n), offset=1)
    assert len(out) == n
    assert out["y"].tolist() == [2 * 3 * i + 1 for i in range(n)]
    assert list(out["tag"]) == [f"s{i}" for i in range(n)]
    # first half of the (padded) rows on rank 0, second half on rank 1
    half = (n + 1) // 2
    assert out["rank"].tolist() == [0] * half + [1] * (n - half)
    # each rank is told how many of its rows are padding (all at the end)
    pad = 2 * half - n
    assert echo.rows(_batch(n)) == [(half, max(0, pad - half)), (half, min(pad, half))]
    assert "dp_pad_rows" not in out.meta


def test_futures_chain_without_driver_round_trip(echo):
    fut = echo.double_async(_batch(5))  # registered non-blocking
    assert not isinstance(fut, Batch)
    fut2 = echo.double_async(fut)  # per-rank refs flow directly to the same dp rank
    out = fut2.get()
    assert out["x"].tolist() == [4 * i for i in range(5)]
    assert list(out["tag"]) == [f"s{i}" for i in range(5)]
    # a DP future passed to a ONE_TO_ALL call is collected inside each worker
    totals = echo.total(echo.double_async(_batch(4)))
    assert totals == [sum(2 * i for i in range(4))] * 2


def test_worker_exception_carries_rank_and_traceback(echo):
    with pytest.raises(WorkerError) as info:
        echo.fail_on(1)
    err = info.value
    assert err.rank == 1 and err.method == "fail_on"
    assert "boom on 1" in str(err) and "Traceback" in err.traceback
    assert echo.whoami(0)[1][0] == 1  # the group still works afterwards


def test_call_timeout_names_pending_ranks(echo):
    fut = echo.sleep.future(3.0)
    with pytest.raises(WorkerTimeoutError) as info:
        fut.get(timeout_s=0.5)
    assert info.value.pending_ranks == [0, 1]
    assert fut.get(timeout_s=30) == [0, 1]


def test_dead_worker_fails_fast(ray_cluster):
    pool = _pool()
    group = WorkerGroup(pool, Echo, timeout_s=120)
    t0 = time.monotonic()
    with pytest.raises(WorkerDiedError) as info:
        group.die_on(1)
    assert info.value.rank == 1
    assert time.monotonic() - t0 < 25  # well before the survivor's 30 s sleep ends
    with pytest.raises(WorkerDiedError):
        group.whoami(0)
    group.kill()
    pool.remove()


def test_constructor_failure_is_reported_with_rank(ray_cluster):
    pool = _pool()
    with pytest.raises(WorkerDiedError) as info:
        WorkerGroup(pool, BadInit, timeout_s=60)
    assert info.value.rank == 1
    assert "cannot build the model on rank 1" in str(info.value)
    # the rank that did start is killed: its bundle's CPU comes back (the pool is still there)
    key = f"CPU_group_{pool.placement_groups()[0].id.hex()}"
    deadline = time.monotonic() + 30
    while ray_cluster.available_resources().get(key, 0.0) < 2.0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_cluster.available_resources().get(key, 0.0) == 2.0
    pool.remove()


def test_torch_distributed_allreduce_over_gloo(echo):
    # ranks contribute 1*v and 2*v
    assert echo.allreduce(1.5) == [4.5, 4.5]


def test_colocated_roles_share_one_process(ray_cluster):
    pool = _pool()
    groups = WorkerGroup.colocated(
        pool, {"actor": RoleSpec(Echo, (2,)), "ref": RoleSpec(Counter)}, timeout_s=60
    )
    actor, ref = groups["actor"], groups["ref"]
    assert ref.pid() == actor.pids() == ref.pids()
    assert ref.bump() == [1, 1] and ref.bump() == [2, 2]
    assert actor.double(_batch(4))["y"].tolist() == [0, 4, 8, 12]
    assert not hasattr(ref, "double") and not hasattr(actor, "bump")
    actor.kill()
    pool.remove()


def test_colocate_count_lets_two_groups_share_bundles(ray_cluster):
    pool = _pool(colocate=2)
    a = WorkerGroup(pool, Counter, timeout_s=60)
    b = WorkerGroup(pool, Counter, timeout_s=60)
    assert len(set(a.pid()) | set(b.pid())) == 4
    assert a.bump() == [1, 1] and b.bump() == [1, 1]
    a.kill()
    b.kill()
    pool.remove()


def test_pool_too_large_is_a_clear_error(ray_cluster):
    pool = ResourcePool([64], cpus_per_process=1.0, ready_timeout_s=2)
    with pytest.raises(RuntimeError, match="could not provide"):
        pool.placement_groups()


def test_batch_arrays_survive_the_round_trip(echo):
    b = _batch(3)
    b["ragged"] = np.array([[1], [1, 2], []], dtype=object)
    assert echo.rows(b) == [(2, 0), (2, 1)]
