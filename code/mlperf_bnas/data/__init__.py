"""Datasets (by name), preprocessing specs and the preprocessed-sample cache.

Entries register lazily: ``DATASETS.get("imagenet")`` imports ``data/imagenet.py``.
"""

from mlperf_bnas.data.dataset_base import CalibrationSet, Dataset, Labeller
from mlperf_bnas.data.cache import CachedSamples, SourceItem, build_cache
from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.registry import Registry

DATASETS: Registry[type[Dataset]] = Registry("dataset")
DATASETS.register_lazy("imagenet", "mlperf_bnas.data.imagenet")
DATASETS.register_lazy("openimages", "mlperf_bnas.data.openimages")

__all__ = ["DATASETS", "CachedSamples", "CalibrationSet", "Dataset", "Labeller", "PreprocessSpec", "SourceItem", "build_cache"]
