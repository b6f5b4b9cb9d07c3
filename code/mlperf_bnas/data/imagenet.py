"""ImageNet 2012 validation set in MLPerf form: ``val_map.txt`` + JPEGs in one folder.

``val_map.txt`` lines are ``ILSVRC2012_val_00000001.JPEG 65`` (file name, class id
0..999 in torchvision order); line i is QSL index i. The MLPerf calibration list
(``cal_image_list_option_1.txt``, 500 names of validation images) picks the
images NNCF uses for range initialisation.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlperf_bnas.data import DATASETS
from mlperf_bnas.data.cache import CachedSamples, SourceItem
from mlperf_bnas.data.dataset_base import (
    SYNTHETIC_STAMP, CalibrationSet, Dataset, DatasetOptions, Labeller, building_synthetic,
)
from mlperf_bnas.data.synthetic import synthetic_image
from mlperf_bnas.errors import UserError

log = logging.getLogger(__name__)

VAL_MAP = "val_map.txt"
CALIBRATION_LIST = "cal_image_list_option_1.txt"


def read_val_map(path: Path) -> list[tuple[str, int]]:
    """``[(file name, label), ...]`` in file order; ``UserError`` naming the line on bad input."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: not found; an ImageNet folder needs val_map.txt beside the JPEGs "
                        "(see code/resnet50-openvino/README.md)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc}); check the file and its permissions") from None
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != 2 or not cols[1].lstrip("-").isdigit():
            raise UserError(f"{path}:{lineno}: expected '<image file> <class id>', got {line.strip()!r}")
        entries.append((cols[0], int(cols[1])))
    if not entries:
        raise UserError(f"{path}: no entries; expected lines like 'ILSVRC2012_val_00000001.JPEG 65'")
    return entries


def read_name_list(path: Path) -> list[str]:
    try:
        return [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read calibration list ({exc}); run "
                        "code/resnet50-openvino/download_imagenet_calibration_list.sh") from None


@DATASETS.register("imagenet")
class ImageNet(Dataset):
    name = "imagenet"

    @dataclass(frozen=True)
    class Options(DatasetOptions):
        #: Calibration list; default: <data>/cal_image_list_option_1.txt, then the downloaded copy.
        calibration_list: str | None = None

    def __init__(self, root: Path, options: "ImageNet.Options", entries: list[tuple[str, int]]):
        super().__init__(root, options)
        self.entries = entries

    @classmethod
    def open(cls, root: Path, options: "ImageNet.Options") -> "ImageNet":
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"{root}: ImageNet folder not found; set DATA_DIR to the folder holding "
                            "val_map.txt and the validation JPEGs (or unset it for synthetic data)")
        if not os.access(root, os.R_OK | os.X_OK):
            raise UserError(f"{root}: ImageNet folder is not readable; fix its permissions")
        entries = read_val_map(root / VAL_MAP)
        if options.count is not None:
            entries = entries[:options.count]
        missing = [name for name, _ in entries if not (root / name).is_file()]
        if missing:
            raise UserError(f"{root / VAL_MAP}: {len(missing)} listed image(s) not found in {root} "
                            f"(first: {missing[0]}); restore them or remove their lines")
        bad = [label for _, label in entries if not 0 <= label < 1000]
        if bad:
            raise UserError(f"{root / VAL_MAP}: class id {bad[0]} out of range 0..999")
        return cls(root, options, entries)

    def items(self) -> list[SourceItem]:
        return [SourceItem(name, self.root / name) for name, _ in self.entries]

    def ground_truth(self) -> np.ndarray:
        """Class id per QSL index."""
        return np.array([label for _, label in self.entries], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.entries)

    def calibration_indices(self, calibration_list: Path | None, list_name: str = CALIBRATION_LIST) -> list[int]:
        if calibration_list is None:
            raise UserError(f"no ImageNet calibration list found (looked for {self.root / list_name}); "
                            "run code/resnet50-openvino/download_imagenet_calibration_list.sh or set "
                            "dataset_options.calibration_list")
        names = read_name_list(Path(calibration_list))
        position = {name: i for i, (name, _) in enumerate(self.entries)}
        found = [position[n] for n in names if n in position]
        if not found:
            raise UserError(f"{calibration_list}: none of its {len(names)} images are in {self.root / VAL_MAP}; "
                            "check that the list and the dataset belong together")
        if len(found) < len(names):
            log.warning("%s: %d of %d calibration images are not in this dataset (count=%s); using %d",
                        calibration_list, len(names) - len(found), len(names), self.options.count, len(found))
        return found

    def calibration_set(self, cache: CachedSamples, count: int, list_dir: Path | None,
                        progress: bool = True, list_name: str | None = None) -> CalibrationSet:
        """MLPerf's calibration list names validation images: they are taken from the validation cache."""
        name = list_name or CALIBRATION_LIST
        calibration_list = self.default_calibration_list(list_dir, name)
        indices = self.calibration_indices(calibration_list, name)[:count]
        return CalibrationSet(cache.load(indices), [cache.names[i] for i in indices], str(calibration_list))

    def default_calibration_list(self, fallback_dir: Path | None, name: str = CALIBRATION_LIST) -> Path | None:
        """``dataset_options.calibration_list``, else the list called ``name`` (the model's,
        ``ModelEntry.calibration_list``) in the dataset folder, then among the downloaded lists;
        synthetic data calibrates on the list of all its images it wrote itself."""
        if self.options.calibration_list:
            path = Path(self.options.calibration_list)
            if not path.is_file():
                raise UserError(f"{path}: calibration list not found (dataset_options.calibration_list); "
                                "run download_imagenet_calibration_list.sh or fix the path")
            return path
        own = self.root / CALIBRATION_LIST if (self.root / SYNTHETIC_STAMP).is_file() else None
        for candidate in (self.root / name, (fallback_dir / name) if fallback_dir else None, own):
            if candidate is not None and candidate.is_file():
                return candidate
        return None

    # -- synthetic stand-in ------------------------------------------------------
    @classmethod
    def synthetic_stamp(cls, options: "ImageNet.Options", stamp: dict[str, Any]) -> dict[str, Any]:
        return {"generator": "mlperf_bnas.data.synthetic/1", "count": options.synthetic_count,
                "seed": options.synthetic_seed, "labeller": stamp}

    @classmethod
    def make_synthetic(cls, root: Path, options: "ImageNet.Options", labeller: Labeller,
                       stamp: dict[str, Any]) -> None:
        """JPEGs + ``val_map.txt`` (labels from ``labeller``) + a calibration list, written atomically."""
        with building_synthetic(root, cls.synthetic_stamp(options, stamp)) as tmp:
            names = [f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(options.synthetic_count)]
            paths = []
            for i, name in enumerate(names):
                path = tmp / name
                synthetic_image(options.synthetic_seed, i).save(path, "JPEG", quality=90)
                paths.append(path)
            labels = [int(v) for v in labeller(paths)]
            if len(labels) != len(names):
                raise RuntimeError(f"labeller returned {len(labels)} labels for {len(names)} images")
            (tmp / VAL_MAP).write_text("".join(f"{n} {lab}\n" for n, lab in zip(names, labels)))
            # There is no separate calibration split for synthetic data: calibrate on every image.
            (tmp / CALIBRATION_LIST).write_text("".join(f"{n}\n" for n in names))
        distinct = len(set(labels))
        log.info("synthetic ImageNet: %d images, %d distinct labels, in %s", len(names), distinct, root)
