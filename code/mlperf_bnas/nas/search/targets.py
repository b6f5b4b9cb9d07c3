"""What the search needs per base model, asked of the model's descriptor (``models/``).

A super-network checkpoint names its base model (``extra["base_model"]`` as the trainer saves
it, or ``--model``) and the descriptor options it was built with (``extra["model_options"]``);
``search_target`` turns that ``MODELS`` entry into a ``SearchTarget``: the architecture the
checkpoint loads into, the search's data (``nas_search_data``), its accuracy measure
(``nas_accuracy``: top-1 or mAP), the preprocessing an exported sub-network records, and the
runtime its latency is measured on (``nas_latency_runtime``, ``nas_benchmark``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch


@dataclass
class SearchTarget:
    base_model: str
    #: The model's descriptor (``models.ModelEntry``) with the super-network's options.
    entry: Any
    #: (N, C, H, W) the super-network was generated at.
    input_size: tuple[int, ...]
    #: What ``export.save_subnet`` stores as the sub-network's preprocessing.
    preprocess: dict[str, Any]
    #: data.spec.PreprocessSpec of the benchmark's cached samples (None: only the torch runtime).
    preprocess_spec: Any
    default_latency_runtime: str
    #: The options the descriptor was created with (recorded in exported sub-networks).
    model_options: dict[str, Any]
    #: What the super-network checkpoint recorded of its training (``extra``: dataset, teacher...).
    training: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one input sample."""
        return tuple(self.input_size[1:])

    @property
    def metric(self) -> str:
        return self.entry.nas_metric

    def loaders(self, dataset_path: Path | None, fraction: float, seed: int) -> tuple[Any, Any]:
        """(BN re-calibration batches, accuracy batches); ``seed``: the training run's data seed."""
        return self.entry.nas_search_data(dataset_path, fraction, seed, self.input_size, self.training)

    def accuracy(self, model: torch.nn.Module, loader) -> float:
        return self.entry.nas_accuracy(model, loader)

    def architecture_builder(self, state_dict: dict | None = None) -> Callable[[], torch.nn.Module]:
        """The base architecture (random weights) the super-network checkpoint is loaded into."""
        def build() -> torch.nn.Module:
            return self.entry.nas_architecture(self.input_size, state_dict)
        return build


def search_target(base_model: str, model_options: dict | None, input_size, where: str = "super-network",
                  training: dict | None = None) -> SearchTarget:
    from mlperf_bnas.models import create_model

    size = tuple(int(v) for v in input_size)
    entry = create_model(base_model, dict(model_options or {}), where=f"{where} (model_options)").at_input_size(size)
    return SearchTarget(base_model, entry, size, entry.nas_export_preprocess(size), entry.nas_latency_spec(size),
                        entry.nas_latency_runtime, dict(model_options or {}), dict(training or {}))
