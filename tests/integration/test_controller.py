"""The single controller on a real local Ray cluster: dispatch modes, futures, data-parallel
padding, torch.distributed across worker processes, typed errors, and the failure paths."""

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
    Worker,
    WorkerDiedError,
    WorkerError,
    WorkerGroup,
    WorkerTimeoutError,
    register,
)
from logics_rl.data.files import DataError
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

    @register(dispatch=Dispatch.DP_COMPUTE)
    def samples(self, batch: Batch, n: int) -> Batch:
        """n output rows per input row, like generate_sequences."""
        return batch.repeat(n).with_columns({"rank": torch.full((len(batch) * n,), self.rank)})

    @register(dispatch=Dispatch.ALL_RANKS)
    def samples_everywhere(self, batch: Batch, n: int) -> Batch:
        """Like ``samples``, split over every rank whatever the model-parallel layout."""
        return self.samples.__wrapped__(self, batch, n)

    @register(dispatch=Dispatch.DP_COMPUTE, pad=False)
    def rows(self, batch: Batch) -> int:
        return len(batch)

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def set_tensor_parallel(self, tp: int) -> None:
        """Pretend the ranks hold one model between ``tp`` of them (None: back to plain dp)."""
        from logics_rl.engines.train.base import ParallelInfo

        self.parallel = None
        if tp:
            dp = self.world_size // tp
            self.parallel = ParallelInfo(
                dp_rank=self.rank // tp, dp_size=dp, tp_rank=self.rank % tp, tp_size=tp
            )

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def bad_data(self):
        if self.rank == 1:
            raise DataError("bad.jsonl row 3: missing 'ground_truth'")
        return self.rank

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

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def sockets_opened_by_init(self, value: float):
        """(listening sockets that joining the torch.distributed world opened, the all-reduce)."""
        import psutil
        import torch.distributed as dist

        def listening():
            conns = psutil.Process().net_connections("inet")
            return {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}

        before = listening()
        self.init_distributed()
        t = torch.tensor([value * (self.rank + 1)], dtype=torch.float64)
        dist.all_reduce(t)
        return sorted(listening() - before), float(t.item())


class BadInit(Worker):
    def __init__(self):
        super().__init__()
        if self.rank == 1:
            raise RuntimeError("cannot build the model on rank 1")


def _pool(n=2):
    return ResourcePool([n], cpus_per_process=1.0)


@pytest.fixture(scope="module")
def echo(ray_cluster):
    pool = _pool()
    group = WorkerGroup(pool, Echo, 3, timeout_s=60)
    yield group
    group.kill()
    pool.remove()


def _batch(n):
    return Batch.from_dict({"x": torch.arange(n)}, {"tag": [f"s{i}" for i in range(n)]})


def test_one_to_all(echo):
    assert echo.whoami("hi") == [(0, 2, "hi"), (1, 2, "hi")]
    assert echo.dp_size == 2


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_dp_compute_splits_pads_and_unpads(echo, n):
    out = echo.double(_batch(n), offset=1)
    assert len(out) == n
    assert out["y"].tolist() == [2 * 3 * i + 1 for i in range(n)]
    assert list(out["tag"]) == [f"s{i}" for i in range(n)]
    # first half of the (padded) rows on rank 0, second half on rank 1
    half = (n + 1) // 2
    assert out["rank"].tolist() == [0] * half + [1] * (n - half)


@pytest.mark.parametrize("n", [1, 3, 5])
def test_padding_never_reaches_the_caller_with_several_rows_per_input(echo, n):
    out = echo.samples.future(_batch(n), 4).get()  # .future: submit now, collect later
    assert out["x"].tolist() == [i for i in range(n) for _ in range(4)]
    assert list(out["tag"]) == [f"s{i}" for i in range(n) for _ in range(4)]


def test_model_parallel_ranks_share_a_part_but_all_ranks_generate_apart(echo):
    echo.set_tensor_parallel(2)
    echo.dp_info(refresh=True)
    try:
        # DP_COMPUTE: both ranks hold one model: one part, returned by tensor-parallel rank 0
        out = echo.double(_batch(3))
        assert out["y"].tolist() == [0, 6, 12] and out["rank"].tolist() == [0, 0, 0]
        # ALL_RANKS: each rank its own part (its own rollout engine), padding dropped
        out = echo.samples_everywhere(_batch(3), 2)
        assert out["x"].tolist() == [0, 0, 1, 1, 2, 2]
        assert out["rank"].tolist() == [0, 0, 0, 0, 1, 1]
    finally:
        echo.set_tensor_parallel(0)
        echo.dp_info(refresh=True)
    assert echo.double(_batch(2))["rank"].tolist() == [0, 1]


