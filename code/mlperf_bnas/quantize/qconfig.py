"""``QuantizationConfig``: what INT8 post-training quantization does, validated and recorded.

Built from ``config.yaml``'s ``quantization`` section (unknown keys are errors),
converted to NNCF arguments by ``to_nncf_kwargs`` (names only: ``quantize/nncf.py``
maps them to NNCF's enums, so this module never imports nncf), and saved next to
the built model as part of ``quantization.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mlperf_bnas.config import check_options

PRESETS = ("performance", "mixed")
MODEL_TYPES = (None, "transformer")
TARGET_DEVICES = ("ANY", "CPU", "GPU", "NPU", "CPU_SPR")
#: oneDNN's x86 INT8 grouped-convolution kernels take a multiple of this many input and output
#: channels per group (``jit_uni_int8:avx2`` blocks weights as ``aBCde4b4c``); any other count
#: runs its reference kernel (``ref:any``), 50-200x slower per MAC (measured with ONEDNN_VERBOSE,
#: docs/bootstrapnas.md "RetinaNet sub-network speed"). Depthwise convolutions are not affected.
INT8_GROUP_CHANNEL_MULTIPLE = 4


@dataclass(frozen=True)
class QuantizationConfig:
    #: NNCF QuantizationPreset: "performance" (symmetric) or "mixed" (asymmetric activations).
    preset: str = "performance"
    #: Calibration samples used for range initialisation (capped by the calibration list's length).
    subset_size: int = 300
    #: Faster bias correction (NNCF's default); False runs the slower, more exact BiasCorrection.
    fast_bias_correction: bool = True
    model_type: str | None = None
    target_device: str = "CPU"
    #: Node names NNCF must leave in floating point.
    ignored_names: tuple[str, ...] = ()
    #: Calibration batch size used when feeding NNCF.
    calibration_batch_size: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "ignored_names", tuple(self.ignored_names or ()))
        problems = []
        if self.preset not in PRESETS:
            problems.append(f"preset {self.preset!r} not one of {', '.join(PRESETS)}")
        if not isinstance(self.subset_size, int) or self.subset_size < 1:
            problems.append(f"subset_size must be a positive integer, got {self.subset_size!r}")
        if not isinstance(self.fast_bias_correction, bool):
            problems.append(f"fast_bias_correction must be true or false, got {self.fast_bias_correction!r}")
        if self.model_type not in MODEL_TYPES:
            problems.append(f"model_type {self.model_type!r} not one of {MODEL_TYPES}")
        if self.target_device not in TARGET_DEVICES:
            problems.append(f"target_device {self.target_device!r} not one of {', '.join(TARGET_DEVICES)}")
        if not isinstance(self.calibration_batch_size, int) or self.calibration_batch_size < 1:
            problems.append(f"calibration_batch_size must be a positive integer, got {self.calibration_batch_size!r}")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_options(cls, section: dict[str, Any], where: str = "quantization",
                     sources: dict[str, str] | None = None) -> "QuantizationConfig":
        return check_options("quantization", section, cls, where, sources)

    def to_nncf_kwargs(self) -> dict[str, Any]:
        """Arguments of ``nncf.quantize`` by name (enum values as strings; nncf.py converts them)."""
        kwargs: dict[str, Any] = {"preset": self.preset, "subset_size": self.subset_size,
                                  "fast_bias_correction": self.fast_bias_correction,
                                  "target_device": self.target_device}
        if self.model_type is not None:
            kwargs["model_type"] = self.model_type
        if self.ignored_names:
            kwargs["ignored_names"] = list(self.ignored_names)
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ignored_names"] = list(self.ignored_names)
        return d
