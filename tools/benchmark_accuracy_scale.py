#!/usr/bin/env python3
"""Accuracy logs at the real v5.1 sizes, on synthetic logs of the real shape (not a test).

The figures behind docs/submission.md "Real sizes": how fast the one accuracy-log reader
(``loadgen.accuracy_log.entries``), the hash and ImageNet top-1 go over a full-size ResNet-50
log (50,000 entries of one int32 class), and what RetinaNet's scoring costs per detection:
time and resident memory of each step (our COCO detections, pycocotools' ``loadRes``,
``COCOeval.evaluate``, ``accumulate``), on ``--images`` images of ``--detections`` detections
(MLPerf's cap: 300) drawn from ``--classes`` classes each, with a ground truth made of some of
them (so the mAP is not 0). Extrapolate to the full 24,781 images by the per-detection figures
(``accumulate`` holds ~55 MiB whatever the size: use 1,000 images or more).

    .venv/bin/python tools/benchmark_accuracy_scale.py [--images 1000] [--detections 300] [--classes 30]

Writes its logs to a scratch folder (removed at the end). Each figure depends on the machine
and its load: quote the CPU it prints.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mlperf_bnas.accuracy.coco_map import detections_from_log
from mlperf_bnas.accuracy.top1 import top1
from mlperf_bnas.backends.cpu import cpu_info
from mlperf_bnas.fileio import sha256_file
from mlperf_bnas.loadgen.accuracy_log import Entry, entries, write_entries

RESNET_IMAGES = 50_000
RETINANET_IMAGES = 24_781


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")



def resnet(work: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 1000, RESNET_IMAGES)
    path = work / "resnet50.json"
    write_entries(path, (Entry(i, i, np.int32(labels[i]).tobytes().hex()) for i in range(RESNET_IMAGES)))
    size = path.stat().st_size
    started = time.perf_counter()
    count = sum(1 for _ in entries(path))
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    result = top1(entries(path), labels)
    top1_s = time.perf_counter() - started
    print(f"ResNet-50 accuracy log: {count} entries, {size / 2**20:.2f} MiB ({size / count:.1f} B an entry); "
          f"read {read_s:.2f} s, top-1 {top1_s:.2f} s ({result.line()})", flush=True)


def retinanet_log(path: Path, images: int, detections: int, classes: int) -> None:
    rng = np.random.default_rng(0)

    def responses():
        for i in range(images):
            rows = np.zeros((detections, 7), np.float32)
            rows[:, 0] = i
            y0, x0 = rng.random(detections, np.float32) * 0.8, rng.random(detections, np.float32) * 0.8
            rows[:, 1], rows[:, 2] = y0, x0
            rows[:, 3] = y0 + 0.05 + 0.15 * rng.random(detections, np.float32)
            rows[:, 4] = x0 + 0.05 + 0.15 * rng.random(detections, np.float32)
            rows[:, 5] = np.sort(rng.random(detections, np.float32))[::-1]
            rows[:, 6] = rng.choice(rng.choice(264, classes, replace=False), detections)
            yield Entry(i, i, rows.tobytes().hex())

    write_entries(path, responses())


def retinanet(work: Path, images: int, detections: int, classes: int) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = work / "retinanet.json"
    retinanet_log(path, images, detections, classes)
    size = path.stat().st_size
    started = time.perf_counter()
    sum(1 for _ in entries(path))
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    sha256_file(path)
    hash_s = time.perf_counter() - started
    per_image = size / images
    print(f"RetinaNet accuracy log: {images} images x {detections} detections = {size / 2**20:.1f} MiB "
          f"({per_image:.0f} B an image: {RETINANET_IMAGES} images = {RETINANET_IMAGES * per_image / 2**20:.0f} MiB); "
          f"read {size / 2**20 / read_s:.0f} MiB/s, sha256 {size / 2**20 / hash_s:.0f} MiB/s", flush=True)

    steps: list[tuple[str, float, float]] = []
    start_rss = rss_mib()

    def step(name: str, fn):
        before, started = rss_mib(), time.perf_counter()
        out = fn()
        steps.append((name, time.perf_counter() - started, rss_mib() - before))
        return out

    images_list = [{"id": i, "height": 600, "width": 800} for i in range(images)]
    dets, image_ids, _counts = step("our COCO detections", lambda: detections_from_log(entries(path), images_list))
    n = len(dets)
    truth = [{"id": k + 1, "image_id": d["image_id"], "category_id": d["category_id"], "bbox": list(d["bbox"]),
              "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0}
             for k, d in enumerate(dets[::max(1, detections // 5)])]
    gt = {"images": images_list, "annotations": truth, "categories": [{"id": c, "name": str(c)} for c in range(264)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = step("pycocotools loadRes", lambda: coco_gt.loadRes(dets))
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.imgIds = sorted(image_ids)
        step("COCOeval evaluate", evaluator.evaluate)
        step("COCOeval accumulate + summarize", lambda: (evaluator.accumulate(), evaluator.summarize()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - start_rss
    for name, seconds, mib in steps:
        print(f"  {name}: {seconds:.1f} s, +{mib:.0f} MiB ({mib * 2**20 / n:.0f} B a detection)")
    full = RETINANET_IMAGES * detections
    print(f"  {n} detections, {classes} classes an image: mAP {100 * evaluator.stats[0]:.3f}%; "
          f"peak {peak:.0f} MiB over the start = {peak * 2**20 / n:.0f} B a detection: "
          f"{RETINANET_IMAGES} images x {detections} = {full / 1e6:.2f} M detections "
          f"-> ~{full * peak / n / 1024:.1f} GiB, "
          f"~{sum(s for _, s, _ in steps) * RETINANET_IMAGES / images / 60:.0f} min", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=1000, help="RetinaNet images in the synthetic log")
    p.add_argument("--detections", type=int, default=300, help="detections an image (MLPerf's cap: 300)")
    p.add_argument("--classes", type=int, default=30, help="distinct classes among an image's detections")
    p.add_argument("--skip", nargs="*", default=[], choices=["resnet50", "retinanet"])
    args = p.parse_args(argv)
    print(f"CPU: {cpu_info().model}", flush=True)
    with tempfile.TemporaryDirectory(prefix="accuracy-scale-") as tmp:
        if "resnet50" not in args.skip:
            resnet(Path(tmp))
        if "retinanet" not in args.skip:
            retinanet(Path(tmp), args.images, args.detections, args.classes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