def test_calls_that_must_not_see_padding_refuse_an_indivisible_batch(echo):
    assert echo.rows(_batch(4)) == [2, 2]
    with pytest.raises(ValueError, match="rows: 3 rows do not divide over 2 data-parallel ranks"):
        echo.rows(_batch(3))


def test_library_errors_reach_the_driver_as_their_own_type(echo):
    with pytest.raises(DataError, match="bad.jsonl row 3") as info:
        echo.bad_data()
    assert info.value.rank == 1 and info.value.method == "bad_data"
    assert "Traceback" in info.value.worker_traceback


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


def test_one_node_world_listens_on_loopback_only(ray_cluster):
    """On one node the ranks meet through a file and gloo uses the loopback interface: what
    joining the world opens listens on 127.0.0.1 only (a TCP store would listen on every
    interface). Ray's own servers are not the library's to bind (README, security)."""
    pool = _pool()
    group = WorkerGroup(pool, Echo, timeout_s=60)
    try:
        (opened0, sum0), (opened1, sum1) = group.sockets_opened_by_init(1.5)
        store = group._rdzv_file.removeprefix("file://")
        assert os.path.exists(store)
    finally:
        group.kill()
        pool.remove()
    assert not os.path.exists(store)  # killed ranks never destroy their group: kill removes it
    assert sum0 == sum1 == 4.5  # ranks contribute 1*v and 2*v
    opened = opened0 + opened1
    assert opened, "gloo's pairs listen somewhere: the check must see them"
    assert all(ip == "127.0.0.1" for ip, _ in opened), opened


def test_pool_too_large_is_a_clear_error(ray_cluster):
    from logics_rl.errors import ClusterResourcesError

    # More than the cluster has at all: said at once, not after ready_timeout_s.
    pool = ResourcePool([64], cpus_per_process=1.0, ready_timeout_s=60)
    t0 = time.monotonic()
    with pytest.raises(ClusterResourcesError, match=r": 64 CPU \(the cluster has \d+\)"):
        pool.placement_groups()
    assert time.monotonic() - t0 < 30


def test_batch_arrays_survive_the_round_trip(echo):
    b = _batch(3)
    b["ragged"] = np.array([[1], [1, 2], []], dtype=object)
    out = echo.samples(b, 1)
    assert [list(r) for r in out["ragged"]] == [[1], [1, 2], []]


def test_the_local_instance_serves_no_unauthenticated_job_api(ray_cluster):
    # The local instance runs without the dashboard; the agents' HTTP ports that remain answer
    # a job submission with 401 (Ray's token authentication, on by default) or serve read-only
    # Prometheus metrics. A job submission is code execution: it must never be accepted here.
    import http.client
    import json as _json
    import urllib.error
    import urllib.request

    import psutil

    node = ray_cluster._private.worker.global_worker.node
    assert not node.address_info.get("webui_url")  # no dashboard head
    ip = ray_cluster.util.get_node_ip_address()
    ports = set()
    for c in psutil.net_connections("inet"):
        if c.status != psutil.CONN_LISTEN or c.pid is None:
            continue
        try:
            name = psutil.Process(c.pid).name()
        except psutil.Error:
            continue
        if name in ("ray::DashboardAgent", "ray::RuntimeEnvAgent"):
            ports.add(c.laddr.port)
    assert ports
    refused = 0
    body = _json.dumps({"entrypoint": "touch /tmp/should-not-exist"}).encode()
    for port in sorted(ports):
        req = urllib.request.Request(
            f"http://{ip}:{port}/api/job_agent/jobs/", data=body, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                assert r.read(6) == b"# HELP", f"port {port} accepted a job submission"
        except urllib.error.HTTPError as exc:  # 401: no token; 404 / 405: no such API there
            assert exc.code in (401, 404, 405), (port, exc.code)
            refused += exc.code == 401
        except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException):
            continue  # bound to another address only (loopback), or gRPC rather than HTTP/1
    assert refused >= 1
