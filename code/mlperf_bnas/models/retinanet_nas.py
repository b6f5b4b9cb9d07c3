"""RetinaNet's BootstrapNAS parts: training images, distillation loss, mAP against the full model.

The RetinaNet descriptor (``models/retinanet.py``) answers the NAS steps with these:

* **Images** (``detection_data``): no labels are needed, the teacher labels every batch.
  ``synthetic`` -- the project's seeded synthetic images (``data/synthetic.py``; no download);
  ``openimages`` -- MLPerf's OpenImages calibration split at ``DATA_DIR``
  (``calibration/data``: training images, never the validation set the benchmark scores on);
  ``images`` -- any folder of JPEG/PNG images. A seeded slice of them is held out: the
  accuracy of training epochs and of the search is measured on it.
* **Loss** (``distillation_loss``): distillation from the full FP32 RetinaNet on both heads.
  The teacher keeps all five pyramid levels; the student may have fewer (one FPN level
  removed, as the seed did), so the teacher's anchors are first cut to the student's levels
  (both outputs carry their geometry). Classification: binary cross-entropy of the
  student's logits against the teacher's sigmoid probabilities, focal-weighted by
  ``|p_student - p_teacher|^2`` (quality focal loss with soft targets: the ~99 % of
  background anchors would swamp a plain BCE) and normalised by the anchors the teacher
  finds something in. Box regression: smooth-L1 to the teacher's box deltas, weighted per
  anchor by the teacher's best class probability.
* **mAP** (``DetectionSet``, ``detection_map``): pycocotools' COCOeval of the sub-network's
  detections (MLPerf's post-processing) against the full FP32 model's own detections on the
  held-out images, cut as the synthetic dataset cuts them (``ground_truth_from_detections``):
  the full model scores 100 % by construction, so the figure is how much of the full model's
  output a sub-network keeps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.errors import UserError

log = logging.getLogger(__name__)

DATASETS = ("synthetic", "openimages", "images")


@dataclass(frozen=True)
class DataOptions:
    """``dataset_options`` of a RetinaNet NAS config."""

    #: Synthetic stand-in: training and held-out image counts (seeded, disjoint seeds).
    synthetic_images: int = 64
    held_out: int = 16
    #: Held-out share of a folder of real images (at least ``held_out`` images).
    held_out_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("synthetic_images", "held_out"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"dataset_options.{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.held_out_fraction, (int, float)) or not 0 < self.held_out_fraction < 1:
            raise UserError(f"dataset_options.held_out_fraction must be in (0, 1), got {self.held_out_fraction!r}")


def data_options(options: dict | None) -> DataOptions:
    options = dict(options or {})
    unknown = sorted(set(options) - {f.name for f in fields(DataOptions)})
    if unknown:
        raise UserError(f"dataset_options: unknown key(s) {', '.join(unknown)}; valid: "
                        f"{', '.join(f.name for f in fields(DataOptions))}")
    return DataOptions(**options)

#: Reference boxes per image kept from the full model's detections (as the synthetic dataset).
REFERENCE_BOXES_PER_IMAGE = 10
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


# -- images ------------------------------------------------------------------------------------
class ImageSource:
    """Images by index: a seeded synthetic set or files; each preprocessed by ``spec`` on read."""

    def __init__(self, names: list[str], load: Callable[[int], Any], spec: PreprocessSpec, origin: str):
        self.names, self._load, self.spec, self.origin = names, load, spec, origin

    def __len__(self) -> int:
        return len(self.names)

    def sample(self, i: int) -> Tensor:
        return torch.from_numpy(self.spec.apply(self._load(i)))


def _synthetic(seed: int, count: int, spec: PreprocessSpec) -> ImageSource:
    from mlperf_bnas.data.synthetic import synthetic_image

    return ImageSource([f"synthetic-{seed}-{i:05d}" for i in range(count)], lambda i: synthetic_image(seed, i),
                       spec, f"synthetic images (seed {seed})")


def _folder(folder: Path, spec: PreprocessSpec, what: str, minimum: int) -> ImageSource:
    from PIL import Image

    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of images; {what}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if len(files) < minimum:
        raise UserError(f"{folder}: {len(files)} image(s); RetinaNet NAS training needs at least {minimum} "
                        f"({what})")

    def load(i: int):
        with Image.open(files[i]) as img:
            return img.convert("RGB")

    return ImageSource([str(p.relative_to(folder)) for p in files], load, spec, str(folder))


def split_sources(dataset: str, data_dir: str | Path | None, seed: int, spec: PreprocessSpec,
                  options: DataOptions = DataOptions()) -> tuple[ImageSource, ImageSource, list[int], list[int]]:
    """(training source, held-out source, training indices, held-out indices) of ``dataset``."""
    if dataset == "synthetic":
        if data_dir:
            raise UserError(f"dataset 'synthetic' takes no data folder (got {data_dir}); use dataset 'openimages' or "
                            "'images' for real images")
        train = _synthetic(seed, options.synthetic_images, spec)
        held = _synthetic(seed + 1, options.held_out, spec)     # another seed: never a training image
        return train, held, list(range(len(train))), list(range(len(held)))
    if dataset not in ("openimages", "images"):
        raise UserError(f"dataset {dataset!r}: RetinaNet trains on one of {', '.join(DATASETS)}")
    if not data_dir:
        raise UserError(f"dataset {dataset!r} needs --data-dir (openimages: the OpenImages root with "
                        "calibration/data; images: a folder of images)")
    if dataset == "openimages":
        source = _folder(Path(data_dir) / "calibration" / "data", spec,
                         "download MLPerf's calibration split with code/retinanet-pytorch-cpu/"
                         "openimages_calibration_mlperf.sh (the validation set is never trained on)",
                         options.held_out + 1)
    else:
        source = _folder(Path(data_dir), spec, "pass a folder holding training images", options.held_out + 1)
    order = np.random.default_rng(seed).permutation(len(source))
    n_held = min(len(source) - 1, max(options.held_out, int(round(len(source) * options.held_out_fraction))))
    return source, source, sorted(order[n_held:].tolist()), sorted(order[:n_held].tolist())


class TrainImages(torch.utils.data.Dataset):
    """(uint8 image [3, H, W], index) pairs; random horizontal flips when ``augment``."""

    def __init__(self, source: ImageSource, indices: Sequence[int], augment: bool):
        self.source, self.indices, self.augment = source, list(indices), augment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        x = self.source.sample(self.indices[k])
        if self.augment and torch.rand(()) < 0.5:      # torch's RNG: the trainer seeds it per epoch
            x = x.flip(-1)
        return x, self.indices[k]


def train_loader(source: ImageSource, indices: Sequence[int], batch_size: int) -> torch.utils.data.DataLoader:
    if len(indices) < batch_size:
        raise UserError(f"{source.origin}: {len(indices)} training image(s), fewer than batch_size {batch_size}; "
                        "lower batch_size or add images")
    return torch.utils.data.DataLoader(TrainImages(source, indices, augment=True), batch_size=batch_size,
                                       shuffle=True, drop_last=True)


def bn_batches(source: ImageSource, indices: Sequence[int], batch_size: int = 8) -> list[Tensor]:
    """Fixed, unshuffled BN re-calibration batches (the same sub-network always gets the same
    statistics); read lazily, at most what BN adaptation asks for."""
    return _LazyBatches(source, list(indices), batch_size)


class _LazyBatches:
    def __init__(self, source: ImageSource, indices: list[int], batch_size: int):
        self.source, self.indices, self.batch_size = source, indices, batch_size
        self._cache: dict[int, Tensor] = {}

    def __iter__(self):
        for start in range(0, len(self.indices), self.batch_size):
            if start not in self._cache:
                idx = self.indices[start:start + self.batch_size]
                self._cache[start] = torch.stack([self.source.sample(i) for i in idx])
            yield self._cache[start]


# -- the reference and mAP -----------------------------------------------------------------------
class DetectionSet:
    """Held-out images and the full FP32 model's detections on them (the mAP reference).

    The reference is computed on first use (``reference()`` builds the teacher lazily: a search
    only pays for it when it measures accuracy) and kept."""

    def __init__(self, source: ImageSource, indices: Sequence[int],
                 teacher: Callable[[], torch.nn.Module] | torch.nn.Module | None,
                 settings, num_classes: int, batch_size: int = 4):
        self.source, self.indices, self.num_classes = source, list(indices), num_classes
        self._teacher = teacher
        self.settings, self.batch_size = settings, batch_size
        self._images: Tensor | None = None
        self._reference: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def images(self) -> Tensor:
        if self._images is None:
            self._images = torch.stack([self.source.sample(i) for i in self.indices])
        return self._images

    def batches(self):
        x = self.images()
        for start in range(0, len(x), self.batch_size):
            yield x[start:start + self.batch_size]

    def subset(self, fraction: float) -> "DetectionSet":
        n = max(1, int(round(len(self.indices) * fraction)))
        return DetectionSet(self.source, self.indices[:n], self._teacher, self.settings, self.num_classes,
                            self.batch_size)

    def reference(self) -> dict[str, Any]:
        """COCO ground truth: the teacher's detections (``ground_truth_from_detections``)."""
        if self._reference is None:
            from mlperf_bnas.data.openimages import ground_truth_from_detections

            if self._teacher is None:
                raise UserError("mAP of a RetinaNet sub-network is measured against the full model's detections: "
                                "no full model (teacher) was given")
            teacher = self._teacher() if not isinstance(self._teacher, torch.nn.Module) else self._teacher
            detections = [{"boxes": d["bbox"], "scores": d["score"], "labels": d["category_id"]}
                          for d in _per_image(self.detect(teacher), len(self.indices))]
            annotations = ground_truth_from_detections(detections, REFERENCE_BOXES_PER_IMAGE)
            size = int(self.images().shape[-1])
            # Every class the model has: a detection in a class the reference lacks is a false positive.
            self._reference = {
                "images": [{"id": k + 1, "height": size, "width": size} for k in range(len(self.indices))],
                "annotations": annotations, "categories": [{"id": c} for c in range(self.num_classes)]}
        return self._reference

    @torch.no_grad()
    def detect(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        """COCO detections of ``model`` (image ids 1..N, xywh boxes in input pixels)."""
        from mlperf_bnas.models.retinanet_postprocess import detect

        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        out: list[dict[str, Any]] = []
        image_id = 1
        try:
            for x in self.batches():
                cls, reg, geometry = model(x.to(device))
                for boxes, scores, labels in detect(cls.cpu(), reg.cpu(), geometry.cpu().tolist(), self.settings):
                    b = boxes.double()
                    for box, score, label in zip(b.tolist(), scores.tolist(), labels.tolist()):
                        out.append({"image_id": image_id, "category_id": int(label),
                                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": float(score)})
                    image_id += 1
        finally:
            model.train(was_training)
        return out


def _per_image(detections: list[dict[str, Any]], count: int) -> list[dict[str, list]]:
    out = [{"bbox": [], "score": [], "category_id": []} for _ in range(count)]
    for d in detections:
        entry = out[d["image_id"] - 1]
        for key in entry:
            entry[key].append(d[key])
    return out


def detection_map(model: torch.nn.Module, data: DetectionSet) -> float:
    """mAP (%) of ``model``'s detections against the full model's on ``data`` (pycocotools)."""
    from mlperf_bnas.accuracy.coco_map import evaluate

    reference = data.reference()
    detections = data.detect(model)
    m_ap, _ = evaluate(reference, detections, set(range(1, len(data) + 1)))
    return m_ap


# -- distillation ------------------------------------------------------------------------------
def _levels(geometry: Tensor) -> list[tuple[int, int, int]]:
    g = [int(round(float(v))) for v in geometry.reshape(-1).tolist()]
    return [(g[i], g[i + 1], g[i + 2]) for i in range(2, len(g), 3)]


def align_to_student(teacher_out: Sequence[Tensor], student_geometry: Tensor,
                     anchors_per_location: int) -> tuple[Tensor, Tensor]:
    """The teacher's (cls, reg) restricted to the student's pyramid levels, in the student's order."""
    t_cls, t_reg, t_geometry = teacher_out
    t_levels, s_levels = _levels(t_geometry), _levels(student_geometry)
    if t_levels == s_levels:
        return t_cls, t_reg
    offsets, start = {}, 0
    for level, h, w in t_levels:
        offsets[level] = (start, h * w * anchors_per_location, (h, w))
        start += h * w * anchors_per_location
    cls_parts, reg_parts = [], []
    for level, h, w in s_levels:
        if level not in offsets or offsets[level][2] != (h, w):
            raise ValueError(f"the student's pyramid level P{level} ({h}x{w}) is not among the teacher's "
                             f"{[(lv, th, tw) for lv, th, tw in t_levels]}; train at one image size")
        begin, count, _ = offsets[level]
        cls_parts.append(t_cls[:, begin:begin + count])
        reg_parts.append(t_reg[:, begin:begin + count])
    return torch.cat(cls_parts, 1), torch.cat(reg_parts, 1)


def distillation_loss(student_out: Sequence[Tensor], teacher_out: Sequence[Tensor], temperature: float,
                      box_weight: float, anchors_per_location: int) -> Tensor:
    """Quality-focal distillation of the class scores + confidence-weighted smooth-L1 of the boxes."""
    s_cls, s_reg, s_geometry = student_out
    t_cls, t_reg = align_to_student(teacher_out, s_geometry, anchors_per_location)
    t_prob = torch.sigmoid(t_cls.float() / temperature)
    s_logits = s_cls.float() / temperature
    focal = (torch.sigmoid(s_logits).detach() - t_prob).abs().pow(2)
    bce = F.binary_cross_entropy_with_logits(s_logits, t_prob, reduction="none")
    confidence = t_prob.max(dim=-1).values                  # [N, K]: how much the teacher sees there
    positives = (confidence >= 0.05).sum().clamp(min=1).float()
    cls_loss = (bce * focal).sum() / positives * temperature * temperature
    box = F.smooth_l1_loss(s_reg.float(), t_reg.float(), beta=1.0 / 9, reduction="none").sum(-1)
    box_loss = (box * confidence).sum() / confidence.sum().clamp(min=1e-6)
    return cls_loss + box_weight * box_loss
