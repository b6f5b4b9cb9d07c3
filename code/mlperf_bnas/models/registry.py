"""The models registry: a model entry says how to build a network and what it eats.

An entry is a class constructed from its validated ``model_options``; it gives
``build(checkpoint) -> torch.nn.Module`` (FP32, eval mode), the
``PreprocessSpec`` of the cached samples (``preprocess_spec(checkpoint)``),
``to_torch_input(samples)`` (cached samples -> the module's float input),
``example_input(batch)`` and the name of its LoadGen postprocessor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlperf_bnas.config import check_options
from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.registry import Registry


class ModelEntry(ABC):
    #: Frozen dataclass of ``model_options``.
    Options: ClassVar[type]
    #: Name in ``loadgen.postprocess.POSTPROCESSORS`` turning raw outputs into LoadGen responses.
    postprocess: ClassVar[str]
    #: LoadGen performance sample count of the benchmark (samples held in RAM during a performance run).
    performance_sample_count: ClassVar[int] = 1024
    #: The most bytes one sample's LoadGen response takes (sizes the accuracy log for the
    #: free-space check before a run).
    max_response_bytes: ClassVar[int] = 4

    def __init__(self, options: Any):
        self.options = options

    @abstractmethod
    def build(self, checkpoint: Path | None):
        """The FP32 ``torch.nn.Module`` in eval mode: from ``checkpoint`` or seeded weights."""

    @abstractmethod
    def preprocess_spec(self, checkpoint: Path | None = None) -> PreprocessSpec:
        """What one cached sample is for this model (a NAS sub-network may carry its own)."""

    @abstractmethod
    def to_torch_input(self, samples: np.ndarray, spec: PreprocessSpec):
        """Cached samples (as ``spec`` stores them) -> the float tensor ``build()`` expects."""

    def example_input(self, batch: int = 1, checkpoint: Path | None = None):
        spec = self.preprocess_spec(checkpoint)
        samples = np.zeros((batch, *spec.sample_shape), dtype=np.dtype(spec.dtype))
        return self.to_torch_input(samples, spec)


MODELS: Registry[type[ModelEntry]] = Registry("model")
MODELS.register_lazy("resnet50", "mlperf_bnas.models.resnet50")
MODELS.register_lazy("retinanet", "mlperf_bnas.models.retinanet")


def create_model(name: str, options: dict[str, Any], where: str = "model_options",
                 sources: dict[str, str] | None = None) -> ModelEntry:
    cls = MODELS.get(name)
    return cls(check_options("model_options", options, cls.Options, where, sources))
