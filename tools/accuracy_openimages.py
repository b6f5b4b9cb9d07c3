#!/usr/bin/env python3
"""Drop-in for MLPerf's ``accuracy-openimages.py``: same flags, same output (pycocotools + ``mAP=X%``).

    tools/accuracy_openimages.py --mlperf-accuracy-file mlperf_log_accuracy.json --openimages-dir DIR

``DATASET_ANNOTATIONS_FILE_PATH`` overrides ``DIR/annotations/openimages-mlperf.json``, as in MLPerf.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mlperf_bnas.accuracy.coco_map import detections_from_log, evaluate, warn_if_short_of_memory
from mlperf_bnas.cli import run_command
from mlperf_bnas.data.openimages import ANNOTATIONS, IMAGES, read_annotations
from mlperf_bnas.loadgen.accuracy_log import entries


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mlperf-accuracy-file", required=True, help="path to mlperf_log_accuracy.json")
    p.add_argument("--openimages-dir", required=True, help="openimages directory")
    p.add_argument("--verbose", action="store_true", help="verbose messages")
    p.add_argument("--output-file", default=None, help="also write the COCO detections (JSON) here")
    args = p.parse_args(argv)
    return run_command(lambda: _score(args))


def _score(args: argparse.Namespace) -> int:
    root = Path(args.openimages_dir)
    annotations = Path(os.environ.get("DATASET_ANNOTATIONS_FILE_PATH") or root / ANNOTATIONS)
    images, _ = read_annotations(annotations, root / IMAGES, check_files=False)
    detections, image_ids, counts = detections_from_log(
        entries(Path(args.mlperf_accuracy_file)),
        [{"id": im.id, "height": im.height, "width": im.width} for im in images],
        where=args.mlperf_accuracy_file)
    if args.output_file:
        # Streamed into the file (json.dump), as MLPerf's script writes it: the whole text as one
        # string would be ~260 bytes a detection (up to 7.4 million of them: 1.9 GB) held twice.
        out = Path(args.output_file)
        tmp = out.with_name(f".{out.name}.partial")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(detections, fh, sort_keys=True, indent=4)
        os.replace(tmp, out)
    warn_if_short_of_memory(len(detections), args.mlperf_accuracy_file)
    m_ap, printed = evaluate(annotations, detections, image_ids)
    print(printed, end="")
    print("mAP={:.3f}%".format(m_ap))
    if args.verbose:
        print("found {} results".format(counts["results"]))
        print("found {} images".format(counts["images"]))
        print("found {} images with no results".format(counts["no_results"]))
        print("ignored {} dupes".format(counts["duplicates"]))
    return 0

if __name__ == "__main__":
    sys.exit(main())
