"""``WorkerGroup``: N Ray actors of one ``Worker`` class, driven as one object.

Every method marked ``@register(dispatch=...)`` on the class becomes a group method:

    group = WorkerGroup(pool, MyWorker, model_path)
    out = group.compute(batch)              # dispatch, run on every rank, collect
    fut = group.compute.future(batch)       # non-blocking: a GroupFuture
    out = fut.get()

Roles that share a device are composed inside one worker class (``workers/hybrid.py``); a role
that runs on its own gets its own group in its own pool (``workers/rollout.RolloutWorker``).

Failures are never silent: an exception in a worker raises ``WorkerError`` (rank, traceback), or
the library's own error type (``logics_rl.errors.LogicsRLError``) with the rank attached; a dead
worker process raises ``WorkerDiedError``, and a call that outlives its timeout raises
``WorkerTimeoutError`` naming the ranks still running.

Timeouts per method: the first call of a method (start-up, compiles, vLLM's warm-up) may take
``timeout_s``; a method that has finished before gets ``max(repeat_min_s, repeat_factor x its
longest call so far)``, at most ``timeout_s``, so a worker that hangs in a step of known scale
is reported in minutes, not after an hour. While a call is pending, a line every
``heartbeat_s`` says what the driver waits for and the state of each pending rank's process
(stopped, a zombie, or its CPU use since the last line) when it runs on this node.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

from logics_rl.controller.dispatch import (
    Dispatch,
    DPSplit,
    MethodSpec,
    collect,
    registered_methods,
    split_for_dp,
)
from logics_rl.controller.errors import WorkerDiedError, WorkerError, WorkerTimeoutError
from logics_rl.controller.resource_pool import ResourcePool
from logics_rl.controller.worker import Worker, free_port, node_ip
from logics_rl.errors import LogicsRLError
from logics_rl.protocol import Batch

DEFAULT_TIMEOUT_S = 3600.0
FIRST_CALL_HINT = "raise cluster.call_timeout_s if the work is legitimately long"


def _rendezvous() -> tuple[str, int, str | None, str, str]:
    """Where slot 0 runs: (node IP, a free port, loopback interface name, temp directory, Ray
    node id)."""
    import tempfile

    import ray

    from logics_rl.controller.worker import loopback_interface

    node = ray.get_runtime_context().get_node_id()
    return node_ip(), free_port(), loopback_interface(), tempfile.gettempdir(), node


def _remove_rendezvous_file(path: str | None, node_id: str) -> None:
    """The FileStore's file of a killed group (its ranks never destroy their process group, so
    torch does not remove it), when it lies on the driver's node; on another node it stays in
    that node's temp directory (a few kB)."""
    import ray

    if path and node_id == ray.get_runtime_context().get_node_id():
        with contextlib.suppress(FileNotFoundError):
            os.remove(path.removeprefix("file://"))


def _rendezvous_env(pool, probe: tuple[str, int, str | None, str, str]) -> dict[str, str]:
    """The environment that lets a group's ranks form their ``torch.distributed`` world.

    Across nodes: a TCP store at slot 0's node (``MASTER_ADDR`` / ``MASTER_PORT``). On one node
    nothing listens beyond loopback: the ranks meet through a file in the node's temp directory
    (a ``FileStore``, unique per group) and gloo's connections use the loopback interface
    (``GLOO_SOCKET_IFNAME``, unless the driver's environment sets it)."""
    import uuid

    addr, port, loopback, tmp, _ = probe
    env = {"MASTER_ADDR": addr, "MASTER_PORT": str(port)}
    if len(pool.process_on_nodes) == 1 and loopback:
        path = os.path.join(tmp, f"logics_rl-rdzv-{uuid.uuid4().hex}")
        env["LOGICS_RL_INIT_METHOD"] = f"file://{path}"
        env["GLOO_SOCKET_IFNAME"] = os.environ.get("GLOO_SOCKET_IFNAME", loopback)
    return env


