"""OpenImages, MLPerf subset (264 classes): the layout MLPerf's download scripts produce.

```
<root>/annotations/openimages-mlperf.json              COCO-style: images, annotations, categories
<root>/validation/data/<image id>.jpg                  the 24781 validation images
<root>/annotations/openimages-calibration-mlperf.json  (optional) calibration set, train split
<root>/calibration/data/<image id>.jpg                 (optional) its 500 images
```

QSL index ``i`` is ``annotations["images"][i]`` -- the order MLPerf's
``accuracy-openimages.py`` assumes (it looks images up as ``images[qsl_idx]``).
Category ids are used as the model's labels directly (MLPerf's RetinaNet was
trained on ids 0..263; no inverse label map).

The synthetic stand-in (no ``DATA_DIR``) has the same layout; its images come
from ``data/synthetic.py`` and its boxes are the FP32 model's own best detections
(``make_labeller`` of the model entry), so an INT8 mAP on it measures how
faithfully INT8 reproduces FP32.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from mlperf_bnas.data import DATASETS
from mlperf_bnas.data.cache import CachedSamples, SourceItem, build_cache
from mlperf_bnas.data.dataset_base import (
    SYNTHETIC_STAMP, CalibrationSet, Dataset, DatasetOptions, Labeller, building_synthetic,
)
from mlperf_bnas.data.synthetic import synthetic_image
from mlperf_bnas.errors import UserError

log = logging.getLogger(__name__)

ANNOTATIONS = Path("annotations") / "openimages-mlperf.json"
CALIBRATION_ANNOTATIONS = Path("annotations") / "openimages-calibration-mlperf.json"
IMAGES = Path("validation") / "data"
CALIBRATION_IMAGES = Path("calibration") / "data"
NUM_CLASSES = 264


@dataclass(frozen=True)
class Image:
    """One entry of ``annotations["images"]`` (QSL index = its position)."""

    id: int
    file_name: str
    height: int
    width: int


def read_annotations(path: Path, image_dir: Path, check_files: bool = True) -> tuple[list[Image], dict[str, Any]]:
    """Parse and check a COCO-style OpenImages annotation file; one-line ``UserError`` on any problem."""
    if not path.is_file():
        raise UserError(f"{path}: annotations file not found; download the dataset with "
                        "code/retinanet-pytorch-cpu/openimages_mlperf.sh (or unset DATA_DIR for synthetic data)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc}); download it again") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise UserError(f"{path}: expected COCO-style JSON with 'images', 'annotations' and 'categories' lists")
    images = []
    for n, entry in enumerate(data["images"]):
        try:
            images.append(Image(int(entry["id"]), str(entry["file_name"]), int(entry["height"]), int(entry["width"])))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: images[{n}] lacks a valid id/file_name/height/width") from None
    if not images:
        raise UserError(f"{path}: lists no images")
    ids = {im.id for im in images}
    if len(ids) != len(images):
        raise UserError(f"{path}: duplicate image ids")
    orphans = [a.get("image_id") for a in data["annotations"] if a.get("image_id") not in ids]
    if orphans:
        raise UserError(f"{path}: {len(orphans)} annotation(s) refer to image ids not in 'images' "
                        f"(first: {orphans[0]}); the annotations and images do not belong together")
    if check_files:
        missing = [im.file_name for im in images if not (image_dir / im.file_name).is_file()]
        if missing:
            raise UserError(f"{path}: {len(missing)} listed image(s) not found in {image_dir} (first: {missing[0]}); "
                            "restore them or download the dataset again")
    return images, data


def ground_truth_from_detections(detections: list[dict[str, Any]], boxes_per_image: int) -> list[dict[str, Any]]:
    """COCO annotations from the FP32 model's detections: every detection scoring above one global cut.

    One cut for the whole set (not a top-N per image) means no FP32 detection left
    out of the ground truth outranks one put in, so the FP32 model itself scores
    mAP = 100% and any INT8 loss is INT8's. The cut keeps about ``boxes_per_image``
    boxes per image and is raised above every degenerate box (clipped to < 1 px,
    which no IoU can match).
    """
    flat = [(float(score), i, [float(v) for v in box], int(label))
            for i, det in enumerate(detections)
            for box, score, label in zip(det["boxes"], det["scores"], det["labels"])]
    if not flat:
        raise RuntimeError("the FP32 model detected nothing on the synthetic images; check the model's weights")
    ranked = sorted((s for s, _, _, _ in flat), reverse=True)
    cut = ranked[min(len(ranked), boxes_per_image * len(detections)) - 1]
    degenerate = [s for s, _, b, _ in flat if b[2] < 1.0 or b[3] < 1.0]
    keep = [d for d in flat if d[0] >= cut and (not degenerate or d[0] > max(degenerate))]
    if not keep:
        raise RuntimeError("every confident FP32 detection on the synthetic images is degenerate; "
                           "use another synthetic_seed")
    return [{"id": n + 1, "image_id": i + 1, "category_id": label, "bbox": box, "area": box[2] * box[3],
             "iscrowd": 0} for n, (_, i, box, label) in enumerate(sorted(keep, key=lambda d: (d[1], -d[0])))]


@DATASETS.register("openimages")
class OpenImages(Dataset):
    name = "openimages"

    @dataclass(frozen=True)
    class Options(DatasetOptions):
        #: Synthetic stand-in: 800x800 images cost ~1.5 s each through the INT8 model here.
        synthetic_count: int = 8
        #: Synthetic ground truth: the FP32 model's most confident detections, about N per image.
        synthetic_boxes_per_image: int = 10

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.synthetic_boxes_per_image < 1:
                raise ValueError(f"synthetic_boxes_per_image must be >= 1, got {self.synthetic_boxes_per_image}")

    def __init__(self, root: Path, options: "OpenImages.Options", images: list[Image], annotation_file: Path):
        super().__init__(root, options)
        self.images = images
        self.annotation_file = annotation_file

    @classmethod
    def open(cls, root: Path, options: "OpenImages.Options") -> "OpenImages":
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"{root}: OpenImages folder not found; set DATA_DIR to the folder holding "
                            f"{ANNOTATIONS} and {IMAGES}/ (or unset it for synthetic data)")
        images, _ = read_annotations(root / ANNOTATIONS, root / IMAGES)
        if options.count is not None:
            images = images[:options.count]
        return cls(root, options, images, root / ANNOTATIONS)

    def items(self) -> list[SourceItem]:
        return [SourceItem(im.file_name, self.root / IMAGES / im.file_name) for im in self.images]

    def ground_truth(self) -> Path:
        """The COCO annotation file (the accuracy script evaluates against it)."""
        return self.annotation_file

    def __len__(self) -> int:
        return len(self.images)

    # -- calibration --------------------------------------------------------------
    def has_calibration_set(self) -> bool:
        """True when MLPerf's separate calibration images are present (never for synthetic data)."""
        return not self.is_synthetic() and (self.root / CALIBRATION_ANNOTATIONS).is_file()

    def calibration_items(self, list_name: str | None = None) -> list[SourceItem]:
        """MLPerf's calibration images (train split) when downloaded; the synthetic set calibrates on itself."""
        if self.is_synthetic():
            return self.items()
        if not self.has_calibration_set():
            raise UserError(f"{self.root / CALIBRATION_ANNOTATIONS}: calibration set not found; run "
                            "code/retinanet-pytorch-cpu/openimages_calibration_mlperf.sh with the same dataset folder"
                            + (f" (it downloads the images MLPerf's {list_name} names)" if list_name else ""))
        images, _ = read_annotations(self.root / CALIBRATION_ANNOTATIONS, self.root / CALIBRATION_IMAGES)
        return [SourceItem(im.file_name, self.root / CALIBRATION_IMAGES / im.file_name) for im in images]

    def calibration_set(self, cache: CachedSamples, count: int, list_dir: Path | None,
                        progress: bool = True, list_name: str | None = None) -> CalibrationSet:
        """MLPerf's calibration split (500 train images), preprocessed with ``cache``'s spec and cached
        beside it; the synthetic set has no separate split and calibrates on its own images.
        ``list_name`` (the model's list, MLPerf's ``openimages_cal_images_list.txt``): the split is
        what ``openimages_calibration_mlperf.sh`` downloaded from that list; named when it is missing."""
        if self.is_synthetic():
            indices = list(range(min(count, len(cache))))
            return CalibrationSet(cache.load(indices), [cache.names[i] for i in indices],
                                  f"{self.annotation_file} (synthetic data: its own images)")
        items = self.calibration_items(list_name)[:max(1, count)]
        split = build_cache("openimages-calibration", items, cache.spec, cache.cache_dir.parent / "calibration",
                            workers=self.options.workers, progress=progress)
        return CalibrationSet(split.load(list(range(len(split)))), list(split.names),
                              str(self.root / CALIBRATION_ANNOTATIONS))

    # -- synthetic stand-in ---------------------------------------------------------
    def is_synthetic(self) -> bool:
        return (self.root / SYNTHETIC_STAMP).is_file()

    @classmethod
    def synthetic_stamp(cls, options: "OpenImages.Options", stamp: dict[str, Any]) -> dict[str, Any]:
        return {"generator": "mlperf_bnas.data.openimages/2", "count": options.synthetic_count,
                "seed": options.synthetic_seed, "boxes_per_image": options.synthetic_boxes_per_image,
                "labeller": stamp}

    @classmethod
    def make_synthetic(cls, root: Path, options: "OpenImages.Options", labeller: Labeller,
                       stamp: dict[str, Any]) -> None:
        """JPEGs + ``openimages-mlperf.json`` labelled by ``labeller``, written to a private folder, then swapped in."""
        with building_synthetic(root, cls.synthetic_stamp(options, stamp)) as tmp:
            (tmp / IMAGES).mkdir(parents=True)
            (tmp / ANNOTATIONS).parent.mkdir(parents=True)
            # Wider range of sizes and aspect ratios than ImageNet's stand-in: the
            # model resizes every image to a square, as it does OpenImages photos.
            names, paths, sizes = [], [], []
            for i in range(options.synthetic_count):
                name = f"{i:016x}.jpg"         # OpenImages ids are 16 hex digits
                img = synthetic_image(options.synthetic_seed, i, min_side=300, max_side=640)
                img.save(tmp / IMAGES / name, "JPEG", quality=92)
                names.append(name)
                paths.append(tmp / IMAGES / name)
                sizes.append(img.size)
            detections = list(labeller(paths))
            if len(detections) != len(names):
                raise RuntimeError(f"labeller returned {len(detections)} results for {len(names)} images")
            images = [{"id": i + 1, "file_name": name, "height": h, "width": w, "license": None, "coco_url": None}
                      for i, (name, (w, h)) in enumerate(zip(names, sizes))]
            annotations = ground_truth_from_detections(detections, options.synthetic_boxes_per_image)
            categories = [{"id": c, "name": f"synthetic class {c}", "supercategory": None} for c in range(NUM_CLASSES)]
            coco = {"info": {"dataset": "openimages_mlperf (synthetic, labelled by the FP32 model)", "version": "v6"},
                    "licenses": [], "categories": categories, "images": images, "annotations": annotations}
            (tmp / ANNOTATIONS).write_text(json.dumps(coco))
        log.info("synthetic OpenImages: %d images, %d boxes, %d distinct classes, in %s", len(images),
                 len(annotations), len({a["category_id"] for a in annotations}), root)
