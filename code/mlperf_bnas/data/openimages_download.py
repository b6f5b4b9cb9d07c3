"""Download MLPerf's OpenImages subset the way MLPerf's own tools do (for users with internet).

``mlperf-bnas download openimages validation --dataset-dir DIR [--max-images N]``
``mlperf-bnas download openimages calibration --dataset-dir DIR``

* The 264 class names are read from MLPerf's ``openimages_mlperf.sh`` and the 500
  calibration image ids from ``calibration/openimages/openimages_cal_images_list.txt``,
  both fetched from mlcommons/inference on GitHub (no copies are kept in this repository).
* Validation: Open Images v6 box annotations + boxable class descriptions (Google
  storage), every validation image holding one of the classes, from the public
  ``open-images-dataset`` S3 bucket (boto3, unsigned), then
  ``annotations/openimages-mlperf.json`` in MLPerf's COCO form: images sorted by id
  (QSL order), ``category_id`` = position in MLPerf's class list, boxes in pixels.
* Calibration: the 500 train images into ``calibration/data/`` and
  ``annotations/openimages-calibration-mlperf.json`` listing them (images only: MLPerf's
  script also converts the 2 GB train box CSV, which calibration does not use).

Images already present are kept (a rerun resumes); an existing annotation file is never
overwritten. Files are written to temporary names and renamed when complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Iterable

from PIL import Image
from tqdm import tqdm

from mlperf_bnas.errors import UserError

MLPERF_RAW = "https://raw.githubusercontent.com/mlcommons/inference/master"
CLASSES_SCRIPT_URL = f"{MLPERF_RAW}/vision/classification_and_detection/tools/openimages_mlperf.sh"
CALIBRATION_LIST_URL = f"{MLPERF_RAW}/calibration/openimages/openimages_cal_images_list.txt"
BOXES_URL = "https://storage.googleapis.com/openimages/v5/validation-annotations-bbox.csv"
CLASS_MAP_URL = "https://storage.googleapis.com/openimages/v5/class-descriptions-boxable.csv"
BUCKET = "open-images-dataset"
NUM_CLASSES = 264


def fetch_text(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=120) as resp:      # noqa: S310 - fixed https URLs
            return resp.read().decode("utf-8")
    except OSError as exc:
        raise UserError(f"{url}: download failed ({exc}); check the internet connection") from None


def parse_mlperf_classes(script_text: str) -> list[str]:
    """The ``MLPERF_CLASSES=(...)`` bash array of MLPerf's ``openimages_mlperf.sh``."""
    match = re.search(r"MLPERF_CLASSES=\((.*?)\)\s*\n", script_text, re.S)
    if not match:
        raise UserError(f"{CLASSES_SCRIPT_URL}: no MLPERF_CLASSES array found; MLPerf changed the script")
    classes = shlex.split(match.group(1))
    if len(classes) != NUM_CLASSES:
        raise UserError(f"{CLASSES_SCRIPT_URL}: {len(classes)} classes, expected {NUM_CLASSES}")
    return classes


def parse_calibration_list(text: str) -> list[str]:
    ids = [line.strip().split(".")[0] for line in text.splitlines() if line.strip()]
    if len(ids) != 500:
        raise UserError(f"{CALIBRATION_LIST_URL}: {len(ids)} image ids, expected 500")
    return ids


def select_validation(boxes_csv: str, class_map_csv: str, classes: list[str]) -> tuple[list[str], list[dict]]:
    """(sorted image ids holding a class, box rows of those classes) -- MLPerf's selection."""
    category = {name: i for i, name in enumerate(classes)}
    label_to_category = {}
    for row in csv.reader(io.StringIO(class_map_csv)):
        if len(row) >= 2 and row[1] in category:
            label_to_category[row[0]] = category[row[1]]
    rows = [r for r in csv.DictReader(io.StringIO(boxes_csv)) if r["LabelName"] in label_to_category]
    for r in rows:
        r["category_id"] = label_to_category[r["LabelName"]]
    return sorted({r["ImageID"] for r in rows}), rows


