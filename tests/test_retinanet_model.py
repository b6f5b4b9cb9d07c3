"""RetinaNet model: seeded detections, the FPN-level variant, checkpoints, quantization rewrites,
post-processing responses. Small images (128-256 px) keep these in seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlperf_bnas.data.synthetic import synthetic_image
from mlperf_bnas.errors import UserError
from mlperf_bnas.models.retinanet import (RetinaNetOptions, build_retinanet, load_checkpoint,
                                          unshare_for_quantization)
from mlperf_bnas.models.retinanet_postprocess import DetectionSettings, anchors_for, detect, responses

SIZE = 192


def _images(n: int, size: int = SIZE) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(synthetic_image(11, i).resize((size, size)), dtype=np.uint8))
                        .permute(2, 0, 1) for i in range(n)])


@pytest.fixture(scope="module")
def model():
    return build_retinanet(RetinaNetOptions(image_size=SIZE))


@pytest.fixture(scope="module")
def outputs(model):
    with torch.no_grad():
        return model(_images(2))


@pytest.mark.slow
def test_seeded_model_detects_above_threshold_and_depends_on_the_image(outputs):
    cls, reg, geometry = outputs
    dets = detect(cls, reg, geometry.tolist())
    for boxes, scores, labels in dets:
        assert len(scores) > 10 and float(scores.min()) > 0.05
        assert ((boxes[:, 2] - boxes[:, 0]) > 1).float().mean() > 0.5      # real boxes, not clipped slivers
        assert len(set(labels.tolist())) > 3
    assert not torch.equal(dets[0][0][:10], dets[1][0][:10])


@pytest.mark.slow
def test_seeded_weights_are_deterministic(model):
    again = build_retinanet(RetinaNetOptions(image_size=SIZE))
    x = _images(1)
    with torch.no_grad():
        assert torch.equal(model(x)[0], again(x)[0])


@pytest.mark.slow
def test_geometry_matches_the_feature_maps(model):
    with torch.no_grad():
        feats = model.features(_images(1))
    g = model.geometry.tolist()
    assert [(int(g[i]), int(g[i + 1]), int(g[i + 2])) for i in range(2, len(g), 3)] == \
        [(lv, f.shape[-2], f.shape[-1]) for lv, f in zip((3, 4, 5, 6, 7), feats)]


@pytest.mark.slow
@pytest.mark.parametrize("levels", [(3, 4, 5, 6), (4, 5, 6, 7)])
def test_model_with_one_fpn_level_removed_runs(levels):
    m = build_retinanet(RetinaNetOptions(image_size=SIZE, fpn_levels=levels))
    assert not any(name.endswith("p7.weight") for name, _ in m.named_parameters()) or 7 in levels
    with torch.no_grad():
        cls, reg, geometry = m(_images(1))
    anchors, per_level, _ = anchors_for(geometry.tolist())
    assert len(per_level) == 4 and cls.shape[1] == anchors.shape[0] == reg.shape[1]
    assert len(detect(cls, reg, geometry.tolist())[0][1]) > 0


def test_invalid_fpn_levels_rejected():
    with pytest.raises(ValueError, match="consecutive"):
        RetinaNetOptions(fpn_levels=(3, 5, 6))


@pytest.mark.slow
def test_unsharing_rewrites_are_bit_identical(model, outputs):
    unshared = unshare_for_quantization(model)
    # No module object is reachable under two names any more (what the rewrite is for).
    seen: dict[int, str] = {}
    for name, mod in unshared.named_modules(remove_duplicate=False):
        assert seen.setdefault(id(mod), name) == name, f"{name} shares a module with {seen[id(mod)]}"
    with torch.no_grad():
        again = unshared(_images(2))
    assert torch.equal(again[0], outputs[0]) and torch.equal(again[1], outputs[1])


@pytest.mark.slow
def test_checkpoint_in_mlperf_training_format_loads(model, tmp_path, outputs):
    # MLPerf training saves {"model": state_dict} with torchvision's old (v1) key names.
    old = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        for prefix in ("backbone.fpn.inner_blocks.", "backbone.fpn.layer_blocks."):
            if key.startswith(prefix):
                idx, _, leaf = key[len(prefix):].split(".")
                key = f"{prefix}{idx}.{leaf}"
        for prefix in ("head.classification_head.conv.", "head.regression_head.conv."):
            if key.startswith(prefix):
                idx, _, leaf = key[len(prefix):].split(".")
                key = f"{prefix}{int(idx) * 2}.{leaf}"
        old[key] = value.clone()
    assert "head.classification_head.conv.6.weight" in old
    path = tmp_path / "retinanet.pth"
    torch.save({"model": old, "epoch": torch.tensor(10)}, path)
    loaded = build_retinanet(RetinaNetOptions(image_size=SIZE), path)
    with torch.no_grad():
        assert torch.equal(loaded(_images(2))[0], outputs[0])


@pytest.mark.slow
def test_wrong_shape_checkpoint_is_a_clear_error(tmp_path):
    other = build_retinanet(RetinaNetOptions(image_size=SIZE, num_classes=91))
    path = tmp_path / "coco91.pth"
    torch.save(other.state_dict(), path)
    target = build_retinanet(RetinaNetOptions(image_size=SIZE))
    with pytest.raises(UserError, match="wrong shape") as err:
        load_checkpoint(target, path)
    assert str(path) in str(err.value) and "cls_logits" in str(err.value)


@pytest.mark.slow
def test_pickled_whole_model_is_refused_without_running_it(tmp_path):
    path = tmp_path / "whole.pth"
    torch.save(torch.nn.Linear(2, 2), path)          # a pickled module, like MLPerf's file
    target = build_retinanet(RetinaNetOptions(image_size=128))
    with pytest.raises(UserError, match="weights-only") as err:
        load_checkpoint(target, path)
    assert str(path) in str(err.value)


@pytest.mark.slow
def test_responses_are_mlperf_rows(outputs):
    cls, reg, geometry = outputs
    rows = responses((cls, reg, geometry), np.array([5, 9]))
    assert len(rows) == 2
    for qsl_idx, flat in zip((5, 9), rows):
        assert flat.dtype == np.float32 and len(flat) % 7 == 0 and len(flat) > 0
        r = flat.reshape(-1, 7)
        assert (r[:, 0] == qsl_idx).all()
        assert (r[:, 1:5] >= 0).all() and (r[:, 1:5] <= 1).all()
        assert (r[:, 3] >= r[:, 1]).all() and (r[:, 4] >= r[:, 2]).all()     # ymax >= ymin, xmax >= xmin
        assert (r[:, 5] >= 0.05).all() and (np.diff(r[:, 5]) <= 0).all()     # best first
        assert np.array_equal(r[:, 6], np.round(r[:, 6])) and r[:, 6].max() < 264
    # The box order is y, x: compare with detect()'s x1y1x2y2 in input pixels.
    boxes, scores, _ = detect(cls, reg, geometry.tolist())[0]
    np.testing.assert_allclose(rows[0].reshape(-1, 7)[0, 1:5],
                               (boxes[0][[1, 0, 3, 2]] / SIZE).numpy(), rtol=1e-6)


def _reference_detect(cls, reg, geometry, settings: DetectionSettings):
    """torchvision's own ``RetinaNet.postprocess_detections`` (MLPerf's reference algorithm)."""
    from types import SimpleNamespace

    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.retinanet import RetinaNet

    anchors, per_level, image_shape = anchors_for(geometry)
    owner = SimpleNamespace(score_thresh=settings.score_threshold, topk_candidates=settings.topk_candidates,
                            nms_thresh=settings.nms_threshold, detections_per_img=settings.detections_per_image,
                            box_coder=det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0)))
    heads = {"cls_logits": list(cls.split(per_level, dim=1)), "bbox_regression": list(reg.split(per_level, dim=1))}
    n = cls.shape[0]
    return RetinaNet.postprocess_detections(owner, heads, [list(anchors.split(per_level))] * n, [image_shape] * n)


@pytest.mark.parametrize("shift, topk", [(0.0, 1000), (0.0, 40), (-4.0, 1000), (-9.0, 1000)])
def test_detect_equals_torchvisions_postprocessing(outputs, shift, topk):
    """The fast path (top-k over candidate anchors only) keeps exactly the reference's detections:
    with a quarter of all scores above 0.05 (seeded heads), with few (shifted logits), with none,
    and with a top-k smaller than one level's anchors."""
    cls, reg, geometry = outputs
    cls = cls + shift
    settings = DetectionSettings(topk_candidates=topk)
    ours = detect(cls, reg, geometry.tolist(), settings)
    reference = _reference_detect(cls, reg, geometry.tolist(), settings)
    assert sum(len(s) for _, s, _ in ours) == sum(len(r["scores"]) for r in reference)
    if shift > -9:
        assert sum(len(s) for _, s, _ in ours) > 0
    for (boxes, scores, labels), ref in zip(ours, reference):
        torch.testing.assert_close(scores, ref["scores"])
        torch.testing.assert_close(boxes, ref["boxes"])
        assert torch.equal(labels, ref["labels"])
