"""``ResourcePool``: Ray placement groups over nodes x devices.

One node: one placement group (STRICT_PACK) with one bundle per process slot. Several nodes: one
placement group (STRICT_SPREAD) with one bundle per node holding all of that node's slots, so no
two nodes' ranks can land on the same machine (separate per-node groups could: nothing keeps two
small STRICT_PACK groups apart); the actors of a node share its bundle. On a GPU cluster a slot is
one GPU; on CPU it is ``cpus_per_process`` CPUs. One actor per slot: roles that share a device are
composed inside one worker (``workers/hybrid.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Slot:
    placement_group: Any
    bundle_index: int
    local_rank: int
    local_world_size: int


@dataclass
class ResourcePool:
    process_on_nodes: list[int]
    use_gpu: bool = False
    cpus_per_process: float = 1.0
    name: str = "logics_rl"
    ready_timeout_s: float = 120.0
    _pgs: list[Any] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.process_on_nodes or any(n < 1 for n in self.process_on_nodes):
            raise ValueError(
                f"process_on_nodes must be positive counts, got {self.process_on_nodes}"
            )

    @property
    def world_size(self) -> int:
        return sum(self.process_on_nodes)

    def _bundle(self) -> dict[str, float]:
        bundle = {"CPU": float(self.cpus_per_process)}
        if self.use_gpu:
            bundle["GPU"] = 1.0
        return bundle

    def placement_groups(self) -> list[Any]:
        """Create (once) and wait for the placement groups; a clear error if they cannot fit."""
        if self._pgs:
            return self._pgs
        import ray
        from ray.util.placement_group import placement_group

        from logics_rl.errors import ClusterResourcesError

        need = {k: v * self.world_size for k, v in self._bundle().items()}
        have = ray.cluster_resources()
        short = {k: (v, have.get(k, 0.0)) for k, v in need.items() if have.get(k, 0.0) < v}
        if short:  # can never fit: say so now rather than after ready_timeout_s
            lack = ", ".join(f"{v:g} {k} (the cluster has {h:g})" for k, (v, h) in short.items())
            raise ClusterResourcesError(
                f"resource pool {self.name!r} needs {self.process_on_nodes} processes per node "
                f"with {self._bundle()} each: {lack}. Lower cluster.procs_per_node / "
                "cluster.nnodes / cluster.cpus_per_proc, or join a larger cluster (cluster.ray_address)"
            )
        if len(self.process_on_nodes) == 1:
            pgs = [placement_group([self._bundle()] * self.world_size, strategy="STRICT_PACK")]
        else:
            per_node = [
                {k: v * n for k, v in self._bundle().items()} for n in self.process_on_nodes
            ]
            pgs = [placement_group(per_node, strategy="STRICT_SPREAD")]
        ready, _ = ray.wait(
            [pg.ready() for pg in pgs], num_returns=len(pgs), timeout=self.ready_timeout_s
        )
        if len(ready) != len(pgs):
            for pg in pgs:
                ray.util.remove_placement_group(pg)
            raise ClusterResourcesError(
                f"resource pool {self.name!r} needs {self.process_on_nodes} processes per node with "
                f"{self._bundle()} each, but the cluster could not provide them within "
                f"{self.ready_timeout_s:g} s; available: {ray.available_resources()}"
            )
        self._pgs = pgs
        return pgs

    def slots(self) -> list[Slot]:
        """One slot per rank, in rank order (node by node)."""
        (pg,) = self.placement_groups()
        if len(self.process_on_nodes) == 1:
            n = self.world_size
            return [Slot(pg, i, i, n) for i in range(n)]
        return [
            Slot(pg, node, i, n)  # the node's bundle, shared by its ranks
            for node, n in enumerate(self.process_on_nodes)
            for i in range(n)
        ]

    def actor_options(self, slot: Slot) -> dict[str, Any]:
        """Ray options for the actor in ``slot``."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        opts: dict[str, Any] = {
            "num_cpus": self.cpus_per_process,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                placement_group=slot.placement_group,
                placement_group_bundle_index=slot.bundle_index,
            ),
        }
        if self.use_gpu:
            opts["num_gpus"] = 1.0
        return opts

    def remove(self) -> None:
        import ray

        for pg in self._pgs:
            ray.util.remove_placement_group(pg)
        self._pgs = []
