"""The benchmark's bash scripts: strict mode, environment contract, calibration-list download."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import REPO

BENCH = REPO / "code" / "resnet50-openvino"
SCRIPTS = ["run_offline.sh", "run_server.sh", "run_offline_accuracy.sh", "run_server_accuracy.sh",
           "run_singlestream.sh", "run_singlestream_accuracy.sh", "run_multistream.sh", "run_multistream_accuracy.sh",
           "run_calibration.sh", "download_imagenet_calibration_list.sh"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_shape(name):
    text = (BENCH / name).read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert 'source "$REPO/tools/env.sh" "$HERE"' in text
    # Performance runs go through tools/env.sh's run_performance (re-sized once when the machine sped up).
    assert [ln for ln in text.splitlines() if ln.strip()][-1].startswith(("exec mlperf-bnas ", "run_performance "))
    assert "eval " not in text
    assert os.access(BENCH / name, os.X_OK)
    subprocess.run(["bash", "-n", str(BENCH / name)], check=True)


def _download(tmp_path, lines: int):
    src = tmp_path / "list.txt"
    src.write_text("".join(f"ILSVRC2012_val_{i + 1:08d}.JPEG\n" for i in range(lines)))
    env = dict(os.environ, OUTPUT_DIR=str(tmp_path / "out"), CALIBRATION_LIST_URL=src.as_uri(), SYSTEM="t")
    return subprocess.run(["bash", str(BENCH / "download_imagenet_calibration_list.sh")], env=env,
                          capture_output=True, text=True)


def test_download_installs_a_checked_list(tmp_path):
    proc = _download(tmp_path, 500)
    assert proc.returncode == 0, proc.stderr
    dest = tmp_path / "out" / "build" / "resnet50-openvino" / "calibration" / "cal_image_list_option_1.txt"
    assert len(dest.read_text().splitlines()) == 500
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]     # no temp file left


def test_download_refuses_a_wrong_list(tmp_path):
    proc = _download(tmp_path, 3)
    assert proc.returncode != 0 and "expected 500" in proc.stderr
    cal = tmp_path / "out" / "build" / "resnet50-openvino" / "calibration"
    assert not any(cal.iterdir())
