"""Memory allocator for the PyTorch backend: jemalloc or tcmalloc from the system's packages.

Intel's CPU harnesses preload jemalloc (or tcmalloc) because glibc's malloc returns and
re-faults the large activation buffers of every batch. A preload only works from the
start of a process, so ``commands/allocator_env.py`` re-executes a ``run`` whose
``backend_options.allocator`` asks for one with ``LD_PRELOAD`` set; this module finds
the library and says what is in effect. A missing library is a warning that says how to
install it, and the run goes on with the system allocator (recorded as such).
"""

from __future__ import annotations

import os
from pathlib import Path

#: name -> (file names to look for, Debian package, environment Intel's harness sets with it)
ALLOCATORS: dict[str, tuple[tuple[str, ...], str, dict[str, str]]] = {
    "jemalloc": (("libjemalloc.so.2", "libjemalloc.so"), "libjemalloc2",
                 {"MALLOC_CONF": "oversize_threshold:1,background_thread:true,metadata_thp:auto,"
                                 "dirty_decay_ms:9000000000,muzzy_decay_ms:9000000000"}),
    "tcmalloc": (("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so"),
                 "libtcmalloc-minimal4", {}),
}
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")


def library(name: str) -> Path | None:
    """The allocator's shared library: ``name`` itself when it is a path to a file, else the
    first of its file names in the active environment's lib/ or the system's library folders."""
    if "/" in name:
        return Path(name) if Path(name).is_file() else None
    files, _package, _env = ALLOCATORS[name]
    dirs = [str(Path(os.environ["CONDA_PREFIX"]) / "lib")] if os.environ.get("CONDA_PREFIX") else []
    for folder in [*dirs, *LIB_DIRS]:
        for f in files:
            if (Path(folder) / f).is_file():
                return Path(folder) / f
    return None


def missing_message(name: str) -> str:
    package = ALLOCATORS[name][1] if name in ALLOCATORS else None
    how = f"install it (Debian/Ubuntu: apt-get install {package})" if package else "check the path"
    return (f"backend_options.allocator {name}: library not found ({', '.join(ALLOCATORS.get(name, ((name,),))[0])} "
            f"in {', '.join(LIB_DIRS)}); running with the system allocator; {how}, or set allocator: null")


def preloaded(lib: Path) -> bool:
    return any(Path(p).name == lib.name for p in os.environ.get("LD_PRELOAD", "").replace(":", " ").split())


def in_effect(name: str | None) -> str:
    """For the run's record: what allocator this process really runs with."""
    if not name:
        return "system malloc (allocator: null)"
    lib = library(name)
    if lib is None:
        return f"system malloc ({name} requested, library not found)"
    if preloaded(lib):
        return f"{name} ({lib}, LD_PRELOAD)"
    return f"system malloc ({name} found at {lib} but not preloaded)"


def loaded_library(maps: Path = Path("/proc/self/maps")) -> str | None:
    """The jemalloc / tcmalloc library mapped into this process, if any: proof that a preload
    reached it (an instance process checks this for itself; it inherits ``LD_PRELOAD``)."""
    try:
        text = maps.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        path = line.rsplit(" ", 1)[-1]
        if "/libjemalloc" in path or "/libtcmalloc" in path:
            return path
    return None
