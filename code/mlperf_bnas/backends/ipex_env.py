"""Where the IPEX environment is, and whether IPEX can run here (no torch import).

Intel Extension for PyTorch 2.8, its last release, needs torch 2.8; the main
environment has a newer torch. So ``engine: ipex`` runs in an environment of its
own, made by ``./prepare_env.sh --ipex`` beside the main one. This module finds
its interpreter, checks that this CPU and that environment can run IPEX, and
imports IPEX with its import-time notes kept out of the user's face. Everything
fails with one line naming the fix (``UserError``), never with IPEX's own
``sys.exit`` or a traceback.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from mlperf_bnas.backends.cpu import cpu_info, parse_cpuinfo
from mlperf_bnas.errors import UserError
from mlperf_bnas.paths import REPO

log = logging.getLogger(__name__)

#: The one-line fix every "no IPEX environment" message ends with.
HOW_TO_CREATE = "create it with ./prepare_env.sh --ipex (about 7 GB; see docs/ipex.md)"
#: Environment folders ``./prepare_env.sh --ipex`` makes, in the order they are looked for.
ENV_DIRS = (".conda-env-ipex", ".venv-ipex")
#: An interpreter of the user's own IPEX environment (overrides ENV_DIRS).
PYTHON_VARIABLE = "MLPERF_BNAS_IPEX_PYTHON"
#: The package ``mlperf-bnas`` runs is the one it was started from (see commands/engine_env.py).
CODE_DIR = REPO / "code"
#: IPEX's minimum: it calls sys.exit at import on a CPU without it (cpu/utils/_cpu_isa.py).
REQUIRED_FLAGS = ("avx2",)
#: Flags that decide which oneDNN kernels IPEX's INT8/BF16 paths get (recorded with a build).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")

#: Warnings IPEX and TorchScript always give on this path (docs/ipex.md lists them): shown with -v.
EXPECTED_WARNINGS = (
    r"JIT pass will be deprecated",                    # IPEX 2.8: its TorchScript fusion path is frozen
    r"Converting a tensor to a Python (number|boolean)",  # TracerWarning from IPEX's quantization hooks
)


def importable() -> bool:
    """Whether this interpreter has IPEX installed (checked without importing it)."""
    return importlib.util.find_spec("intel_extension_for_pytorch") is not None


def find_python() -> Path:
    """The IPEX environment's interpreter: ``$MLPERF_BNAS_IPEX_PYTHON``, else ``.conda-env-ipex``/``.venv-ipex``."""
    given = os.environ.get(PYTHON_VARIABLE)
    if given:
        path = Path(given)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise UserError(f"{PYTHON_VARIABLE}={given}: no such interpreter; point it at the IPEX "
                            f"environment's bin/python or unset it and {HOW_TO_CREATE}")
        return path
    for name in ENV_DIRS:
        python = REPO / name / "bin" / "python"
        if python.is_file() and os.access(python, os.X_OK):
            return python
    raise UserError(f"backend_options.engine=ipex needs the IPEX environment ({REPO / ENV_DIRS[1]} not found); "
                    + HOW_TO_CREATE)


def check_cpu(cpuinfo: str | None = None) -> list[str]:
    """Refuse a CPU IPEX cannot run on; return the ISA flags that matter for its kernels.

    Without ``/proc/cpuinfo`` (not Linux) nothing is refused here: IPEX's own
    check still runs at import and is turned into a one-line error by ``import_ipex``.
    """
    cpu = cpu_info() if cpuinfo is None else parse_cpuinfo(cpuinfo)
    missing = [f for f in REQUIRED_FLAGS if cpu.flags and f not in cpu.flags]
    if missing:
        raise UserError(f"intel-extension-for-pytorch needs the {', '.join(missing).upper()} instruction set, which this "
                        f"CPU ({cpu.model}) does not have; use backend_options.engine=inductor (the default)")
    return [f for f in ISA_FLAGS if f in cpu.flags]


def versions() -> dict[str, str | None]:
    """Installed versions of the packages a TorchScript build depends on (package metadata, no import)."""
    out: dict[str, str | None] = {}
    for name in ("torch", "torchvision", "intel-extension-for-pytorch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def check_versions() -> dict[str, str | None]:
    """IPEX x.y needs torch x.y; IPEX itself then fails with ``os.exit`` (an AttributeError)."""
    found = versions()
    ipex, torch = found["intel-extension-for-pytorch"], found["torch"]
    if ipex is None:
        raise UserError(f"{sys.executable}: intel-extension-for-pytorch is not installed in this environment; "
                        + HOW_TO_CREATE)
    if torch is None or torch.split("+")[0].split(".")[:2] != ipex.split("+")[0].split(".")[:2]:
        raise UserError(f"{sys.executable}: intel-extension-for-pytorch {ipex} needs torch "
                        f"{'.'.join(ipex.split('.')[:2])}.*, this environment has torch {torch}; "
                        "recreate it with ./prepare_env.sh --ipex (pins: code/requirements-ipex.txt)")
    return found


@contextlib.contextmanager
def _stderr_to_log(what: str) -> Iterator[None]:
    """Send what C++ and Python write to file descriptor 2 meanwhile to the debug log.

    IPEX's import prints kernel-override notes from C++ and a "No CUDA runtime"
    note through its own logger (docs/ipex.md); they say nothing about the run.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace").strip()
            if text:
                log.debug("%s wrote on stderr:\n%s", what, text)


def quiet_expected_warnings() -> None:
    """Hide the warnings every IPEX TorchScript build and run gives (unless -v: debug logging)."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return
    for pattern in EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=f".*{pattern}")


def import_ipex() -> Any:
    """``intel_extension_for_pytorch``, after the CPU and version checks, with its import notes hidden."""
    check_cpu()
    check_versions()
    quiet_expected_warnings()
    # Importing IPEX imports Inductor, which would start a pool of compile-worker processes
    # that a TorchScript engine never uses (two extra Python processes per run).
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    try:
        with _stderr_to_log("import intel_extension_for_pytorch"):
            import intel_extension_for_pytorch as ipex
    except SystemExit as exc:        # IPEX exits on a CPU it does not support
        raise UserError(f"intel-extension-for-pytorch refused this CPU ({cpu_info().model}): {exc}; "
                        "use backend_options.engine=inductor (the default)") from None
    except (ImportError, OSError, AttributeError) as exc:
        raise UserError(f"{sys.executable}: cannot import intel-extension-for-pytorch ({type(exc).__name__}: "
                        f"{str(exc)[:200]}); recreate the environment with ./prepare_env.sh --ipex") from None
    return ipex
