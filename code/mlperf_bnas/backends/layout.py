"""Instance layout: ``instances x cores_per_instance`` cut from the machine's topology.

Intel's CPU harnesses run each backend instance on a core group of its own (whole
physical cores, consecutive within one NUMA node where they fit) with as many OpenMP
threads as the group has cores, so instances never share a core or a cache they
fight over, and never migrate. ``plan`` makes that cut from ``backends/cpu.py``'s
topology; the cores no instance uses are ``spare`` (the PyTorch backend runs
post-processing there, off the inference cores, when there are any).

A layout the machine cannot hold is a ``UserError`` of one line naming the topology
found, never a silent oversubscription.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlperf_bnas.backends.cpu import Topology, topology
from mlperf_bnas.errors import UserError


@dataclass(frozen=True)
class Layout:
    groups: tuple[tuple[int, ...], ...]     # logical CPUs of each instance
    spare: tuple[int, ...]                  # CPUs of the cores no instance uses
    nodes: tuple[int, ...]                  # NUMA node of each group

    def describe(self) -> str:
        groups = "; ".join(f"{_ranges(g)} (node {n})" for g, n in zip(self.groups, self.nodes))
        return f"{len(self.groups)} instance(s) on CPUs {groups}; spare CPUs: {_ranges(self.spare) or 'none'}"


def _ranges(cpus: tuple[int, ...]) -> str:
    """(0, 1, 2, 5) -> '0-2,5'."""
    out, cpus = [], sorted(cpus)
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)


def plan(instances: int, cores_per_instance: int | None = None, numa_node: int | None = None,
         hyperthreads: bool = False, topo: Topology | None = None, where: str = "backend_options") -> Layout:
    """Core groups for ``instances`` instances of ``cores_per_instance`` physical cores each.

    ``cores_per_instance`` None: the usable cores divided evenly. ``numa_node``: only that
    node's cores. ``hyperthreads``: a group holds every logical CPU of its cores (else one
    per core). Groups are consecutive cores in (node, socket, CPU) order, so a group spans
    two nodes only when the layout asks for more cores than one node has.
    """
    topo = topo or topology()
    cores = sorted(topo.cores, key=lambda c: (c.node, c.socket, c.cpus[0]))
    if numa_node is not None:
        if numa_node not in topo.nodes:
            raise UserError(f"{where}: numa_node {numa_node} does not exist here; this machine has "
                            f"{topo.describe()}")
        cores = [c for c in cores if c.node == numa_node]
    if instances < 1:
        raise UserError(f"{where}: instances must be >= 1")
    if cores_per_instance is None:
        cores_per_instance = len(cores) // instances
    need = instances * cores_per_instance
    if cores_per_instance < 1 or need > len(cores):
        scope = f"NUMA node {numa_node}" if numa_node is not None else "this machine"
        raise UserError(f"{where}: {instances} instance(s) x {cores_per_instance or '?'} core(s) need "
                        f"{max(need, instances)} physical cores, {scope} has {len(cores)} "
                        f"({topo.describe()}); lower instances or cores_per_instance")
    groups, nodes = [], []
    for i in range(instances):
        chunk = cores[i * cores_per_instance:(i + 1) * cores_per_instance]
        cpus = tuple(cpu for c in chunk for cpu in (c.cpus if hyperthreads else c.cpus[:1]))
        groups.append(cpus)
        nodes.append(chunk[0].node)
    used = set(cores[:need])        # a used core's second hardware thread is no place for other work
    spare = tuple(sorted(cpu for c in topo.cores if c not in used for cpu in c.cpus))
    return Layout(tuple(groups), spare, tuple(nodes))
