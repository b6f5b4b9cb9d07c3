"""ImageNet folder checks and top-1 exactly as MLPerf's accuracy-imagenet.py computes it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mlperf_bnas.accuracy.top1 import top1
from mlperf_bnas.data.imagenet import ImageNet
from mlperf_bnas.data.synthetic import synthetic_image
from mlperf_bnas.errors import UserError
from mlperf_bnas.loadgen.accuracy_log import Entry

from conftest import REPO


def _folder(root, labels):
    root.mkdir(parents=True)
    lines = []
    for i, label in enumerate(labels):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        synthetic_image(0, i, 40, 60).save(root / name, "JPEG")
        lines.append(f"{name} {label}\n")
    (root / "val_map.txt").write_text("".join(lines))
    return root


def test_open_reads_val_map_in_order(tmp_path):
    ds = ImageNet.open(_folder(tmp_path / "inet", [5, 0, 999]), ImageNet.Options())
    assert ds.ground_truth().tolist() == [5, 0, 999]
    assert [it.name for it in ds.items()] == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3)]
    assert ImageNet.open(tmp_path / "inet", ImageNet.Options(count=2)).ground_truth().tolist() == [5, 0]


def test_calibration_list_maps_names_to_indices(tmp_path):
    ds = ImageNet.open(_folder(tmp_path / "inet", [1, 2, 3, 4]), ImageNet.Options())
    cal = tmp_path / "cal.txt"
    cal.write_text("ILSVRC2012_val_00000004.JPEG\nILSVRC2012_val_00000002.JPEG\n")
    assert ds.calibration_indices(cal) == [3, 1]
    with pytest.raises(UserError, match="calibration list"):
        ds.calibration_indices(None)


@pytest.mark.parametrize("damage, message", [
    ("no_folder", "ImageNet folder not found"),
    ("no_val_map", "val_map.txt: not found"),
    ("missing_image", "1 listed image\\(s\\) not found"),
    ("bad_line", "val_map.txt:2: expected '<image file> <class id>'"),
    ("bad_label", "class id 1000 out of range"),
])
def test_bad_folders_fail_with_one_clear_message(tmp_path, damage, message):
    root = _folder(tmp_path / "inet", [1, 2, 3])
    if damage == "no_folder":
        root = tmp_path / "nowhere"
    elif damage == "no_val_map":
        (root / "val_map.txt").unlink()
    elif damage == "missing_image":
        (root / "ILSVRC2012_val_00000002.JPEG").unlink()
    elif damage == "bad_line":
        (root / "val_map.txt").write_text("ILSVRC2012_val_00000001.JPEG 1\nILSVRC2012_val_00000002.JPEG\n")
    elif damage == "bad_label":
        (root / "val_map.txt").write_text("ILSVRC2012_val_00000001.JPEG 1000\n")
    with pytest.raises(UserError, match=message):
        ImageNet.open(root, ImageNet.Options())


def _entry(idx, value, dtype=np.int32):
    return {"seq_id": idx, "qsl_idx": idx, "data": np.array([value], dtype).tobytes().hex().upper()}


def _log(*entries):
    """Log entries as the streaming reader (loadgen/accuracy_log.py) yields them."""
    return [Entry(e["seq_id"], e["qsl_idx"], e["data"]) for e in entries]


def test_top1_hand_computed():
    labels = [3, 1, 4, 1, 5]
    log = [_entry(0, 3), _entry(1, 1), _entry(2, 9), _entry(1, 7),   # duplicate of 1 ignored
           _entry(4, 5)]
    result = top1(_log(*log), labels)
    # seen {0,1,2,4}: good 0,1,4 -> 3 of 4
    assert (result.good, result.total, result.duplicates) == (3, 4, 1)
    assert result.line() == "accuracy=75.000%, good=3, total=4"
    assert top1(_log(_entry(0, 1)), [1]).line() == "accuracy=100.000%, good=1, total=1"
    assert top1(_log(*[_entry(i, 0) for i in range(3)]), [0, 1, 1]).line() == "accuracy=33.333%, good=1, total=3"


def test_accuracy_tool_matches_mlperf_cli(tmp_path):
    (tmp_path / "val_map.txt").write_text("a.JPEG 3\nb.JPEG 1\nc.JPEG 2\n")
    (tmp_path / "log.json").write_text(json.dumps([_entry(0, 3), _entry(1, 0), _entry(2, 2)]))
    out = subprocess.run([sys.executable, str(REPO / "tools" / "accuracy_imagenet.py"),
                          "--mlperf-accuracy-file", str(tmp_path / "log.json"),
                          "--imagenet-val-file", str(tmp_path / "val_map.txt")],
                         capture_output=True, text=True, check=True)
    assert out.stdout == "accuracy=66.667%, good=2, total=3\n"
    # Bad input: the one-line error and exit status of every command (cli.run_command).
    bad = subprocess.run([sys.executable, str(REPO / "tools" / "accuracy_imagenet.py"),
                          "--mlperf-accuracy-file", str(tmp_path / "missing.json"),
                          "--imagenet-val-file", str(tmp_path / "val_map.txt")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert bad.stderr.startswith(f"error: {tmp_path / 'missing.json'}: accuracy log not found")
