"""The dataset contract every entry of ``DATASETS`` implements.

A dataset is a folder in its official on-disk form (ImageNet: ``val_map.txt`` +
JPEGs; OpenImages: COCO-style annotations + images). ``open`` checks it and
fails with a one-line ``UserError`` naming what is wrong; ``items`` lists the
source images in QSL order; ``ground_truth`` is what the accuracy script needs;
``preprocess_to_cache`` turns the images into a ``CachedSamples`` (the QSL's
``SampleSource``) keyed by a ``PreprocessSpec``; ``make_synthetic`` writes a
deterministic stand-in in the same on-disk form, labelled by a model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

from mlperf_bnas.data.cache import CachedSamples, SourceItem, build_cache
from mlperf_bnas.data.spec import PreprocessSpec

#: labeller(image paths) -> the dataset's ground truth for them (ImageNet: one class id per image).
Labeller = Callable[[Sequence[Path]], Any]


class Dataset(ABC):
    #: Registry name, also the cache sub-folder name.
    name: ClassVar[str]
    #: Frozen dataclass of ``dataset_options`` (checked with ``config.check_options``).
    Options: ClassVar[type]

    def __init__(self, root: Path, options: Any):
        self.root = Path(root)
        self.options = options

    @classmethod
    @abstractmethod
    def open(cls, root: Path, options: Any) -> "Dataset":
        """Check ``root`` and read its index; ``UserError`` on anything missing or malformed."""

    @abstractmethod
    def items(self) -> list[SourceItem]:
        """Source images in QSL order (QSL index i is ``items()[i]``)."""

    @abstractmethod
    def ground_truth(self) -> Any:
        """What the accuracy script compares responses with."""

    @abstractmethod
    def calibration_indices(self, calibration_list: Path | None) -> list[int]:
        """QSL indices of the calibration images (from the official list when given)."""

    @classmethod
    @abstractmethod
    def make_synthetic(cls, root: Path, options: Any, labeller: Labeller, stamp: dict[str, Any]) -> None:
        """Write a deterministic synthetic dataset at ``root`` (atomically), labelled by ``labeller``.

        ``stamp`` identifies the labeller (e.g. the weights' sha256); it is stored
        with the data so a different model regenerates the labels.
        """

    @classmethod
    def synthetic_is_current(cls, root: Path, options: Any, stamp: dict[str, Any]) -> bool:
        """True when ``root`` holds a synthetic set made with these options and this labeller."""
        return False

    def preprocess_to_cache(self, spec: PreprocessSpec, cache_root: Path, workers: int | None = None,
                            progress: bool = True) -> CachedSamples:
        return build_cache(self.name, self.items(), spec, cache_root, workers=workers, progress=progress)

    def __len__(self) -> int:
        return len(self.items())
