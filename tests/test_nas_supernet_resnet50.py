"""The automatic super-network on torchvision ResNet-50 and on the RetinaNet backbone
(resnext50_32x4d + FPN): block discovery, max sub-network = original, width
re-organisation invariance, exact extraction, analytic MACs/params, export round trip.
ResNet-50 runs at 64x64 so the whole file takes seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from mlperf_bnas.errors import UserError
from mlperf_bnas.nas.export import load_subnet, save_subnet
from mlperf_bnas.nas.supernet.network import SuperNetwork

ELASTICITY = {"width": {"width_multipliers": [1.0, 0.75, 0.5, 0.25]}}


@pytest.fixture(scope="module")
def resnet50():
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    # Non-trivial BN statistics, so slicing/permutation mistakes show up in the outputs.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def supernet(resnet50):
    net = SuperNetwork.from_model(resnet50, ELASTICITY, torch.zeros(1, 3, 64, 64))
    net.model.eval()
    return net


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_blocks_are_the_non_first_bottlenecks(supernet):
    assert [len(g) for g in supernet.block_groups] == [2, 3, 5, 2]
    assert len(supernet.blocks) == 12
    # Each block runs from one Bottleneck's output ReLU to the next one's.
    assert supernet.blocks[0].entry == "layer1_0_relu_2" and supernet.blocks[0].exit == "layer1_1_relu_2"
    assert supernet.blocks[-1].exit == "layer4_2_relu_2"
    assert all(b.num_ops == 10 for b in supernet.blocks)


def test_width_groups_tie_residual_streams(supernet):
    channels = sorted(g.channels for g in supernet.width_groups if len(g.producers) > 1)
    assert channels == [256, 512, 1024, 2048]  # one group per stage's residual stream
    stream = next(g for g in supernet.width_groups if g.channels == 2048)
    assert "fc" in stream.consumers and "layer4.0.downsample.0" in stream.producers
    assert all(w % 8 == 0 for g in supernet.width_groups for w in g.widths)
    assert all(g.widths[0] == g.channels for g in supernet.width_groups)


def test_max_subnet_equals_original(supernet, resnet50, images):
    supernet.activate(supernet.space.maximum())
    with torch.no_grad():
        assert torch.equal(supernet.model(images), resnet50(images))


@pytest.mark.slow
def test_random_subnet_extraction_is_exact(supernet, images):
    rng = np.random.default_rng(0)
    for _ in range(2):
        config = supernet.space.sample(rng)
        supernet.activate(config)
        with torch.no_grad():
            expected = supernet.model(images)
            subnet = supernet.extract_subnet(config)
            got = subnet(images)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        assert not any(isinstance(m, type(supernet.model.conv1)) for m in subnet.modules()), "elastic layer left"
        assert supernet.params(config) == sum(p.numel() for p in subnet.parameters())
        assert supernet.macs(config) == _count_macs(subnet, images[:1])
    supernet.activate(supernet.space.maximum())


def _count_macs(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def test_minimum_is_much_cheaper(supernet, resnet50):
    space = supernet.space
    assert supernet.params(space.maximum()) == sum(p.numel() for p in resnet50.parameters())
    assert supernet.macs(space.maximum()) / supernet.macs(space.minimum()) > 10
    assert space.encode(space.minimum()) == [len(g.choices) - 1 for g in space.genes]


@pytest.mark.slow
def test_reorganisation_keeps_full_width_outputs(resnet50, images):
    for method in ("L1", "geometric_median"):
        net = SuperNetwork.from_model(resnet50, {"width": {"width_multipliers": [1.0, 0.5],
                                                           "filter_importance": method}}, images[:1])
        net.model.eval()
        conv = net.model.get_submodule("layer1.0.conv1")
        before = conv.weight.detach().clone()
        net.reorganize_weights()
        with torch.no_grad():
            # Same function; only the float summation order inside each layer changes.
            torch.testing.assert_close(net.model(images), resnet50(images), rtol=1e-3, atol=1e-3)
        assert not torch.equal(before, conv.weight), "reorganisation permuted nothing"
        # Channels are sorted by importance: the kept half of a group holds the largest filters.
        w = conv.weight.detach().abs().sum(dim=(1, 2, 3))
        if method == "L1":
            assert torch.all(w[:-1] >= w[1:])


def test_subnet_checkpoint_round_trip(supernet, images, tmp_path):
    config = supernet.space.sample(np.random.default_rng(3))
    subnet = supernet.extract_subnet(config)
    path = tmp_path / "subnet.pt"
    save_subnet(subnet, config, "resnet50", {"size": 64}, path)
    loaded = load_subnet(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), subnet(images))
    assert loaded.subnet_config == config


def test_bad_subnet_config_is_a_user_error(supernet):
    with pytest.raises(UserError, match="width"):
        supernet.activate({"width": [3] * len(supernet.width_groups)})
    with pytest.raises(UserError, match="depth group"):
        supernet.activate({"depth": [0]})  # not the trailing block of its group


@pytest.mark.slow
def test_retinanet_backbone_supernet():
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7
    from torchvision.ops.misc import FrozenBatchNorm2d

    torch.manual_seed(0)
    body = torchvision.models.resnext50_32x4d(norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256)).eval()
    x = torch.randn(1, 3, 64, 64)
    net = SuperNetwork.from_model(backbone, ELASTICITY, x)
    assert [len(g) for g in net.block_groups] == [2, 3, 5, 2]
    assert net.width_groups, "residual streams of the backbone should be width-elastic"
    net.model.eval()
    with torch.no_grad():
        expected, got = backbone(x), net.model(x)
        assert list(got) == list(expected)
        for key in expected:
            assert torch.equal(got[key], expected[key])
        config = net.space.minimum()
        net.activate(config)
        active = net.model(x)
        subnet = net.extract_subnet(config)
        for key, value in subnet(x).items():
            torch.testing.assert_close(value, active[key], rtol=1e-5, atol=1e-5)
            assert value.shape == expected[key].shape  # FPN outputs keep their 256 channels


def test_resnet50_benchmark_reads_an_exported_subnet(supernet, images, tmp_path):
    """The ResNet-50 benchmark's CHECKPOINT= loader delegates to load_subnet and takes the
    sub-network's own preprocessing."""
    from mlperf_bnas.models.entry import create_model
    from mlperf_bnas.nas.train.steps import preprocess_for
    from mlperf_bnas.pipeline import build_module, checkpoint_spec

    config = supernet.space.minimum()
    subnet = supernet.extract_subnet(config)
    path = tmp_path / "subnet.pt"
    save_subnet(subnet, config, "resnet50", preprocess_for("resnet50", (1, 3, 64, 64)), path)
    entry = create_model("resnet50", {})
    spec = checkpoint_spec(entry, path)
    assert spec.size == 64 and spec.resize == 73
    built = build_module(entry, path)
    with torch.no_grad():
        torch.testing.assert_close(built(images), subnet(images))
