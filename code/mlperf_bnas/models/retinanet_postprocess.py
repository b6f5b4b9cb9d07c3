"""RetinaNet post-processing (registered postprocessor ``retinanet``), in float, with torchvision.ops.

Input: the tensor part's outputs ``(cls_logits [N, K, C], bbox_regression [N, K, 4],
geometry)`` (see ``models/retinanet.py``). Output, per image, MLPerf's response:
float32 rows ``[qsl_idx, ymin, xmin, ymax, xmax, score, label]`` with the box
normalised to the model's input size (hence to the original image, which was
resized to it without cropping), score >= the threshold, best first.

The steps are those of MLPerf's reference ``RetinaNet.postprocess_detections``:
per pyramid level, sigmoid scores > threshold, keep the top 1000, decode the
boxes against the anchors (``BoxCoder`` weights 1,1,1,1), clip to the image;
then class-wise NMS (IoU 0.5) over all levels and keep the best 300.
Anchors come from torchvision's ``AnchorGenerator`` with MLPerf's sizes
(32..512 x 2^{0,1/3,2/3}, aspect ratios 0.5, 1, 2) and are cached per geometry.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import batched_nms, clip_boxes_to_image

from mlperf_bnas.loadgen.postprocess import POSTPROCESSORS

# One response row (7 float32 values per detection): qsl_idx, ymin, xmin, ymax, xmax, score, label.


@dataclass(frozen=True)
class DetectionSettings:
    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    topk_candidates: int = 1000
    detections_per_image: int = 300


def anchor_sizes(level: int) -> tuple[int, int, int]:
    base = 32 * 2 ** (level - 3)
    return (base, int(base * 2 ** (1.0 / 3)), int(base * 2 ** (2.0 / 3)))


_ANCHORS: dict[tuple[float, ...], tuple[Tensor, list[int], tuple[int, int]]] = {}
_ANCHORS_LOCK = threading.Lock()


def anchors_for(geometry: Sequence[float]) -> tuple[Tensor, list[int], tuple[int, int]]:
    """(anchors [K, 4] in x1y1x2y2 input pixels, anchors per level, (image_h, image_w))."""
    key = tuple(float(v) for v in geometry)
    with _ANCHORS_LOCK:
        hit = _ANCHORS.get(key)
    if hit is not None:
        return hit
    image_h, image_w = int(key[0]), int(key[1])
    levels = [(int(key[i]), int(key[i + 1]), int(key[i + 2])) for i in range(2, len(key), 3)]
    generator = AnchorGenerator(tuple(anchor_sizes(lv) for lv, _, _ in levels), ((0.5, 1.0, 2.0),) * len(levels))
    # AnchorGenerator only reads shapes: empty feature maps of each level's grid size.
    images = ImageList(torch.empty(1, 0, image_h, image_w), [(image_h, image_w)])
    feats = [torch.empty(1, 0, h, w) for _, h, w in levels]
    anchors = generator(images, feats)[0]
    per_level = [h * w * generator.num_anchors_per_location()[i] for i, (_, h, w) in enumerate(levels)]
    result = (anchors, per_level, (image_h, image_w))
    with _ANCHORS_LOCK:
        _ANCHORS[key] = result
    return result


_BOX_CODER = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))


def _candidate_anchors(logits: Tensor, k: int, logit_threshold: float) -> Tensor:
    """The anchors (rows of one level's ``[A, C]`` logits) that can hold one of its ``k`` best
    scores above the threshold: those whose best class is >= the k-th best anchor's best class.

    Exact: the k best anchors' maxima are k scores >= that value, so the level's k-th best score
    is >= it too, and an anchor holding a top-k score has a maximum at least that high (when
    fewer than k scores pass the threshold, fewer than k anchors do, and the k-th best maximum is
    below it). Ties are kept. This reads the A x C scores once (a maximum per anchor) and
    thresholds only the candidates' rows: with untrained or seeded heads a quarter of the 31.7 M
    scores of an 800x800 image pass 0.05, and indexing them all took most of the time.
    """
    best = logits.amax(dim=1)
    keep = best > logit_threshold
    if best.numel() > k:
        keep &= best >= best.topk(k).values[-1]
    return torch.where(keep)[0]


def detect(cls_logits: Tensor, bbox_regression: Tensor, geometry: Sequence[float],
           settings: DetectionSettings = DetectionSettings()) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Per image: (boxes [D, 4] x1y1x2y2 in input pixels, scores [D], labels [D]), best first."""
    anchors, per_level, image_shape = anchors_for(geometry)
    if cls_logits.shape[1] != anchors.shape[0]:
        raise ValueError(f"model output has {cls_logits.shape[1]} anchors, its geometry {list(geometry)} "
                         f"gives {anchors.shape[0]}")
    cls_logits = cls_logits.float()
    bbox_regression = bbox_regression.float()
    num_classes = cls_logits.shape[-1]
    t = settings.score_threshold
    # A hair below logit(t), so float rounding never drops a score the reference would keep.
    logit_threshold = math.log(t / (1.0 - t)) - 1e-4 if t > 0 else -math.inf
    results = []
    for n in range(cls_logits.shape[0]):
        boxes_all, scores_all, labels_all = [], [], []
        for logits, regression, level_anchors in zip(cls_logits[n].split(per_level), bbox_regression[n].split(per_level),
                                                     anchors.split(per_level)):
            rows = _candidate_anchors(logits, settings.topk_candidates, logit_threshold)
            # sigmoid(x) > t  <=>  x > logit(t): threshold the logits and take the sigmoid of the
            # few survivors only (the full sigmoid over K x 264 scores dominated the cost).
            flat = logits[rows].flatten()
            idxs = torch.where(flat > logit_threshold)[0]
            scores = torch.sigmoid(flat[idxs])
            above = scores > settings.score_threshold       # the reference's test, on the survivors
            scores, idxs = scores[above], idxs[above]
            num_topk = min(settings.topk_candidates, idxs.numel())
            scores, order = scores.topk(num_topk)
            idxs = idxs[order]
            anchor_idxs = rows[torch.div(idxs, num_classes, rounding_mode="floor")]
            labels = idxs % num_classes
            boxes = _BOX_CODER.decode_single(regression[anchor_idxs], level_anchors[anchor_idxs])
            boxes_all.append(clip_boxes_to_image(boxes, image_shape))
            scores_all.append(scores)
            labels_all.append(labels)
        boxes = torch.cat(boxes_all)
        scores = torch.cat(scores_all)
        labels = torch.cat(labels_all)
        keep = batched_nms(boxes, scores, labels, settings.nms_threshold)[:settings.detections_per_image]
        results.append((boxes[keep], scores[keep], labels[keep]))
    return results


def responses(outputs: Any, qsl_indices: np.ndarray, settings: DetectionSettings = DetectionSettings()) -> list[np.ndarray]:
    """LoadGen responses: one flat float32 array of 7 values per detection, per sample."""
    cls_logits, bbox_regression, geometry = (torch.as_tensor(np.asarray(o)) if not isinstance(o, Tensor) else o
                                             for o in outputs[:3])
    geometry = geometry.reshape(-1).tolist()
    image_h, image_w = geometry[0], geometry[1]
    out = []
    with torch.no_grad():
        for qsl_idx, (boxes, scores, labels) in zip(qsl_indices.tolist(),
                                                    detect(cls_logits, bbox_regression, geometry, settings)):
            rows = torch.empty((boxes.shape[0], 7), dtype=torch.float32)
            rows[:, 0] = float(qsl_idx)
            rows[:, 1] = boxes[:, 1] / image_h
            rows[:, 2] = boxes[:, 0] / image_w
            rows[:, 3] = boxes[:, 3] / image_h
            rows[:, 4] = boxes[:, 2] / image_w
            rows[:, 5] = scores
            rows[:, 6] = labels.float()
            out.append(rows.numpy().reshape(-1))
    return out


@POSTPROCESSORS.register("retinanet")
def retinanet(outputs: Any, qsl_indices: np.ndarray) -> list[np.ndarray]:
    """MLPerf's RetinaNet response with the reference thresholds (0.05 / NMS 0.5 / 1000 / 300)."""
    return responses(outputs, qsl_indices)
