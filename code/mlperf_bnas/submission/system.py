"""Describe the machine as an MLPerf ``systems/<system>.json``.

Hardware and software facts are read from the machine (``/proc``, ``/sys``,
``os-release``, installed package metadata) without importing any framework.
What cannot be detected (submitter, availability status, cooling, notes...) comes
from a user-editable overrides file, ``systems/overrides.yaml``, whose keys are
validated against the fields the v5.1 submission checker requires.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import read_mapping

#: Every field the v5.1 checker requires in ``systems/<system>.json``
#: (its SYSTEM_DESC_REQUIRED_FIELDS).
REQUIRED_FIELDS = (
    "division", "submitter", "status", "system_name", "number_of_nodes",
    "host_processor_model_name", "host_processors_per_node", "host_processor_core_count",
    "host_memory_capacity", "host_storage_capacity", "host_storage_type",
    "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
    "framework", "operating_system", "system_type", "other_software_stack",
    "host_processor_frequency", "host_processor_caches", "host_memory_configuration",
    "host_processor_interconnect", "host_networking", "host_networking_topology",
    "accelerator_frequency", "accelerator_host_interconnect", "accelerator_interconnect",
    "accelerator_interconnect_topology", "accelerator_memory_configuration",
    "accelerator_on-chip_memories", "cooling", "hw_notes", "sw_notes",
    "host_network_card_count", "system_type_detail",
)
#: Fields that must hold a meaningful (non-empty) value
#: (the checker's SYSTEM_DESC_MEANINGFUL_RESPONSE_REQUIRED_FIELDS).
NON_EMPTY_FIELDS = (
    "division", "submitter", "system_type", "status", "system_name", "number_of_nodes",
    "host_processor_model_name", "host_processors_per_node", "host_processor_core_count",
    "host_memory_capacity", "host_memory_configuration", "host_storage_capacity",
    "host_storage_type", "host_networking", "host_network_card_count",
    "host_networking_topology", "accelerators_per_node", "accelerator_model_name",
    "accelerator_memory_capacity", "accelerator_host_interconnect",
    "accelerator_memory_configuration", "accelerator_interconnect", "cooling",
    "framework", "operating_system", "other_software_stack",
)
VALID_STATUS = ("available", "preview", "rdi")
VALID_SYSTEM_TYPES = ("datacenter", "edge", "datacenter,edge", "edge,datacenter")

#: Software whose versions go into ``framework`` / ``other_software_stack``.
_FRAMEWORK_PACKAGES = ("openvino", "torch")
_STACK_PACKAGES = ("mlcommons-loadgen", "nncf", "torchvision", "torchao", "numpy", "pycocotools", "pymoo")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class CpuInfo:
    model_name: str
    sockets: int
    cores_per_socket: int
    threads: int
    frequency_mhz: float | None
    caches: str


def _cpu_info() -> CpuInfo:
    text = _read("/proc/cpuinfo")
    model = "unknown CPU"
    physical_ids: set[str] = set()
    cores_per_socket = 0
    threads = 0
    mhz: float | None = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model == "unknown CPU":
            model = value
        elif key == "physical id":
            physical_ids.add(value)
        elif key == "cpu cores" and not cores_per_socket:
            cores_per_socket = int(value) if value.isdigit() else 0
        elif key == "processor":
            threads += 1
        elif key == "cpu MHz" and mhz is None:
            try:
                mhz = float(value)
            except ValueError:
                pass
    threads = threads or (os.cpu_count() or 1)
    sockets = max(1, len(physical_ids))
    cores_per_socket = cores_per_socket or max(1, threads // sockets)
    # The nominal maximum is a better description than the momentary "cpu MHz".
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    if max_khz.isdigit():
        mhz = int(max_khz) / 1000.0
    if model == "unknown CPU":
        model = platform.processor() or model
    return CpuInfo(model, sockets, cores_per_socket, threads, mhz, _caches())


def _caches() -> str:
    """``L1d 32 KiB, L1i 32 KiB, L2 1 MiB (per core); L3 32 MiB`` from cpu0's sysfs entries."""
    parts = []
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")):
        level = _read(str(index / "level")).strip()
        kind = _read(str(index / "type")).strip()
        size = _read(str(index / "size")).strip()
        if not level or not size:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        parts.append(f"L{level}{suffix} {_human_size(size)}")
    return ", ".join(parts)


