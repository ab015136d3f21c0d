"""``WorkerGroup``: N Ray actors of one ``Worker`` class, driven as one object.

Every method marked ``@register(dispatch=...)`` on the class becomes a group method:

    group = WorkerGroup(pool, MyWorker, model_path)
    out = group.compute(batch)              # dispatch, run on every rank, collect
    fut = group.compute.future(batch)       # non-blocking: a GroupFuture
    out2 = group.next_step(fut)             # the future flows worker-to-worker, not via the driver
    out2 = fut2.get()

Colocation: ``WorkerGroup.colocated(pool, {"actor": RoleSpec(A), "ref": RoleSpec(B)})`` puts one
object of each role class in the same actor process (sharing its device) and returns one group per
role, whose methods reach only that role's object.

Failures are never silent: an exception in a worker raises ``WorkerError`` (rank, traceback), a
dead worker process raises ``WorkerDiedError``, and a call that outlives ``timeout_s`` raises
``WorkerTimeoutError`` naming the ranks still running.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from logics_rl.controller.dispatch import (
    REGISTER_ATTR,
    DeferredResult,
    Dispatch,
    MethodSpec,
    collect,
    registered_methods,
    split_for_dp,
)
from logics_rl.controller.errors import WorkerDiedError, WorkerError, WorkerTimeoutError
from logics_rl.controller.resource_pool import ResourcePool
from logics_rl.controller.worker import Worker, free_port, node_ip
from logics_rl.protocol import Batch

DEFAULT_TIMEOUT_S = 3600.0


@dataclass
class RoleSpec:
    """A role class and its constructor arguments, for colocation."""

    cls: type
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def _rendezvous() -> tuple[str, int]:
    return node_ip(), free_port()


class _Colocated(Worker):
    """One actor process holding one object per role; methods are exposed as ``role__method``."""

    def __init__(self, roles: dict[str, RoleSpec]):
        super().__init__()
        self.roles = {name: spec.cls(*spec.args, **spec.kwargs) for name, spec in roles.items()}


def _colocated_class(roles: dict[str, RoleSpec]) -> type:
    attrs: dict[str, Any] = {}
    for role, spec in roles.items():
        for name, mspec in registered_methods(spec.cls).items():

            def delegate(self, *args, _role=role, _name=name, **kwargs):
                return getattr(self.roles[_role], _name)(*args, **kwargs)

            delegate.__name__ = f"{role}__{name}"
            setattr(delegate, REGISTER_ATTR, mspec)
            attrs[delegate.__name__] = delegate
    return type("Colocated_" + "_".join(roles), (_Colocated,), attrs)


class GroupFuture:
    """The pending result of a non-blocking group call."""

    def __init__(
        self,
        group: WorkerGroup,
        method: str,
        refs: list[Any],
        ranks: list[int],
        dispatch: Dispatch,
        pad: int,
        collect_ranks: list[int],
    ):
        self.group = group
        self.method = method
        self.refs = refs
        self.ranks = ranks
        self.dispatch = dispatch
        self.pad = pad
        self.collect_ranks = collect_ranks  # ranks whose output is returned, in output order

    def _refs_of(self, ranks: list[int]) -> list[Any]:
        pos = {r: i for i, r in enumerate(self.ranks)}
        return [self.refs[pos[r]] for r in ranks]

    def deferred(self) -> DeferredResult:
        return DeferredResult(self._refs_of(self.collect_ranks), self.dispatch, self.pad)

    def done(self) -> bool:
        import ray

        ready, _ = ray.wait(self.refs, num_returns=len(self.refs), timeout=0)
        return len(ready) == len(self.refs)

    def get(self, timeout_s: float | None = None) -> Any:
        """Wait for every rank, fail fast on the first error, and collect the outputs."""
        timeout_s = self.group.timeout_s if timeout_s is None else timeout_s
        values = _wait_all(self.refs, self.ranks, self.method, timeout_s)
        by_rank = dict(zip(self.ranks, values))
        return collect([by_rank[r] for r in self.collect_ranks], self.dispatch, self.pad)


def _wait_all(refs: list[Any], ranks: list[int], method: str, timeout_s: float) -> list[Any]:
    import ray

    index = {ref: i for i, ref in enumerate(refs)}
    out: list[Any] = [None] * len(refs)
    pending = list(refs)
    deadline = time.monotonic() + timeout_s
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WorkerTimeoutError(method, timeout_s, sorted(ranks[index[r]] for r in pending))
        ready, pending = ray.wait(pending, num_returns=1, timeout=remaining)
        for ref in ready:
            i = index[ref]
            out[i] = _get_one(ref, ranks[i], method)
    return out


def _get_one(ref: Any, rank: int, method: str) -> Any:
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    try:
        return ray.get(ref)
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, WorkerError):
            raise WorkerError(cause.rank, cause.method, cause.error, cause.traceback) from None
        raise WorkerError(rank, method, f"{type(cause).__name__}: {cause}", str(exc)) from None
    except RayActorError as exc:
        raise WorkerDiedError(rank, method, _short(exc)) from None


def _short(exc: BaseException, limit: int = 4000) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


class BoundGroupMethod:
    """``group.name(...)`` honours the method's blocking flag; ``.future(...)`` never blocks."""

    def __init__(self, group: WorkerGroup, name: str, spec: MethodSpec):
        self._group, self._name, self._spec = group, name, spec
        self.__name__ = name

    def future(self, *args: Any, **kwargs: Any) -> GroupFuture:
        return self._group._submit(self._name, self._spec.dispatch, args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fut = self.future(*args, **kwargs)
        return fut.get() if self._spec.blocking else fut


class WorkerGroup:
    """N actors of one worker class in a ``ResourcePool``; registered methods bound as group calls."""

    def __init__(
        self,
        pool: ResourcePool,
        worker_cls: type,
        *args: Any,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ):
        actors = _spawn(pool, worker_cls, args, kwargs, env, timeout_s)
        self._init(pool, actors, registered_methods(worker_cls), "", timeout_s)

    @classmethod
    def colocated(
        cls,
        pool: ResourcePool,
        roles: dict[str, RoleSpec],
        timeout_s: float = DEFAULT_TIMEOUT_S,
        env: dict[str, str] | None = None,
    ) -> dict[str, WorkerGroup]:
        """One actor per rank holding every role; returns one group view per role."""
        fused = _colocated_class(roles)
        actors = _spawn(pool, fused, (roles,), {}, env, timeout_s)
        groups = {}
        for role, spec in roles.items():
            view = cls.__new__(cls)
            view._init(pool, actors, registered_methods(spec.cls), f"{role}__", timeout_s)
            groups[role] = view
        return groups

    def _init(
        self,
        pool: ResourcePool,
        actors: list[Any],
        methods: dict[str, MethodSpec],
        prefix: str,
        timeout_s: float,
    ) -> None:
        self.pool = pool
        self.actors = actors
        self.timeout_s = timeout_s
        self._prefix = prefix
        self._dp_info: list[tuple[int, int, bool]] | None = None
        for name, spec in methods.items():
            if hasattr(type(self), name):
                raise ValueError(f"group method {name!r} clashes with a WorkerGroup attribute")
            setattr(self, name, BoundGroupMethod(self, name, spec))

    @property
    def world_size(self) -> int:
        return len(self.actors)

    # ------------------------------------------------------------------ internals
    def call_all(self, name: str, *args: Any, timeout_s: float | None = None) -> list[Any]:
        """Call any actor method (registered or not) on every rank with the same arguments."""
        refs = [getattr(a, name).remote(*args) for a in self.actors]
        ranks = list(range(self.world_size))
        return _wait_all(refs, ranks, name, self.timeout_s if timeout_s is None else timeout_s)

    def pids(self) -> list[int]:
        return self.call_all("_lrl_pid")

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

    def _submit(
        self, name: str, dispatch: Dispatch, args: tuple, kwargs: dict[str, Any]
    ) -> GroupFuture:
        ranks = list(range(self.world_size))
        pad = 0
        if dispatch == Dispatch.RANK_ZERO:
            ranks = [0]
            per_rank = {0: self._broadcast_args(args, kwargs)}
            collect_ranks = [0]
        elif dispatch == Dispatch.ONE_TO_ALL:
            same = self._broadcast_args(args, kwargs)
            per_rank = {r: same for r in ranks}
            collect_ranks = ranks
        elif dispatch == Dispatch.ALL_TO_ALL:
            per_rank = {r: self._nth_args(args, kwargs, r) for r in ranks}
            collect_ranks = ranks
        elif dispatch == Dispatch.DP_COMPUTE:
            per_rank, pad, collect_ranks = self._dp_args(args, kwargs)
        else:  # pragma: no cover - Dispatch is closed
            raise ValueError(f"unknown dispatch mode {dispatch}")
        method = self._prefix + name
        refs = [
            getattr(self.actors[r], method).remote(*per_rank[r][0], **per_rank[r][1]) for r in ranks
        ]
        return GroupFuture(self, name, refs, ranks, dispatch, pad, collect_ranks)

    @staticmethod
    def _broadcast_args(args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        def conv(v: Any) -> Any:
            return v.deferred() if isinstance(v, GroupFuture) else v

        return tuple(conv(a) for a in args), {k: conv(v) for k, v in kwargs.items()}

    def _nth_args(
        self, args: tuple, kwargs: dict[str, Any], rank: int
    ) -> tuple[tuple, dict[str, Any]]:
        def pick(key: str, v: Any) -> Any:
            if isinstance(v, GroupFuture):
                if len(v.ranks) != self.world_size:
                    raise ValueError(f"ALL_TO_ALL argument {key}: future from {len(v.ranks)} ranks")
                return v._refs_of([rank])[0]
            if not isinstance(v, list | tuple) or len(v) != self.world_size:
                raise ValueError(
                    f"ALL_TO_ALL argument {key} must be a list with one entry per worker "
                    f"({self.world_size}), got {type(v).__name__}"
                )
            return v[rank]

        return (
            tuple(pick(f"#{i}", a) for i, a in enumerate(args)),
            {k: pick(k, v) for k, v in kwargs.items()},
        )

    def _dp_args(self, args: tuple, kwargs: dict[str, Any]):
        info = self.dp_info()
        dp_size = info[0][1]
        items = list(enumerate(args)) + list(kwargs.items())
        parts: dict[Any, list[Any]] = {}
        pads = set()
        for key, v in items:
            if isinstance(v, GroupFuture) and not self._same_dp_layout(v):
                v = v.get()  # a different layout: collect on the driver, then split again
            if isinstance(v, GroupFuture):
                collectors = {d: r for r, (d, _, c) in enumerate(v.group.dp_info()) if c}
                parts[key] = v._refs_of([collectors[d] for d in range(dp_size)])
                pads.add(v.pad)
            elif isinstance(v, Batch):
                parts[key], pad = split_for_dp(v, dp_size)
                pads.add(pad)
        if len(pads) > 1:
            raise ValueError(f"DP_COMPUTE Batch arguments have different lengths (pads {pads})")
        pad = pads.pop() if pads else 0
        per_rank = {}
        for rank, (dp_rank, _, _) in enumerate(info):
            a = tuple(parts[i][dp_rank] if i in parts else v for i, v in enumerate(args))
            k = {n: parts[n][dp_rank] if n in parts else v for n, v in kwargs.items()}
            per_rank[rank] = (a, k)
        collect_ranks = [
            r for d in range(dp_size) for r, (dd, _, c) in enumerate(info) if c and dd == d
        ]
        return per_rank, pad, collect_ranks

    def _same_dp_layout(self, fut: GroupFuture) -> bool:
        return (
            fut.dispatch == Dispatch.DP_COMPUTE
            and fut.group.dp_info()[0][1] == self.dp_info()[0][1]
        )

    # ------------------------------------------------------------------ lifecycle
    def kill(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a, no_restart=True)


def _spawn(
    pool: ResourcePool,
    worker_cls: type,
    args: tuple,
    kwargs: dict[str, Any],
    env: dict[str, str] | None,
    timeout_s: float,
) -> list[Any]:
    """Create one actor per slot, with rank / rendezvous environment, and wait until constructed."""
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
    master_addr, master_port = ray.get(probe.remote(), timeout=pool.ready_timeout_s)
    remote_cls = ray.remote(worker_cls)
    actors = []
    for rank, slot in enumerate(slots):
        env_vars = {
            **(env or {}),
            "RANK": str(rank),
            "WORLD_SIZE": str(len(slots)),
            "LOCAL_RANK": str(slot.local_rank),
            "LOCAL_WORLD_SIZE": str(slot.local_world_size),
            "MASTER_ADDR": master_addr,
            "MASTER_PORT": str(master_port),
            "LOGICS_RL_USE_GPU": "1" if pool.use_gpu else "0",
        }
        opts = pool.actor_options(slot)
        opts["runtime_env"] = {"env_vars": env_vars}
        actors.append(remote_cls.options(**opts).remote(*args, **kwargs))
    # Surface constructor failures now, with the rank, rather than at the first call.
    refs = [a._lrl_ping.remote() for a in actors]
    try:
        _wait_all(refs, list(range(len(actors))), f"{worker_cls.__name__}.__init__", timeout_s)
    except BaseException:
        for a in actors:  # the ranks that did start would otherwise hold their slots
            ray.kill(a, no_restart=True)
        raise
    return actors
