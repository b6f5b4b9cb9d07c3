"""OpenImages mAP on constructed cases with known answers, and bad OpenImages input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO, run_cli
from mlperf_bnas.accuracy.coco_map import score
from mlperf_bnas.data.openimages import OpenImages
from mlperf_bnas.data.synthetic import synthetic_image
from mlperf_bnas.errors import UserError

BENCH = REPO / "code" / "retinanet-pytorch-cpu"
# (width, height) per image and ground-truth boxes [x, y, w, h, category]
SIZES = [(400, 300), (320, 480), (500, 500)]
BOXES = [[[20, 30, 100, 80, 3], [200, 100, 150, 120, 17]],
         [[10, 10, 200, 300, 3]],
         [[50, 60, 100, 100, 250], [300, 300, 120, 150, 7], [10, 400, 60, 60, 3]]]


def _write_dataset(root, sizes=SIZES, boxes=BOXES):
    (root / "validation" / "data").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for i, ((w, h), bxs) in enumerate(zip(sizes, boxes)):
        name = f"{i:016x}.jpg"
        synthetic_image(5, i).resize((w, h)).save(root / "validation" / "data" / name, "JPEG")
        images.append({"id": 100 + i, "file_name": name, "height": h, "width": w})
        for x, y, bw, bh, c in bxs:
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": c,
                                "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
    cats = [{"id": c, "name": f"c{c}"} for c in range(264)]
    (root / "annotations" / "openimages-mlperf.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    return root


def _log(path, per_image):
    """mlperf_log_accuracy.json from {qsl_idx: [(x, y, w, h, score, label), ...]} in pixels."""
    entries = []
    for idx, dets in per_image.items():
        w, h = SIZES[idx]
        rows = [[idx, y / h, x / w, (y + bh) / h, (x + bw) / w, s, c] for x, y, bw, bh, s, c in dets]
        data = np.asarray(rows, np.float32).reshape(-1).tobytes().hex()
        entries.append({"seq_id": idx, "qsl_idx": idx, "data": data})
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture
def dataset(tmp_path):
    return OpenImages.open(_write_dataset(tmp_path / "oi"), OpenImages.Options())


def _perfect():
    return {i: [(x, y, bw, bh, 0.9, c) for x, y, bw, bh, c in bxs] for i, bxs in enumerate(BOXES)}


def test_perfect_detections_score_100(dataset, tmp_path):
    report = score(_log(tmp_path / "acc.json", _perfect()), dataset)
    assert report.text.rstrip().splitlines()[-1] == "mAP=100.000%"
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in report.text


def test_shifted_boxes_score_lower_and_far_shifts_score_zero(dataset, tmp_path):
    def shifted(dx):
        return {i: [(x + dx * bw, y, bw, bh, 0.9, c) for x, y, bw, bh, c in bxs] for i, bxs in enumerate(BOXES)}

    small = score(_log(tmp_path / "a.json", shifted(0.1)), dataset).metrics["mAP"]
    large = score(_log(tmp_path / "b.json", shifted(0.3)), dataset).metrics["mAP"]
    gone = score(_log(tmp_path / "c.json", shifted(2.0)), dataset).metrics["mAP"]
    assert 0 < large < small < 100
    assert gone == 0.0


def test_wrong_labels_and_missing_images_cost_precision(dataset, tmp_path):
    wrong = {i: [(x, y, bw, bh, 0.9, (c + 1) % 264) for x, y, bw, bh, c in bxs] for i, bxs in enumerate(BOXES)}
    assert score(_log(tmp_path / "w.json", wrong), dataset).metrics["mAP"] == 0.0
    # An image answered with no detection is still evaluated (its boxes are misses).
    partial = _perfect()
    partial[2] = []
    m = score(_log(tmp_path / "p.json", partial), dataset).metrics
    assert 0 < m["mAP"] < 100 and m["no_results"] == 1


def test_duplicates_counted_once(dataset, tmp_path):
    path = _log(tmp_path / "d.json", _perfect())
    entries = json.loads(path.read_text())
    path.write_text(json.dumps(entries + entries[:1]))
    m = score(path, dataset).metrics
    assert m["mAP"] == 100.0 and m["duplicates"] == 1


def test_tool_entry_point_prints_mlperf_format(dataset, tmp_path):
    log = _log(tmp_path / "acc.json", _perfect())
    proc = __import__("subprocess").run(
        [__import__("sys").executable, str(REPO / "tools" / "accuracy_openimages.py"),
         "--mlperf-accuracy-file", str(log), "--openimages-dir", str(dataset.root),
         "--output-file", str(tmp_path / "detections.json")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.rstrip().splitlines()[-1] == "mAP=100.000%"
    # The detections file MLPerf's script writes (json.dump, sorted keys, indent 4), streamed.
    from mlperf_bnas.accuracy.coco_map import detections_from_log
    from mlperf_bnas.loadgen.accuracy_log import entries as log_entries

    images = [{"id": im.id, "height": im.height, "width": im.width} for im in dataset.images]
    expected = detections_from_log(log_entries(log), images)[0]
    assert (tmp_path / "detections.json").read_text() == json.dumps(expected, sort_keys=True, indent=4)
    assert not list(tmp_path.glob(".*.partial"))


# -- bad input ---------------------------------------------------------------------

def _fails(*args, expect):
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    last = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert last and expect in last[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return last[-1]


def _common(out, data):
    return ["--benchmark", str(BENCH), "--output-dir", str(out), "--system", "t", "--data-dir", str(data),
            "--set", "model_options.image_size=128", "--no-progress"]


def test_missing_annotations_file(tmp_path):
    root = _write_dataset(tmp_path / "oi")
    (root / "annotations" / "openimages-mlperf.json").unlink()
    with pytest.raises(UserError, match="annotations file not found"):
        OpenImages.open(root, OpenImages.Options())


def test_annotation_image_mismatch(tmp_path):
    root = _write_dataset(tmp_path / "oi")
    (root / "validation" / "data" / f"{1:016x}.jpg").unlink()
    with pytest.raises(UserError, match=f"{1:016x}.jpg"):
        OpenImages.open(root, OpenImages.Options())
    root2 = _write_dataset(tmp_path / "oi2")
    ann = root2 / "annotations" / "openimages-mlperf.json"
    data = json.loads(ann.read_text())
    data["annotations"][0]["image_id"] = 999
    ann.write_text(json.dumps(data))
    with pytest.raises(UserError, match="image ids not in 'images'"):
        OpenImages.open(root2, OpenImages.Options())


def test_corrupt_image_named_and_earlier_cache_kept(tmp_path):
    root = _write_dataset(tmp_path / "oi")
    out = tmp_path / "out"
    run_cli("dataset", *_common(out, root))
    caches = list((out / "build" / "retinanet-pytorch-cpu" / "cache" / "openimages").glob("*/samples.npy"))
    assert len(caches) == 1
    before = caches[0].read_bytes()
    bad = root / "validation" / "data" / f"{2:016x}.jpg"
    bad.write_bytes(b"not a jpeg at all")
    msg = _fails("dataset", *_common(out, root), expect=str(bad))
    assert "cannot decode" in msg
    assert caches[0].read_bytes() == before          # the earlier cache is untouched
    assert bad.read_bytes() == b"not a jpeg at all"  # and the user's file too


def test_scoring_warns_when_the_detections_outgrow_the_memory(dataset, tmp_path, caplog, monkeypatch):
    """pycocotools holds every detection several times over (2.6-5.3 KB each, measured): the full
    OpenImages set with up to 300 detections an image can need 18-37 GiB. Scoring says so before
    it starts when the machine has less available, naming the command that scores the kept log."""
    from mlperf_bnas.accuracy import coco_map

    here = coco_map.available_memory()                                      # /proc/meminfo's MemAvailable
    assert here is None or here > 0
    log = _log(tmp_path / "acc.json", _perfect())
    monkeypatch.setattr(coco_map, "available_memory", lambda: 10_000)       # 6 detections: 15.6-31.8 KB
    with caplog.at_level("WARNING", logger="mlperf_bnas.accuracy.coco_map"):
        assert score(log, dataset).metrics["mAP"] == 100.0
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "scoring 6 detections with pycocotools" in warning and "tools/accuracy_openimages.py" in warning
    caplog.clear()
    monkeypatch.setattr(coco_map, "available_memory", lambda: 1 << 30)
    with caplog.at_level("WARNING", logger="mlperf_bnas.accuracy.coco_map"):
        score(log, dataset)
    assert not caplog.records