def _human_size(sysfs_size: str) -> str:
    """``32K`` -> ``32 KiB``, ``1024K`` -> ``1 MiB``, ``32768K`` -> ``32 MiB``."""
    m = re.fullmatch(r"(\d+)([KMG]?)", sysfs_size)
    if not m:
        return sysfs_size
    kib = int(m.group(1)) * {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}[m.group(2)]
    for unit, scale in (("GiB", 1024 * 1024), ("MiB", 1024)):
        if kib >= scale and kib % scale == 0:
            return f"{kib // scale:.0f} {unit}"
    return f"{kib:.0f} KiB"


def _memory_gib() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / (1024 * 1024)
    return None


def _os_name() -> str:
    pretty = ""
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            pretty = line.split("=", 1)[1].strip().strip('"')
    return f"{pretty or platform.system()} (kernel {platform.release()})"


def _storage(path: Path) -> tuple[str, str]:
    """Capacity and type (SSD/HDD) of the disk holding ``path``."""
    try:
        total = shutil.disk_usage(path).total
    except OSError:
        return "", ""
    capacity = f"{total / 1e9:.0f} GB"
    kinds = set()
    for rota in Path("/sys/block").glob("*/queue/rotational"):
        name = rota.parts[-3]
        if name.startswith(("loop", "ram", "zram")):
            continue
        kinds.add("HDD" if _read(str(rota)).strip() == "1" else "SSD")
    kind = " + ".join(sorted(kinds)) if kinds else "unknown"
    if " hypervisor" in _read("/proc/cpuinfo"):
        # A virtual disk reports "rotational" whatever backs it: say what we saw.
        kind = f"virtual disk (reports {kind})"
    return capacity, kind


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _versions(packages: tuple[str, ...]) -> str:
    return ", ".join(f"{p} {v}" for p in packages if (v := _version(p)))


def _sanitize(text: str) -> str:
    text = re.sub(r"\((R|TM|tm|r)\)", "", text)
    text = re.sub(r"\b(CPU|Processor|with Radeon Graphics)\b", "", text)
    text = re.sub(r"@.*$", "", text)
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "cpu"


def default_system_name() -> str:
    """A file-name-safe name for this machine, e.g. ``1xAMD_EPYC_2c`` or ``2xIntel_Xeon_Platinum_8380_80c``.

    Sockets, CPU model and the total physical core count: two runs on the same
    machine get the same name, different machines (usually) different names.
    """
    cpu = _cpu_info()
    return f"{cpu.sockets}x{_sanitize(cpu.model_name)}_{cpu.sockets * cpu.cores_per_socket}c"


def machine_identity() -> dict[str, Any]:
    """What a speed measurement depends on, as far as the machine goes: CPU model, sockets,
    physical cores, hardware threads, and the CPUs this process may run on (a container or
    ``taskset`` can hide some). Two machines that differ in any of these are not
    interchangeable for a sized or tuned ``target_qps`` (``mlperf_bnas.tune.sizing``)."""
    cpu = _cpu_info()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or cpu.threads
    return {"cpu_model": cpu.model_name, "sockets": cpu.sockets, "cores": cpu.sockets * cpu.cores_per_socket,
            "threads": cpu.threads, "usable_cpus": usable}


