"""OpenImages mAP, computed and printed as MLPerf's ``accuracy-openimages.py`` does.

Each ``mlperf_log_accuracy.json`` entry holds one image's response: float32
groups of 7 ``[qsl_idx, ymin, xmin, ymax, xmax, score, label]`` with the box
normalised to the image. The image is ``annotations["images"][qsl_idx]``; boxes are
scaled by its height/width, labels are category ids (no inverse map), and
pycocotools' COCOeval (bbox) scores them over every image seen, including images
without detections. The text is pycocotools' own output followed by ``mAP=X%``.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Iterable

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mlperf_bnas.accuracy import ACCURACY, AccuracyReport
from mlperf_bnas.errors import UserError
from mlperf_bnas.loadgen.accuracy_log import Entry, entries

log = logging.getLogger(__name__)

#: Peak memory of scoring, per detection (our COCO detections, pycocotools' loadRes, COCOeval's
#: evaluate and accumulate), measured with tools/benchmark_accuracy_scale.py on synthetic logs of
#: 1,000 images x 300 detections (AMD EPYC): 2.6 KB with 30 classes an image, 5.3 KB with 264. The
#: full set (24,781 images, up to 300 detections each: 7.43 million) can need 18-37 GiB.
BYTES_PER_DETECTION = (2_600, 5_300)


def available_memory() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def warn_if_short_of_memory(detections: int, where: str, available: int | None = None) -> bool:
    """A warning (True) when scoring ``detections`` is likely to need more memory than is available:
    pycocotools holds every detection several times over, and the process may be killed. The
    accuracy log is kept either way; it can be scored on a larger machine."""
    available = available_memory() if available is None else available
    low, high = (detections * b for b in BYTES_PER_DETECTION)
    if available is None or low <= available:
        return False
    log.warning("%s: scoring %d detections with pycocotools needs about %.1f-%.1f GiB (measured %.1f-%.1f KB a "
                "detection), %.1f GiB are available: the process may run out of memory. The accuracy log is kept; "
                "if it does, score it on a larger machine: tools/accuracy_openimages.py --mlperf-accuracy-file %s "
                "--openimages-dir <dataset>", where, detections, low / 2**30, high / 2**30,
                BYTES_PER_DETECTION[0] / 1000, BYTES_PER_DETECTION[1] / 1000, available / 2**30, where)
    return True


def detections_from_log(results: Iterable[Entry], images: list[dict[str, Any]],
                        where: str = "mlperf_log_accuracy.json") -> tuple[list[dict[str, Any]], set[int], dict[str, int]]:
    """(COCO detections, image ids seen, counts) from the accuracy log's entries (``accuracy_log.entries``)."""
    detections: list[dict[str, Any]] = []
    image_ids: set[int] = set()
    seen: set[int] = set()
    count = no_results = mismatched = 0
    for entry in results:
        count += 1
        idx = entry.qsl_idx
        if idx in seen:          # LoadGen may log an image more than once
            continue
        seen.add(idx)
        if not 0 <= idx < len(images):
            raise UserError(f"{where}: qsl_idx {idx} outside the dataset ({len(images)} images); "
                            "was the run made with another dataset?")
        try:
            data = entry.values("float32")
        except ValueError as exc:
            raise UserError(f"{where}: response of qsl_idx {idx} is not float32 hex data ({exc})") from None
        image = images[idx]
        image_ids.add(int(image["id"]))
        if len(data) < 7:
            no_results += 1
            continue
        if len(data) % 7:
            raise UserError(f"{where}: response of qsl_idx {idx} has {len(data)} floats, not a multiple of 7")
        height, width = float(image["height"]), float(image["width"])
        for row in data.reshape(-1, 7):
            image_idx, ymin, xmin, ymax, xmax, score, label = (float(v) for v in row)
            if int(image_idx) != idx:
                mismatched += 1
            ymin, ymax = ymin * height, ymax * height
            xmin, xmax = xmin * width, xmax * width
            detections.append({"image_id": int(image["id"]), "category_id": int(label),
                               "bbox": [xmin, ymin, xmax - xmin, ymax - ymin], "score": score})
    counts = {"results": count, "images": len(image_ids), "no_results": no_results,
              "duplicates": count - len(seen), "mismatched_idx": mismatched}
    return detections, image_ids, counts


def evaluate(annotation_file: Path | dict[str, Any], detections: list[dict[str, Any]],
             image_ids: set[int]) -> tuple[float, str]:
    """COCOeval bbox over ``image_ids``: (mAP in %, pycocotools' printed output). The ground truth is
    a COCO annotation file or the COCO dataset itself (``images``, ``annotations``, ``categories``)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if isinstance(annotation_file, dict):
            coco_gt = COCO()
            coco_gt.dataset = annotation_file
            coco_gt.createIndex()
        else:
            coco_gt = COCO(str(annotation_file))
        if detections:
            coco_dt = coco_gt.loadRes(detections)
        else:
            # loadRes refuses an empty list; an empty result set scores 0 (every image missed).
            coco_dt = COCO()
            coco_dt.dataset = {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"],
                               "annotations": []}
            coco_dt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
        coco_eval.params.imgIds = sorted(image_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    stat = float(coco_eval.stats[0])
    # COCOeval reports -1 when no ground truth exists for any evaluated image.
    return 100.0 * max(stat, 0.0), out.getvalue()


@ACCURACY.register("openimages")
def score(accuracy_log: Path, dataset: Any) -> AccuracyReport:
    annotation_file = Path(dataset.ground_truth())
    images = [{"id": im.id, "height": im.height, "width": im.width} for im in dataset.images]
    detections, image_ids, counts = detections_from_log(entries(accuracy_log), images,
                                                        where=str(accuracy_log))
    if not image_ids:
        raise UserError(f"{accuracy_log}: no responses to score; rerun the accuracy mode")
    warn_if_short_of_memory(len(detections), str(accuracy_log))
    m_ap, printed = evaluate(annotation_file, detections, image_ids)
    text = printed + "mAP={:.3f}%\n".format(m_ap)
    return AccuracyReport(text=text, metrics={"mAP": m_ap, **counts})
