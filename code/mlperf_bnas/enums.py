"""The words every command, file and folder agrees on: LoadGen scenarios and modes, model precisions.

Each is a ``StrEnum`` whose values are the exact strings LoadGen, ``user.conf``, the
results layout and the command line use (``Scenario.OFFLINE == "Offline"``), so a member
goes wherever such a string goes. Every ``choices=``, folder check and config check reads
its list from here: adding a scenario is one line in ``Scenario`` (its SUT, LoadGen
settings and checker rules are then what the new scenario itself needs).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from mlperf_bnas.errors import UserError

E = TypeVar("E", bound=StrEnum)


class Scenario(StrEnum):
    OFFLINE = "Offline"
    SERVER = "Server"
    SINGLE_STREAM = "SingleStream"
    MULTI_STREAM = "MultiStream"


class Mode(StrEnum):
    PERFORMANCE = "performance"
    ACCURACY = "accuracy"


class Precision(StrEnum):
    INT8 = "int8"
    FP32 = "fp32"
    #: The FP32 model with its float layers in bf16 (OpenVINO; pays only on AMX-BF16 CPUs): built
    #: on request, not by ``build --precision all`` (``BUILT_BY_DEFAULT``).
    BF16 = "bf16"


#: What ``mlperf-bnas build`` (``--precision all``) builds.
BUILT_BY_DEFAULT = (Precision.INT8, Precision.FP32)


def values(kind: type[StrEnum]) -> list[str]:
    """The members' strings in declaration order (argparse ``choices=``, error messages)."""
    return [member.value for member in kind]


def parse(kind: type[E], value: str, where: str = "") -> E:
    """``value`` as a member of ``kind``; anything else is a ``UserError`` listing the valid words."""
    try:
        return kind(value)
    except ValueError:
        what = kind.__name__.lower()
        raise UserError(f"{where + ': ' if where else ''}unknown {what} {value!r}; "
                        f"valid: {', '.join(values(kind))}") from None
