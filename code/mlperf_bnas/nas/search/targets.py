"""What the search needs per base model: its architecture, data for accuracy, its preprocessing.

A super-network checkpoint names its base model (``extra["model"]`` as the trainer saves it,
or ``--model``); ``SEARCH_TARGETS`` maps that name to a ``SearchTarget``:

* ``digits_resnet`` (the embedded demo): scikit-learn's bundled digits, BN re-calibration on
  the training split, accuracy on the (seeded) validation split; latency in eager PyTorch;
* ``resnet50``: ImageNet validation images in their official layout (``--dataset_path`` with
  ``val_map.txt``), preprocessed as the benchmark does; the BN re-calibration images and the
  accuracy images are disjoint subsets. Latency is measured on OpenVINO INT8 through the
  benchmark's own build step (``backends.openvino.build_openvino_ir``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from mlperf_bnas.errors import UserError
from mlperf_bnas.registry import Registry


@dataclass
class SearchTarget:
    base_model: str
    #: (C, H, W) of one float input sample of the torch model.
    input_shape: tuple[int, int, int]
    #: What ``export.save_subnet`` stores as the sub-network's preprocessing.
    preprocess: dict[str, Any]
    #: data.spec.PreprocessSpec for OpenVINO latency (None: only the torch runtime).
    preprocess_spec: Any
    default_latency_runtime: str
    #: (dataset_path, test_fraction, data seed of the super-network's training) -> (bn_batches, val_loader)
    loaders: Callable[[Path | None, float, int], tuple[Any, Any]]


SEARCH_TARGETS: Registry[Callable[[], SearchTarget]] = Registry("search base model")


def _subset(n: int, fraction: float) -> int:
    return max(1, int(round(n * fraction)))


@SEARCH_TARGETS.register("digits_resnet")
def _digits() -> SearchTarget:
    from mlperf_bnas.nas import demo

    def loaders(dataset_path: Path | None, fraction: float, seed: int):
        # ``seed``: the training run's data seed, so the validation split is the one training never saw.
        if dataset_path is not None:
            raise UserError("--dataset_path: the digits demo uses scikit-learn's bundled digits; leave it unset")
        train, val = demo.digits_loaders(batch_size=64, seed=seed)
        x, y = val.dataset.tensors
        n = _subset(len(y), fraction)
        val_subset = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:n], y[:n]), batch_size=256)
        # Fixed BN batches (the training loader shuffles): the same sub-network always gets the same
        # statistics, so its accuracy is reproducible.
        tx, _ = train.dataset.tensors
        bn = [tx[i:i + 64] for i in range(0, len(tx), 64)]
        return bn, val_subset

    size = demo.DIGITS_SIZE
    return SearchTarget("digits_resnet", (3, size, size), dict(demo.DIGITS_PREPROCESS), None, "torch", loaders)


@SEARCH_TARGETS.register("resnet50")
def _resnet50() -> SearchTarget:
    from mlperf_bnas.models.resnet50 import ResNet50

    entry = ResNet50(ResNet50.Options())
    spec = entry.preprocess_spec()

    def loaders(dataset_path: Path | None, fraction: float, seed: int):
        import numpy as np

        from mlperf_bnas.data.imagenet import ImageNet

        if dataset_path is None:
            raise UserError("--dataset_path: a ResNet-50 search measures accuracy on ImageNet; pass the folder "
                            "holding val_map.txt and the validation JPEGs")
        dataset = ImageNet.open(Path(dataset_path), ImageNet.Options())
        items, labels = dataset.items(), np.asarray(dataset.ground_truth())
        order = np.random.default_rng(seed).permutation(len(items))
        n_val = _subset(len(items), fraction)
        val_idx, bn_idx = order[:n_val], order[n_val:] if n_val < len(items) else order[:0]
        if len(bn_idx) == 0:
            raise UserError("--test_fraction 1.0 leaves no ImageNet images for BN re-calibration; use a smaller "
                            "fraction (the rest re-calibrates BatchNorm)")
        return _ImageBatches(items, None, bn_idx, spec, entry), _ImageBatches(items, labels, val_idx, spec, entry)

    return SearchTarget("resnet50", (3, 224, 224), spec.to_dict(), spec, "openvino", loaders)


class _ImageBatches:
    """Preprocessed image batches (the benchmark's PreprocessSpec), read lazily and in order."""

    def __init__(self, items, labels, indices, spec, entry, batch_size: int = 32):
        self.items, self.labels, self.indices = items, labels, list(indices)
        self.spec, self.entry, self.batch_size = spec, entry, batch_size

    def __iter__(self):
        import numpy as np
        from PIL import Image

        for start in range(0, len(self.indices), self.batch_size):
            idx = self.indices[start:start + self.batch_size]
            samples = []
            for i in idx:
                with Image.open(self.items[i].path) as img:
                    samples.append(self.spec.apply(img.convert("RGB")))
            x = self.entry.to_torch_input(np.stack(samples), self.spec)
            if self.labels is None:
                yield x
            else:
                yield x, torch.as_tensor(self.labels[idx], dtype=torch.int64)


def model_builder(base_model: str, state_dict: dict) -> Callable[[], torch.nn.Module]:
    """The base architecture (random weights; class count from ``state_dict``) the super-network
    checkpoint is loaded into."""
    from mlperf_bnas.nas.export import build_base_model

    def build() -> torch.nn.Module:
        return build_base_model(base_model, state_dict)[0]
    return build
