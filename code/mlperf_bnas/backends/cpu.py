"""What this machine's CPUs are, read from Linux itself (``/proc/cpuinfo``, sysfs).

Two facts the backends decide by: the instruction-set flags (does this CPU run bf16 in
hardware: ``amx_bf16``; INT8 matrix units: ``amx_int8``, ``avx512_vnni``), and the
topology (which logical CPUs are which physical cores, on which socket and NUMA node),
from which a layout of ``instances x cores_per_instance`` is cut. Nothing here measures
speed; it only says what the hardware is, so a decision can name it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
SYSFS_CPU = Path("/sys/devices/system/cpu")
SYSFS_NODE = Path("/sys/devices/system/node")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]

    @property
    def native_bf16(self) -> bool:
        """bf16 matrix units (AMX-BF16): where a bf16 run can beat f32 by a wide margin."""
        return "amx_bf16" in self.flags

    def describe(self) -> dict[str, object]:
        return {"model": self.model, **{f: f in self.flags for f in
                                        ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx2")}}


@lru_cache(maxsize=None)
def cpu_info(path: Path = CPUINFO) -> CpuInfo:
    """The first processor's model name and flags (all cores of a machine share them)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return CpuInfo("unknown CPU", frozenset())
    return parse_cpuinfo(text)


def parse_cpuinfo(text: str) -> CpuInfo:
    """Model name and flags of the first processor in a ``/proc/cpuinfo`` text: the one reader of
    that file's model and flags (backends, the IPEX check, the benchmark tools)."""
    model, flags = "unknown CPU", frozenset()
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    if m:
        model = m.group(1).strip()
    m = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    if m:
        flags = frozenset(m.group(1).split())
    return CpuInfo(model, flags)


@dataclass(frozen=True)
class Core:
    """One physical core: its logical CPUs (hyper-threads), socket and NUMA node."""

    cpus: tuple[int, ...]
    socket: int
    node: int


@dataclass(frozen=True)
class Topology:
    cores: tuple[Core, ...]
    nodes: tuple[int, ...] = field(default=())

    @property
    def sockets(self) -> tuple[int, ...]:
        return tuple(sorted({c.socket for c in self.cores}))

    def describe(self) -> str:
        """One line, for errors and logs: ``4 cores (8 CPUs) on 1 socket, NUMA nodes [0]``."""
        cpus = sum(len(c.cpus) for c in self.cores)
        per_node = ", ".join(f"node {n}: {sum(c.node == n for c in self.cores)} cores" for n in self.nodes)
        return (f"{len(self.cores)} physical cores ({cpus} CPUs) on {len(self.sockets)} socket(s), "
                f"NUMA {per_node or 'nodes unknown'}")


def _read_int(path: Path, default: int) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return default


def _cpu_list(text: str) -> list[int]:
    """``0-3,8`` -> [0, 1, 2, 3, 8] (the kernel's list format)."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def topology(sysfs_cpu: Path = SYSFS_CPU, sysfs_node: Path = SYSFS_NODE) -> Topology:
    """Physical cores of the CPUs this process may run on (its affinity), from sysfs.

    Logical CPUs sharing ``(socket, core_id)`` are one core; its NUMA node is the
    ``node<N>`` whose ``cpulist`` holds it (0 when the kernel has no NUMA information).
    """
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    node_of: dict[int, int] = {}
    nodes: list[int] = []
    if sysfs_node.is_dir():
        for d in sorted(sysfs_node.glob("node[0-9]*")):
            n = int(d.name[4:])
            try:
                cpus = _cpu_list((d / "cpulist").read_text())
            except OSError:
                continue
            nodes.append(n)
            node_of.update({c: n for c in cpus})
    groups: dict[tuple[int, int], list[int]] = {}
    for cpu in allowed:
        top = sysfs_cpu / f"cpu{cpu}" / "topology"
        socket = _read_int(top / "physical_package_id", 0)
        core = _read_int(top / "core_id", cpu)
        groups.setdefault((socket, core), []).append(cpu)
    cores = tuple(Core(tuple(cpus), socket, node_of.get(cpus[0], 0))
                  for (socket, _core), cpus in sorted(groups.items(), key=lambda kv: kv[1][0]))
    used_nodes = tuple(sorted({c.node for c in cores})) or (0,)
    return Topology(cores, tuple(n for n in (nodes or used_nodes) if n in used_nodes) or used_nodes)