def detect(storage_path: Path | None = None) -> dict[str, Any]:
    """The system fields that can be read from this machine."""
    cpu = _cpu_info()
    mem = _memory_gib()
    capacity, kind = _storage(storage_path or Path.cwd())
    freq = f"{cpu.frequency_mhz:.0f} MHz" if cpu.frequency_mhz else ""
    framework = _versions(_FRAMEWORK_PACKAGES)
    stack = f"Python {platform.python_version()}, " + _versions(_STACK_PACKAGES)
    return {
        # Numbers are written as text: the checker tests emptiness with `not value`,
        # so an integer 0 (no accelerators) would read as "empty".
        "number_of_nodes": "1",
        "host_processor_model_name": cpu.model_name,
        "host_processors_per_node": str(cpu.sockets),
        "host_processor_core_count": str(cpu.cores_per_socket),
        "host_processor_frequency": freq,
        "host_processor_caches": cpu.caches,
        "host_processor_interconnect": "",
        "host_memory_capacity": f"{mem:.0f} GB" if mem else "",
        # The DIMM layout needs root (dmidecode); the overrides file should give it.
        "host_memory_configuration": (f"{mem:.0f} GB total, DIMM layout not detected" if mem else ""),
        "host_storage_capacity": capacity,
        "host_storage_type": kind,
        "accelerators_per_node": "0",
        "accelerator_model_name": "N/A",
        "accelerator_memory_capacity": "N/A",
        "accelerator_frequency": "N/A",
        "accelerator_host_interconnect": "N/A",
        "accelerator_interconnect": "N/A",
        "accelerator_interconnect_topology": "N/A",
        "accelerator_memory_configuration": "N/A",
        "accelerator_on-chip_memories": "N/A",
        "framework": framework,
        "operating_system": _os_name(),
        "other_software_stack": stack,
        "sw_notes": f"{cpu.threads} hardware threads visible to the OS",
    }


def load_overrides(path: Path) -> dict[str, Any]:
    """Read and validate ``systems/overrides.yaml``: only known fields, scalar values."""
    data = read_mapping(path, "system overrides file",
                        "create it (see systems/overrides.yaml in the repository)")
    allowed = set(REQUIRED_FIELDS)
    for key, value in data.items():
        if key not in allowed:
            raise UserError(f"{path}: unknown key {key!r}; valid keys are the v5.1 system fields "
                            f"({', '.join(sorted(allowed))})")
        if value is not None and not isinstance(value, (str, int, float)):
            raise UserError(f"{path}: key {key!r} must be a single value (text or number), got {type(value).__name__}")
    if "status" in data and data["status"] not in VALID_STATUS:
        raise UserError(f"{path}: status {data['status']!r} is invalid; use one of {', '.join(VALID_STATUS)}")
    if "system_type" in data and data["system_type"] not in VALID_SYSTEM_TYPES:
        raise UserError(f"{path}: system_type {data['system_type']!r} is invalid; use one of {', '.join(VALID_SYSTEM_TYPES)}")
    if "division" in data and data["division"] != "open":
        raise UserError(f"{path}: division must be 'open' (this harness packages open-division submissions)")
    return {k: (v if isinstance(v, str) else str(v)) for k, v in data.items() if v is not None}


def describe_system(system_name: str, overrides_path: Path, storage_path: Path | None = None) -> dict[str, Any]:
    """``systems/<system>.json`` contents: detected facts, then the overrides, then checks."""
    overrides = load_overrides(overrides_path)
    desc: dict[str, Any] = {"division": "open", "system_name": system_name}
    desc.update(detect(storage_path))
    desc.update(overrides)
    missing = [f for f in REQUIRED_FIELDS if f not in desc]
    if missing:
        raise UserError(f"{overrides_path}: add the system field(s) that cannot be detected: {', '.join(missing)}")
    empty = [f for f in NON_EMPTY_FIELDS if str(desc.get(f, "")).strip() == ""]
    if empty:
        raise UserError(f"{overrides_path}: these system fields must not be empty; set them: {', '.join(empty)}")
    return {k: desc[k] for k in REQUIRED_FIELDS} | {k: v for k, v in desc.items() if k not in REQUIRED_FIELDS}
