"""PreprocessSpec: equal to a reference computation (torchvision's eval transforms), stable keys."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.data.synthetic import synthetic_image
from mlperf_bnas.models import create_model

MEAN = (123.675, 116.28, 103.53)
SCALE = (58.395, 57.12, 57.375)


def _reference(img: Image.Image) -> np.ndarray:
    """torchvision's ImageNet eval transform (PIL, bilinear), as uint8 HWC RGB."""
    t = transforms.Compose([transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR),
                            transforms.CenterCrop(224)])
    return np.asarray(t(img.convert("RGB")), dtype=np.uint8)


@pytest.mark.parametrize("size", [(300, 260), (260, 300), (256, 256), (500, 333), (241, 389)])
def test_resize_crop_equals_torchvision(size):
    img = synthetic_image(7, sum(size)).resize(size, Image.BILINEAR)
    spec = PreprocessSpec(size=224, resize=256, channel_order="RGB")
    np.testing.assert_array_equal(spec.apply(img), _reference(img))


def test_resnet50_spec_is_bgr_nhwc_uint8_of_the_reference():
    spec = create_model("resnet50", {}).preprocess_spec()
    assert (spec.size, spec.resize, spec.layout, spec.dtype, spec.channel_order) == (224, 256, "NHWC", "uint8", "BGR")
    img = synthetic_image(3, 11)
    out = spec.apply(img)
    np.testing.assert_array_equal(out, _reference(img)[:, :, ::-1])


def test_float_input_equals_torchvision_normalize():
    """What the IR's in-graph preprocessing computes, done on the host: equal to ToTensor+Normalize."""
    spec = create_model("resnet50", {}).preprocess_spec()
    img = synthetic_image(5, 2)
    ours = spec.to_float_nchw(spec.apply(img)[None])[0]
    ref = transforms.Compose([transforms.ToTensor(),
                              transforms.Normalize([m / 255 for m in MEAN], [s / 255 for s in SCALE])])(
        Image.fromarray(_reference(img)))
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-5, atol=1e-5)


def test_normalize_in_cache_and_nchw():
    img = synthetic_image(1, 1)
    spec = PreprocessSpec(size=224, resize=256, layout="NCHW", dtype="float32", mean=MEAN, scale=SCALE,
                          normalize="cache")
    out = spec.apply(img)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    expected = (_reference(img).astype(np.float32) - np.array(MEAN, np.float32)) / np.array(SCALE, np.float32)
    np.testing.assert_allclose(out, expected.transpose(2, 0, 1), rtol=1e-6)


def test_key_is_stable_and_changes_with_every_field():
    base = PreprocessSpec(size=224, resize=256, channel_order="BGR", mean=MEAN, scale=SCALE)
    assert base.key == PreprocessSpec(size=224, resize=256, channel_order="BGR", mean=list(MEAN),
                                      scale=list(SCALE)).key
    assert PreprocessSpec.from_dict(base.to_dict()) == base
    changes = {"size": 192, "resize": 288, "interpolation": "bicubic", "layout": "NCHW", "channel_order": "RGB",
               "mean": (0.0, 0.0, 0.0), "scale": (1.0, 1.0, 1.0), "code_version": 99}
    keys = {base.key}
    for name, value in changes.items():
        keys.add(dataclasses.replace(base, **{name: value}).key)
    assert len(keys) == len(changes) + 1


@pytest.mark.parametrize("bad", [dict(size=0), dict(size=224, resize=100), dict(size=224, layout="HWC"),
                                 dict(size=224, mean=(1, 2, 3)), dict(size=224, channel_order="RGBA")])
def test_invalid_spec_is_rejected(bad):
    with pytest.raises(ValueError):
        PreprocessSpec(**bad)


def test_synthetic_images_are_deterministic_and_varied():
    a, b = synthetic_image(0, 4), synthetic_image(0, 4)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(synthetic_image(0, 5)), np.asarray(a)) or a.size != synthetic_image(0, 5).size
    # Smooth, not noise: neighbouring pixels are close on average.
    arr = np.asarray(a, dtype=np.float32)
    assert np.abs(np.diff(arr, axis=1)).mean() < 20


@pytest.mark.slow
def test_seeded_resnet50_predictions_vary():
    """Seeded weights must not answer one class for everything (synthetic labels would be useless)."""
    entry = create_model("resnet50", {"seed": 0})
    model = entry.build(None)
    spec = entry.preprocess_spec()
    x = entry.to_torch_input(np.stack([spec.apply(synthetic_image(42, i)) for i in range(12)]), spec)
    with torch.no_grad():
        labels = model(x).argmax(1).tolist()
    assert len(set(labels)) >= 4, labels