def to_coco(image_ids: list[str], rows: Iterable[dict], image_dir: Path, classes: list[str]) -> dict:
    """MLPerf's ``export_to_coco``: image id = rank of the ImageID + 1, boxes scaled to pixels."""
    sizes = {}
    for image_id in image_ids:
        with Image.open(image_dir / f"{image_id}.jpg") as img:
            sizes[image_id] = (img.height, img.width)
    number = {image_id: n + 1 for n, image_id in enumerate(image_ids)}
    images = [{"id": number[i], "file_name": f"{i}.jpg", "height": sizes[i][0], "width": sizes[i][1],
               "license": None, "coco_url": None} for i in image_ids]
    annotations = []
    for r in sorted((r for r in rows if r["ImageID"] in number), key=lambda r: r["ImageID"]):
        h, w = sizes[r["ImageID"]]
        x0, x1, y0, y1 = (float(r[k]) for k in ("XMin", "XMax", "YMin", "YMax"))
        bbox = [x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h]
        flags = {k: int(r[k]) for k in ("IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside")
                 if k in r and r[k] not in ("", None)}
        annotations.append({"id": len(annotations) + 1, "image_id": number[r["ImageID"]],
                            "category_id": int(r["category_id"]), "bbox": bbox, "area": bbox[2] * bbox[3],
                            "iscrowd": flags.get("IsGroupOf", 0), **flags})
    return {"info": {"dataset": "openimages_mlperf", "version": "v6"}, "licenses": [],
            "categories": [{"id": i, "name": c, "supercategory": None} for i, c in enumerate(classes)],
            "images": images, "annotations": annotations}


def download_images(split: str, image_ids: list[str], dest: Path, workers: int) -> None:
    try:
        import boto3
        import botocore
        from botocore.config import Config
    except ImportError:
        raise UserError("downloading OpenImages needs boto3: pip install boto3 (MLPerf's tools use it too)") from None
    dest.mkdir(parents=True, exist_ok=True)
    bucket = boto3.resource("s3", config=Config(signature_version=botocore.UNSIGNED)).Bucket(BUCKET)
    todo = [i for i in image_ids if not (dest / f"{i}.jpg").is_file()]

    def one(image_id: str) -> None:
        tmp = dest / f".{image_id}.jpg.part"
        try:
            bucket.download_file(f"{split}/{image_id}.jpg", str(tmp))
        except botocore.exceptions.ClientError as exc:
            tmp.unlink(missing_ok=True)
            raise UserError(f"s3://{BUCKET}/{split}/{image_id}.jpg: download failed ({exc})") from None
        os.replace(tmp, dest / f"{image_id}.jpg")

    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(image_ids), initial=len(image_ids) - len(todo), desc=f"downloading {split}") as bar:
        for fut in as_completed([pool.submit(one, i) for i in todo]):
            fut.result()
            bar.update(1)


def write_new_json(path: Path, data: dict) -> None:
    if path.exists():
        raise UserError(f"{path}: already exists; it is kept -- move it away to regenerate it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def validation(dataset_dir: Path, max_images: int | None, seed: int, workers: int) -> None:
    classes = parse_mlperf_classes(fetch_text(CLASSES_SCRIPT_URL))
    target = dataset_dir / "annotations" / "openimages-mlperf.json"
    if target.exists():
        raise UserError(f"{target}: already exists; it is kept -- move it away to regenerate it")
    image_ids, rows = select_validation(fetch_text(BOXES_URL), fetch_text(CLASS_MAP_URL), classes)
    if max_images is not None:
        import numpy as np

        # As MLPerf's openimages.py --max-images --seed 42 (legacy RandomState, with replacement).
        np.random.seed(seed)
        picked = np.random.choice(len(image_ids), size=max_images)
        image_ids = sorted({image_ids[i] for i in picked})
    image_dir = dataset_dir / "validation" / "data"
    download_images("validation", image_ids, image_dir, workers)
    write_new_json(target, to_coco(image_ids, rows, image_dir, classes))
    print(f"OpenImages MLPerf validation: {len(image_ids)} images, annotations in {target}")


def calibration(dataset_dir: Path, workers: int) -> None:
    ids = parse_calibration_list(fetch_text(CALIBRATION_LIST_URL))
    classes = parse_mlperf_classes(fetch_text(CLASSES_SCRIPT_URL))
    image_dir = dataset_dir / "calibration" / "data"
    download_images("train", ids, image_dir, workers)
    coco = to_coco(sorted(ids), [], image_dir, classes)
    write_new_json(dataset_dir / "annotations" / "openimages-calibration-mlperf.json", coco)
    print(f"OpenImages MLPerf calibration: {len(ids)} images in {image_dir}")
