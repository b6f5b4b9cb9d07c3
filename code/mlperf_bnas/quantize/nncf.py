"""The only module that imports ``nncf``: post-training INT8 quantization.

Callers hand in a model object of the right framework plus calibration inputs and
a ``QuantizationConfig``; they get the quantized model back and a record of what
NNCF was asked to do (for ``quantization.json``). Sections: OpenVINO models
(``quantize_openvino``), then PyTorch FX / pt2e models (``quantize_torch_fx``).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import nncf
import numpy as np

from mlperf_bnas.quantize.config import QuantizationConfig

log = logging.getLogger(__name__)

NNCF_VERSION = nncf.__version__


def _nncf_arguments(config: QuantizationConfig) -> dict[str, Any]:
    """``QuantizationConfig.to_nncf_kwargs`` with names turned into NNCF's enums."""
    kwargs = config.to_nncf_kwargs()
    kwargs["preset"] = {"performance": nncf.QuantizationPreset.PERFORMANCE,
                        "mixed": nncf.QuantizationPreset.MIXED}[kwargs["preset"]]
    kwargs["target_device"] = nncf.TargetDevice[kwargs["target_device"]]
    if "model_type" in kwargs:
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if "ignored_names" in kwargs:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=kwargs.pop("ignored_names"))
    return kwargs


# ---------------------------------------------------------------------------
# OpenVINO models
# ---------------------------------------------------------------------------
def quantize_openvino(model: Any, calibration_inputs: Sequence[np.ndarray],
                      config: QuantizationConfig) -> tuple[Any, dict[str, Any]]:
    """INT8-quantize an ``openvino.Model`` with NNCF on ``calibration_inputs``.

    ``calibration_inputs`` are the model's input tensors, one array per NNCF
    calibration step (leading batch axis). Returns ``(quantized model, record)``.
    """
    if not calibration_inputs:
        raise ValueError("quantize_openvino needs at least one calibration input")
    samples = sum(len(a) for a in calibration_inputs)
    kwargs = _nncf_arguments(config)
    # NNCF counts subset_size in dataset items; one item is one calibration batch here.
    kwargs["subset_size"] = max(1, min(config.subset_size, samples) // max(1, len(calibration_inputs[0])))
    log.info("NNCF %s: quantizing on %d calibration sample(s), preset=%s", NNCF_VERSION, samples, config.preset)
    quantized = nncf.quantize(model, nncf.Dataset(list(calibration_inputs)), **kwargs)
    record = {"tool": "nncf", "nncf_version": NNCF_VERSION, "api": "nncf.quantize (OpenVINO backend)",
              "config": config.to_dict(), "calibration_samples_used": min(samples, config.subset_size)}
    return quantized, record


# ---------------------------------------------------------------------------
# PyTorch FX / pt2e models (RetinaNet engineer's section)
# ---------------------------------------------------------------------------