class GroupFuture:
    """The pending result of a group call; ``get`` waits, fails fast, and collects."""

    def __init__(
        self,
        group: WorkerGroup,
        method: str,
        refs: list[Any],
        dispatch: Dispatch,
        split: DPSplit | None,
        collect_ranks: list[int],
    ):
        self.group = group
        self.method = method
        self.refs = refs  # one per rank, in rank order
        self.dispatch = dispatch
        self.split = split
        self.collect_ranks = collect_ranks  # ranks whose output is returned, in output order
        self.submitted = time.monotonic()

    def get(self, timeout_s: float | None = None) -> Any:
        """Wait for every rank, fail fast on the first error, and collect the outputs."""
        hint = FIRST_CALL_HINT
        if timeout_s is None:
            timeout_s, hint = self.group.timeout_for(self.method)
        ranks = list(range(len(self.refs)))
        values = self.group._wait(self.refs, ranks, self.method, timeout_s, hint, self.submitted)
        self.group._done(self.method, time.monotonic() - self.submitted)
        outputs = [values[r] for r in self.collect_ranks]
        return collect(outputs, self.dispatch, self.split, self.method)


def _wait_all(
    refs: list[Any],
    ranks: list[int],
    method: str,
    timeout_s: float,
    *,
    hint: str = FIRST_CALL_HINT,
    heartbeat_s: float = 0.0,
    pids: list[int] | None = None,
    started: float | None = None,
) -> list[Any]:
    """Each rank's result in rank order; fails fast on the first error or at the timeout, and
    prints a heartbeat line every ``heartbeat_s`` (0: none) while some rank is pending."""
    import ray

    index = {ref: i for i, ref in enumerate(refs)}
    out: list[Any] = [None] * len(refs)
    pending = list(refs)
    start = time.monotonic() if started is None else started
    deadline = start + timeout_s
    beat = start + heartbeat_s if heartbeat_s > 0 else float("inf")
    cpu = _cpu_seconds(pids)
    while pending:
        now = time.monotonic()
        if now >= deadline:
            late = sorted(ranks[index[r]] for r in pending)
            raise WorkerTimeoutError(method, timeout_s, late, hint, _states(late, pids, cpu))
        if now >= beat:
            late = sorted(ranks[index[r]] for r in pending)
            states = _states(late, pids, cpu)
            cpu = _cpu_seconds(pids)
            print(
                f"waiting {now - start:.0f} s for {method} on ranks {late}"
                f"{'; ' + states if states else ''} (timeout {timeout_s:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            beat += heartbeat_s
        ready, pending = ray.wait(
            pending, num_returns=1, timeout=max(0.0, min(deadline, beat) - now)
        )
        for ref in ready:
            i = index[ref]
            try:
                out[i] = _get_one(ref, ranks[i], method)
            except WorkerDiedError as exc:
                _add_pid(exc, ranks[i], pids)
                raise
            except WorkerError as exc:
                # A rank whose peer died fails in the collective ("connection reset by peer"):
                # the death is the cause to report, so wait a little for it before this error.
                died = _peer_death(pending, index, ranks, method, pids)
                if died is not None:
                    first = exc.error.strip().splitlines()[0] if exc.error.strip() else ""
                    died.detail += f" (then rank {exc.rank} failed: {first[:300]})"
                    raise died from exc
                raise
    return out


PEER_DEATH_GRACE_S = 30.0


def _add_pid(exc: WorkerDiedError, rank: int, pids: list[int] | None) -> None:
    if pids is not None and exc.pid is None and rank < len(pids):
        exc.pid = pids[rank] if pids[rank] >= 0 else None


def _peer_death(
    pending: list, index: dict, ranks: list[int], method: str, pids: list[int] | None
) -> WorkerDiedError | None:
    """The death of another pending rank, if one is seen within ``PEER_DEATH_GRACE_S``."""
    import ray

    deadline = time.monotonic() + PEER_DEATH_GRACE_S
    pending = list(pending)
    while pending and time.monotonic() < deadline:
        ready, pending = ray.wait(
            pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic())
        )
        for ref in ready:
            try:
                _get_one(ref, ranks[index[ref]], method)
            except WorkerDiedError as exc:
                _add_pid(exc, ranks[index[ref]], pids)
                return exc
            except WorkerError:
                continue
    return None


