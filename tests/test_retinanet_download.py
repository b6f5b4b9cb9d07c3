"""The OpenImages download helpers' parsing and COCO export, offline (the download itself needs internet)."""

from __future__ import annotations

import pytest

from mlperf_bnas.data.openimages import OpenImages
from mlperf_bnas.data.openimages_download import (parse_calibration_list, parse_mlperf_classes, select_validation,
                                                  to_coco, write_new_json)
from mlperf_bnas.data.synthetic import synthetic_image
from mlperf_bnas.errors import UserError

CLASSES = [f"Thing {i}" for i in range(262)] + ["Egg (Food)", "Kitchen & dining room table"]


def test_class_array_parsed_like_bash():
    body = " ".join(f"'{c}'" for c in CLASSES)
    script = f"#!/bin/bash\nMLPERF_CLASSES=({body}\n\t)\n\npython3 openimages.py\n"
    assert parse_mlperf_classes(script) == CLASSES
    with pytest.raises(UserError, match="expected 264"):
        parse_mlperf_classes("MLPERF_CLASSES=('A' 'B')\n")


def test_calibration_list_needs_500_ids():
    assert parse_calibration_list("".join(f"{i:016x}.jpg\n" for i in range(500)))[:2] == [f"{0:016x}", f"{1:016x}"]
    with pytest.raises(UserError, match="expected 500"):
        parse_calibration_list("abc.jpg\n")


def test_validation_selection_and_coco_export(tmp_path):
    class_map = "/m/a,Thing 3\n/m/b,Not MLPerf\n/m/c,Egg (Food)\n"
    header = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside\n"
    rows = ["ffff000000000001,x,/m/a,1,0.1,0.5,0.2,0.6,0,0,0,0,0",
            "0000000000000002,x,/m/b,1,0.1,0.5,0.2,0.6,0,0,0,0,0",      # class not in the list: image dropped
            "aaaa000000000003,x,/m/c,1,0.0,1.0,0.0,0.5,1,0,1,0,0"]
    ids, selected = select_validation(header + "\n".join(rows) + "\n", class_map, CLASSES)
    assert ids == ["aaaa000000000003", "ffff000000000001"]            # sorted: MLPerf's QSL order
    data = tmp_path / "oi" / "validation" / "data"
    data.mkdir(parents=True)
    for n, i in enumerate(ids):
        synthetic_image(1, n).resize((200, 100)).save(data / f"{i}.jpg")
    coco = to_coco(ids, selected, data, CLASSES)
    assert [im["id"] for im in coco["images"]] == [1, 2] and coco["images"][0]["file_name"] == "aaaa000000000003.jpg"
    a = coco["annotations"]
    assert [x["category_id"] for x in a] == [262, 3]
    assert a[0]["bbox"] == [0.0, 0.0, 200.0, 50.0] and a[0]["iscrowd"] == 1
    path = tmp_path / "oi" / "annotations" / "openimages-mlperf.json"
    write_new_json(path, coco)
    ds = OpenImages.open(tmp_path / "oi", OpenImages.Options())
    assert len(ds) == 2 and ds.items()[1].name == "ffff000000000001.jpg"
    with pytest.raises(UserError, match="already exists"):
        write_new_json(path, coco)
