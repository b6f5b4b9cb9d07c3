"""Measurement fields and calibration notes come from the build record and, for a BootstrapNAS
sub-network, from the checkpoint's own metadata (read with weights_only=True)."""

from __future__ import annotations

import json

import pytest
import torch

from mlperf_bnas.config import load_config
from mlperf_bnas.errors import UserError
from mlperf_bnas.submission import provenance
from conftest import REPO

BENCH = REPO / "code" / "resnet50-openvino"


def _record(out, weights_path, source):
    path = out / "build" / "resnet50-openvino" / "model" / "int8" / "quantization.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({
        "benchmark": "resnet50-openvino", "model": "resnet50", "dataset": "imagenet", "precision": "int8",
        "weights": {"path": str(weights_path), "sha256": "ab" * 32, "source": source},
        "calibration": {"count": 3, "qsl_indices": [0, 1, 2], "names": ["x1.JPEG", "x2.JPEG", "x3.JPEG"]},
        "quantization": {"tool": "nncf", "nncf_version": "3.4.0", "config": {"preset": "mixed"},
                         "calibration_samples_used": 3},
        "input": {"shape": "[?,224,224,3]", "element_type": "u8"}, "openvino_version": "2026.4.1"}))
    return path


def test_subnet_checkpoint_is_documented(tmp_path):
    ckpt = tmp_path / "bnas_a.pt"
    torch.save({"format": "mlperf-bnas-subnet", "base_model": "resnet50",
                "subnet_config": {"width": [0.5, 0.75], "depth": [1, 0]},
                "structure": {"removed_blocks": [["layer1.2", "layer1.2.relu"]]},
                "state_dict": {"fc.weight": torch.zeros(2, 2)}, "preprocess": {"resize": 256}}, ckpt)
    _record(tmp_path, ckpt, "user checkpoint")
    prov = provenance.read(tmp_path, load_config(BENCH), "int8")
    assert prov.subnet["subnet_config"] == {"width": [0.5, 0.75], "depth": [1, 0]}
    assert "state_dict" not in prov.subnet
    fields = provenance.measurement_fields(prov)
    assert fields["retraining"].startswith("yes: BootstrapNAS")
    assert "BootstrapNAS sub-network" in fields["weight_transformations"]
    assert "preset mixed, 3 calibration samples" in fields["weight_transformations"]
    assert fields["starting_weights_filename"].startswith("bnas_a.pt (sha256 abab")
    assert fields["input_data_types"] == "u8 [?,224,224,3]"
    section = provenance.calibration_section("resnet50", load_config(BENCH), prov)
    assert '"width": [0.5, 0.75]' in section and "x1.JPEG, x2.JPEG, x3.JPEG" in section


def test_seeded_weights_are_said_to_be_seeded(tmp_path):
    _record(tmp_path, tmp_path / "resnet50-seed0.pt", "seeded random weights (no CHECKPOINT)")
    prov = provenance.read(tmp_path, load_config(BENCH), "int8")
    fields = provenance.measurement_fields(prov)
    assert prov.subnet is None and fields["retraining"] == "no"
    assert "seeded random weights" in fields["starting_weights_filename"]


def test_missing_or_mismatched_record_is_refused(tmp_path):
    with pytest.raises(UserError, match="quantization.json: missing"):
        provenance.read(tmp_path, load_config(BENCH), "int8")
    path = _record(tmp_path, tmp_path / "w.pt", "user checkpoint")
    target = path.parents[1] / "fp32" / "quantization.json"
    target.parent.mkdir()
    target.write_text(path.read_text())          # an int8 record where the fp32 one belongs
    with pytest.raises(UserError, match="records precision 'int8', expected 'fp32'"):
        provenance.read(tmp_path, load_config(BENCH), "fp32")


@pytest.mark.parametrize("same_file", [True, False])
def test_the_search_record_beside_the_subnet_is_quoted_only_for_that_file(tmp_path, same_file):
    """nas_record.json beside the checkpoint adds the super-network's hash and the search, when it
    names this very checkpoint (its sha256); a record of another search adds nothing."""
    ckpt = tmp_path / "best_subnet.pt"
    torch.save({"format": "mlperf-bnas-subnet", "base_model": "resnet50", "subnet_config": {"depth": [1]},
                "structure": {"removed_blocks": []}, "state_dict": {}, "preprocess": {}}, ckpt)
    (tmp_path / "nas_record.json").write_text(json.dumps({
        "format": "mlperf-bnas-nas-record/1", "subnet": ckpt.name,
        "subnet_sha256": "ab" * 32 if same_file else "cd" * 32,
        "supernet": {"path": "/x/supernet.pt", "sha256": "ef" * 32}, "accuracy_metric": "top-1 %",
        "metrics": {"accuracy": 75.0, "latency": 2.0}, "reference_metrics": {"accuracy": 76.0},
        "selection_rule": "lowest latency ...",
        "search": {"tactic": "evolutionary", "algorithm": "nsga2", "optimization_metrics": ["accuracy", "latency"],
                   "full_evaluations": 200}}))
    _record(tmp_path, ckpt, "user checkpoint")
    prov = provenance.read(tmp_path, load_config(BENCH), "int8")
    fields = provenance.measurement_fields(prov)
    section = provenance.calibration_section("resnet50", load_config(BENCH), prov)
    if same_file:
        assert prov.subnet["search"]["supernet_sha256"] == "ef" * 32
        assert "super-network sha256 " + "ef" * 32 in fields["weight_transformations"]
        assert "evolutionary/nsga2 over accuracy, latency, 200 sub-networks measured" in fields["weight_transformations"]
        assert "ef" * 32 in section and "nsga2" in section
    else:
        assert "search" not in prov.subnet and "ef" * 32 not in fields["weight_transformations"] + section