def _proc_stat(pid: int) -> tuple[str, float] | None:
    """(state letter, CPU seconds used) of a process on this node, from /proc; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return fields[0], (int(fields[11]) + int(fields[12])) / ticks


def _cpu_seconds(pids: list[int] | None) -> dict[int, tuple[float, float]]:
    """pid -> (monotonic time, CPU seconds) for the processes on this node."""
    out = {}
    for pid in pids or []:
        st = _proc_stat(pid) if pid >= 0 else None
        if st is not None:
            out[pid] = (time.monotonic(), st[1])
    return out


def _states(ranks: list[int], pids: list[int] | None, before: dict) -> str:
    """What each pending rank's process is doing, where /proc can tell (this node)."""
    parts = []
    for r in ranks:
        if pids is None or r >= len(pids) or pids[r] < 0:
            continue
        pid = pids[r]
        st = _proc_stat(pid)
        if st is None:
            continue
        state, cpu = st
        if state in "Tt":
            parts.append(f"rank {r} pid {pid} is stopped (SIGSTOP; kill -CONT {pid} resumes it)")
        elif state == "Z":
            parts.append(f"rank {r} pid {pid} has exited (zombie)")
        elif pid in before:
            t0, c0 = before[pid]
            parts.append(
                f"rank {r} pid {pid} used {cpu - c0:.0f} s CPU in the last "
                f"{time.monotonic() - t0:.0f} s"
            )
    return "; ".join(parts)


def _get_one(ref: Any, rank: int, method: str) -> Any:
    import ray
    from ray.exceptions import OutOfMemoryError, RayActorError, RayTaskError

    try:
        return ray.get(ref)
    except OutOfMemoryError as exc:  # Ray's memory monitor killed the worker process
        raise WorkerDiedError(rank, method, _short(exc)) from None
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, WorkerError):
            raise WorkerError(cause.rank, cause.method, cause.error, cause.traceback) from None
        if isinstance(cause, LogicsRLError):
            raise cause from None
        raise WorkerError(rank, method, f"{type(cause).__name__}: {cause}", str(exc)) from None
    except RayActorError as exc:
        raise WorkerDiedError(rank, method, _short(exc)) from None


def _short(exc: BaseException, limit: int = 4000) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


