"""The dataset contract every entry of ``DATASETS`` implements.

A dataset is a folder in its official on-disk form (ImageNet: ``val_map.txt`` +
JPEGs; OpenImages: COCO-style annotations + images). ``open`` checks it and
fails with a one-line ``UserError`` naming what is wrong; ``items`` lists the
source images in QSL order; ``ground_truth`` is what the accuracy script needs;
``preprocess_to_cache`` turns the images into a ``CachedSamples`` (the QSL's
``SampleSource``) keyed by a ``PreprocessSpec``; ``calibration_set`` chooses the INT8
calibration samples (every backend's build takes them from here); ``make_synthetic``
writes a deterministic stand-in in the same on-disk form, labelled by a model.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Sequence

import numpy as np

from mlperf_bnas.data.cache import CachedSamples, SourceItem, build_cache
from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import staged_dir

#: Written into every synthetic dataset: what made it (generator, options, labelling model).
SYNTHETIC_STAMP = "synthetic.json"

#: labeller(image paths) -> the dataset's ground truth for them (ImageNet: one class id per image).
Labeller = Callable[[Sequence[Path]], Any]


@dataclass(frozen=True)
class DatasetOptions:
    """Options every dataset has; a dataset's own ``Options`` subclasses this and adds its fields."""

    #: Use only the first N entries (quick runs; a submission needs the whole set).
    count: int | None = None
    #: Synthetic stand-in (used when no data folder is given).
    synthetic_count: int = 64
    synthetic_seed: int = 0
    #: Preprocessing worker processes (default: all cores).
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.count is not None and self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        if self.synthetic_count < 1:
            raise ValueError(f"synthetic_count must be >= 1, got {self.synthetic_count}")


@dataclass(frozen=True)
class CalibrationSet:
    """The samples an INT8 build calibrates on, chosen by the dataset from its calibration set."""

    samples: np.ndarray     # preprocessed exactly as the dataset's cache stores them
    names: list[str]        # their source image names, in order
    source: str             # where the set came from (the official list, a separate split), for the record

    def record(self) -> dict[str, Any]:
        """The build record's ``calibration`` section."""
        return {"count": len(self.names), "names": list(self.names), "source": self.source}


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
    def calibration_set(self, cache: CachedSamples, count: int, list_dir: Path | None,
                        progress: bool = True) -> CalibrationSet:
        """The first ``count`` images of the dataset's calibration set, preprocessed as ``cache``.

        ``cache`` is this dataset's own preprocessed cache: a dataset whose calibration
        images are among its samples (ImageNet's list names validation images) takes them
        from it; one with a separate calibration split (OpenImages) caches that split
        beside it. ``list_dir`` is where downloaded calibration lists are kept.
        """

    @classmethod
    @abstractmethod
    def make_synthetic(cls, root: Path, options: Any, labeller: Labeller, stamp: dict[str, Any]) -> None:
        """Write a deterministic synthetic dataset at ``root`` (atomically), labelled by ``labeller``.

        ``stamp`` identifies the labeller (e.g. the weights' sha256); it is stored
        with the data so a different model regenerates the labels.
        """

    @classmethod
    def synthetic_stamp(cls, options: Any, stamp: dict[str, Any]) -> dict[str, Any]:
        """What identifies a synthetic set: generator version, options and the labeller's ``stamp``."""
        raise NotImplementedError

    @classmethod
    def synthetic_is_current(cls, root: Path, options: Any, stamp: dict[str, Any]) -> bool:
        """True when ``root`` holds a synthetic set made with these options and this labeller."""
        try:
            return json.loads((Path(root) / SYNTHETIC_STAMP).read_text()) == cls.synthetic_stamp(options, stamp)
        except (OSError, json.JSONDecodeError):
            return False

    def preprocess_to_cache(self, spec: PreprocessSpec, cache_root: Path, workers: int | None = None,
                            progress: bool = True) -> CachedSamples:
        return build_cache(self.name, self.items(), spec, cache_root, workers=workers, progress=progress)

    def __len__(self) -> int:
        return len(self.items())


@contextmanager
def building_synthetic(root: Path, stamp: dict[str, Any]) -> Iterator[Path]:
    """A private folder to write a synthetic dataset into, swapped in at ``root`` when the block succeeds.

    An existing folder that is not a synthetic set of ours is never replaced; a failure
    leaves whatever was at ``root`` untouched.
    """
    root = Path(root)
    if root.exists() and not (root / SYNTHETIC_STAMP).is_file():
        raise UserError(f"{root}: exists but is not a synthetic dataset made by mlperf-bnas; "
                        "move it away or choose another --output-dir")
    with staged_dir(root) as tmp:
        yield tmp
        (tmp / SYNTHETIC_STAMP).write_text(json.dumps(stamp, indent=1))
