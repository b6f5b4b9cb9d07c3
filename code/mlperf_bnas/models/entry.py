"""The models registry: a model entry says how to build a network and what it eats.

An entry is a class constructed from its validated ``model_options``; it gives
``build(checkpoint) -> torch.nn.Module`` (FP32, eval mode), the
``PreprocessSpec`` of the cached samples (``preprocess_spec()``),
``to_torch_input(samples)`` (cached samples -> the module's float input),
``example_input(batch)``, how to label synthetic data (``make_labeller``) and the
name of its LoadGen postprocessor. A model that accepts exported BootstrapNAS
sub-networks as its checkpoint names their base (``subnet_base``) and turns a
sub-network's recorded preprocessing into its own cache form (``subnet_preprocess_spec``);
the sub-network itself is rebuilt above this layer (``pipeline.build_module``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from mlperf_bnas.config import check_options
from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.errors import UserError
from mlperf_bnas.registry import Registry


class ModelEntry(ABC):
    #: Frozen dataclass of ``model_options``.
    Options: ClassVar[type]
    #: Name in ``loadgen.postprocess.POSTPROCESSORS`` turning raw outputs into LoadGen responses.
    postprocess: ClassVar[str]
    #: Base-model name (``nas.export.BASE_MODELS``) of the NAS sub-networks this model takes as
    #: its checkpoint; None: it takes none.
    subnet_base: ClassVar[str | None] = None
    #: The most bytes one sample's LoadGen response takes (sizes the accuracy log for the
    #: free-space check before a run).
    max_response_bytes: ClassVar[int] = 4

    def __init__(self, options: Any):
        self.options = options

    @abstractmethod
    def build(self, checkpoint: Path | None):
        """The FP32 ``torch.nn.Module`` in eval mode: from ``checkpoint`` or seeded weights."""

    @abstractmethod
    def preprocess_spec(self) -> PreprocessSpec:
        """What one cached sample is for this model."""

    def subnet_preprocess_spec(self, preprocess: dict[str, Any]) -> PreprocessSpec:
        """A sub-network's own preprocessing (as its export recorded it), in this model's cache form."""
        raise UserError(f"model {type(self).__name__} takes no NAS sub-network as its checkpoint")

    @abstractmethod
    def to_torch_input(self, samples: np.ndarray, spec: PreprocessSpec):
        """Cached samples (as ``spec`` stores them) -> the float tensor ``build()`` expects."""

    def example_input(self, batch: int = 1):
        spec = self.preprocess_spec()
        samples = np.zeros((batch, *spec.sample_shape), dtype=np.dtype(spec.dtype))
        return self.to_torch_input(samples, spec)

    def make_labeller(self, module, spec: PreprocessSpec, batch: int = 16) -> Callable[[Sequence[Path]], list]:
        """labeller(image paths) -> the synthetic ground truth: here the FP32 ``module``'s top-1
        class per image (classifiers); detectors label with their own detections."""
        import torch
        from PIL import Image

        def label(image_paths: Sequence[Path]) -> list[int]:
            labels: list[int] = []
            for start in range(0, len(image_paths), batch):
                samples = []
                for p in image_paths[start:start + batch]:
                    with Image.open(p) as img:
                        samples.append(spec.apply(img))
                with torch.no_grad():
                    out = module(self.to_torch_input(np.stack(samples), spec))
                labels.extend(int(v) for v in out.argmax(1))
            return labels

        return label


MODELS: Registry[type[ModelEntry]] = Registry("model")
MODELS.register_lazy("resnet50", "mlperf_bnas.models.resnet50")
MODELS.register_lazy("retinanet", "mlperf_bnas.models.retinanet")


def create_model(name: str, options: dict[str, Any], where: str = "model_options",
                 sources: dict[str, str] | None = None) -> ModelEntry:
    cls = MODELS.get(name)
    return cls(check_options("model_options", options, cls.Options, where, sources))