class BoundGroupMethod:
    """``group.name(...)`` runs the call and waits; ``.future(...)`` returns without waiting."""

    def __init__(self, group: WorkerGroup, name: str, spec: MethodSpec):
        self._group, self._name, self._spec = group, name, spec
        self.__name__ = name

    def future(self, *args: Any, **kwargs: Any) -> GroupFuture:
        return self._group._submit(self._name, self._spec, args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.future(*args, **kwargs).get()


class WorkerGroup:
    """N actors of one worker class in a ``ResourcePool``; registered methods bound as group calls."""

    def __init__(
        self,
        pool: ResourcePool,
        worker_cls: type,
        *args: Any,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        repeat_factor: float = 10.0,
        repeat_min_s: float = 600.0,
        heartbeat_s: float = 60.0,
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ):
        self.pool = pool
        self.timeout_s = timeout_s
        self.repeat_factor, self.repeat_min_s = repeat_factor, repeat_min_s
        self.heartbeat_s = heartbeat_s
        self._longest: dict[str, float] = {}
        self.actors, where, self._rdzv_file = _spawn(
            pool, worker_cls, args, kwargs, env, timeout_s, heartbeat_s
        )
        self._nodes = [ip for ip, _, _ in where]
        self._pids = [pid for _, pid, _ in where]
        self.node_ids = [node for _, _, node in where]  # Ray node id of each rank
        self._dp_info: list[tuple[int, int, bool]] | None = None
        for name, spec in registered_methods(worker_cls).items():
            if hasattr(type(self), name):
                raise ValueError(f"group method {name!r} clashes with a WorkerGroup attribute")
            setattr(self, name, BoundGroupMethod(self, name, spec))

    @property
    def world_size(self) -> int:
        return len(self.actors)

    @property
    def dp_size(self) -> int:
        """The data-parallel size the workers report (world / model-parallel size)."""
        return self.dp_info()[0][1]

    def call_all(self, name: str, *args: Any, timeout_s: float | None = None) -> list[Any]:
        """Call any actor method (registered or not) on every rank with the same arguments."""
        refs = [getattr(a, name).remote(*args) for a in self.actors]
        ranks = list(range(self.world_size))
        t = self.timeout_s if timeout_s is None else timeout_s
        return self._wait(refs, ranks, name, t, FIRST_CALL_HINT, time.monotonic())

    def pids(self) -> list[int]:
        return list(self._pids)

    def _local_pids(self) -> list[int]:
        """Per rank, the pid when the rank runs on this node (its /proc is readable), else -1."""
        here = node_ip()
        return [pid if ip == here else -1 for ip, pid in zip(self._nodes, self._pids)]

    def timeout_for(self, method: str) -> tuple[float, str]:
        """The timeout of the next call of ``method`` and what to raise if it is too short."""
        longest = self._longest.get(method)
        if longest is None:
            return self.timeout_s, FIRST_CALL_HINT
        t = min(self.timeout_s, max(self.repeat_min_s, self.repeat_factor * longest))
        if t >= self.timeout_s:
            return self.timeout_s, FIRST_CALL_HINT
        return t, (
            f"its calls so far took at most {longest:.0f} s; raise "
            "cluster.repeat_call_timeout_min_s or cluster.repeat_call_timeout_factor if the "
            "work legitimately grew"
        )

    def _done(self, method: str, seconds: float) -> None:
        self._longest[method] = max(seconds, self._longest.get(method, 0.0))

    def _wait(self, refs, ranks, method, timeout_s, hint, started) -> list[Any]:
        try:
            return _wait_all(
                refs,
                ranks,
                method,
                timeout_s,
                hint=hint,
                heartbeat_s=self.heartbeat_s,
                pids=self._local_pids(),
                started=started,
            )
        except WorkerDiedError as exc:
            node = self.node_ids[exc.rank] if exc.rank < len(self.node_ids) else None
            if node is not None and _node_down(node):
                exc.detail = f"its node {node} is down (Ray marked it dead); {exc.detail}"
            raise

    def threads(self) -> list[int]:
        """torch's intra-op threads in each worker (pinned to the slot's CPUs on CPU)."""
        return self.call_all("_lrl_threads")

    def cpu_emulated_dtypes(self) -> set[str]:
        """Half-precision dtypes that the CPU of at least one worker emulates."""
        return {d for per_rank in self.call_all("_lrl_cpu_emulated") for d in per_rank}

    def dp_info(self, refresh: bool = False) -> list[tuple[int, int, bool]]:
        """(dp rank, dp size, collects) per rank, asked once from the workers."""
        if self._dp_info is None or refresh:
            info = self.call_all("_lrl_dispatch_info")
            sizes = {dp_size for _, dp_size, _ in info}
            if len(sizes) != 1:
                raise RuntimeError(f"workers disagree on the data-parallel size: {info}")
            collectors = sorted(d for d, _, c in info if c)
            if collectors != list(range(sizes.pop())):
                raise RuntimeError(f"need exactly one collecting rank per dp rank, got {info}")
            self._dp_info = [tuple(x) for x in info]
        return self._dp_info

    # ------------------------------------------------------------------ dispatch
    def _submit(
        self, name: str, spec: MethodSpec, args: tuple, kwargs: dict[str, Any]
    ) -> GroupFuture:
        ranks = list(range(self.world_size))
        split = None
        if spec.dispatch == Dispatch.ONE_TO_ALL:
            per_rank = {r: (args, kwargs) for r in ranks}
            collect_ranks = ranks
        elif spec.dispatch == Dispatch.ALL_RANKS:
            per_rank, split = self._split_args(name, spec, args, kwargs, [(r, r) for r in ranks])
            collect_ranks = ranks
        else:
            per_rank, split, collect_ranks = self._dp_args(name, spec, args, kwargs)
        refs = [
            getattr(self.actors[r], name).remote(*per_rank[r][0], **per_rank[r][1]) for r in ranks
        ]
        return GroupFuture(self, name, refs, spec.dispatch, split, collect_ranks)

    def _dp_args(self, name: str, spec: MethodSpec, args: tuple, kwargs: dict[str, Any]):
        """Per-rank arguments: each ``Batch`` split over the dp ranks, the rest broadcast."""
        info = self.dp_info()
        dp_size = info[0][1]
        per_rank, split = self._split_args(
            name, spec, args, kwargs, [(rank, dp_rank) for rank, (dp_rank, _, _) in enumerate(info)]
        )
        collect_ranks = [
            r for d in range(dp_size) for r, (dd, _, c) in enumerate(info) if c and dd == d
        ]
        return per_rank, split, collect_ranks

    def _split_args(
        self,
        name: str,
        spec: MethodSpec,
        args: tuple,
        kwargs: dict[str, Any],
        part_of: list[tuple[int, int]],
    ) -> tuple[dict, DPSplit | None]:
        """Each ``Batch`` argument cut into as many parts as ``part_of`` names (rank, part),
        the rest broadcast."""
        n_parts = len({p for _, p in part_of})
        parts: dict[Any, list[Batch]] = {}
        splits = set()
        for key, v in [*enumerate(args), *kwargs.items()]:
            if isinstance(v, Batch):
                parts[key], split = split_for_dp(v, n_parts, pad=spec.pad, what=name)
                splits.add(split)
        if len(splits) > 1:
            raise ValueError(f"{name}: {spec.dispatch.name} Batch arguments have different lengths")
        per_rank = {}
        for rank, part in part_of:
            a = tuple(parts[i][part] if i in parts else v for i, v in enumerate(args))
            k = {n: parts[n][part] if n in parts else v for n, v in kwargs.items()}
            per_rank[rank] = (a, k)
        return per_rank, (splits.pop() if splits else None)

    # ------------------------------------------------------------------ lifecycle
    def kill(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a, no_restart=True)
        _remove_rendezvous_file(self._rdzv_file, self.node_ids[0])


def _spawn(
    pool: ResourcePool,
    worker_cls: type,
    args: tuple,
    kwargs: dict[str, Any],
    env: dict[str, str] | None,
    timeout_s: float,
    heartbeat_s: float,
) -> tuple[list[Any], list[tuple[str, int, str]], str | None]:
    """Create one actor per slot, with rank / rendezvous environment, and wait until constructed;
    returns the actors, where each runs (node IP, process id, Ray node id) and the rendezvous
    file (``file://...``; None: a TCP store)."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    if not (isinstance(worker_cls, type) and issubclass(worker_cls, Worker)):
        raise TypeError(f"{worker_cls!r} must be a subclass of logics_rl.controller.Worker")
    slots = pool.slots()
    probe = ray.remote(num_cpus=0)(_rendezvous).options(
        scheduling_strategy=PlacementGroupSchedulingStrategy(
            placement_group=slots[0].placement_group, placement_group_bundle_index=0
        )
    )
    where0 = ray.get(probe.remote(), timeout=pool.ready_timeout_s)
    rendezvous = _rendezvous_env(pool, where0)
    rdzv_file, rdzv_node = rendezvous.get("LOGICS_RL_INIT_METHOD"), where0[-1]
    remote_cls = ray.remote(worker_cls)
    actors = []
    for rank, slot in enumerate(slots):
        env_vars = {
            **(env or {}),
            "RANK": str(rank),
            "WORLD_SIZE": str(len(slots)),
            "LOCAL_RANK": str(slot.local_rank),
            "LOCAL_WORLD_SIZE": str(slot.local_world_size),
            **rendezvous,
            "LOGICS_RL_USE_GPU": "1" if pool.use_gpu else "0",
            "LOGICS_RL_THREADS": str(max(1, int(pool.cpus_per_process))),
        }
        opts = pool.actor_options(slot)
        opts["runtime_env"] = {"env_vars": env_vars}
        actors.append(remote_cls.options(**opts).remote(*args, **kwargs))
    # Surface constructor failures now, with the rank, rather than at the first call.
    refs = [a._lrl_where.remote() for a in actors]
    try:
        where = _wait_all(
            refs,
            list(range(len(actors))),
            f"{worker_cls.__name__}.__init__",
            timeout_s,
            heartbeat_s=heartbeat_s,
        )
    except BaseException:
        for a in actors:  # the ranks that did start would otherwise hold their slots
            ray.kill(a, no_restart=True)
        _remove_rendezvous_file(rdzv_file, rdzv_node)
        raise
    return actors, where, rdzv_file


NODE_DOWN_WAIT_S = 15.0


def _node_down(node_id: str, wait_s: float = NODE_DOWN_WAIT_S) -> bool:
    """Whether Ray marks ``node_id`` dead, polled for up to ``wait_s`` (the head notices a lost
    node a few seconds after its worker connections break)."""
    import ray

    if node_id == ray.get_runtime_context().get_node_id():
        return False  # the driver's own node (a local run): it is up, nothing to wait for
    deadline = time.monotonic() + wait_s
    while True:
        try:
            alive = {n["NodeID"]: n["Alive"] for n in ray.nodes()}
        except Exception:  # the head itself is unreachable: cannot tell
            return False
        if not alive.get(node_id, False):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
