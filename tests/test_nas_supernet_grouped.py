"""The super-network generator on grouped convolutions (ResNeXt), layers applied several times
(a detection head shared by pyramid levels) and ``elasticity.ignored_scopes``; then on the
MLPerf RetinaNet itself (ResNeXt50-32x4d FPN, at 128x128 to stay small)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.resnet import Bottleneck, ResNet

from mlperf_bnas.errors import UserError
from mlperf_bnas.nas.supernet.elastic import ElasticBatchNorm2d
from mlperf_bnas.nas.supernet.network import SuperNetwork

# Any whole number of channels per group (1), so every multiplier gives a width; the default
# (4 per group, oneDNN's INT8 kernels) is tested on its own below.
WIDTH_DEPTH = {"available_elasticity_dims": ["width", "depth"],
               "width": {"width_multipliers": [1.0, 0.75, 0.5, 0.25], "min_width": 8,
                         "channels_per_group_multiple": 1}}


def _settled(model: nn.Module) -> nn.Module:
    """Random BN statistics, so a wrong channel would change the outputs."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def resnext():
    torch.manual_seed(0)
    return _settled(ResNet(Bottleneck, [2, 3, 2, 2], num_classes=10, groups=8, width_per_group=4))


@pytest.fixture()
def supernet(resnext):
    return SuperNetwork.from_model(resnext, WIDTH_DEPTH, torch.zeros(1, 3, 64, 64))


def _macs_counted(module: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return counter.get_total_flops() // 2


def test_grouped_inner_widths_are_multiples_of_the_groups(supernet):
    blocked = [g for g in supernet.width_groups if g.blocks > 1]
    # conv1 and conv2 outputs of every Bottleneck: one blocked group each.
    assert len(blocked) == 2 * 9
    for group in blocked:
        assert group.blocks == 8 and all(w % 8 == 0 for w in group.widths)
        c = group.channels
        assert group.widths == [c, c * 3 // 4, c // 2, c // 4]
    assert [len(g) for g in supernet.block_groups] == [1, 2, 1, 1]


def test_grouped_widths_keep_four_channels_per_group_by_default(resnext, tmp_path):
    """Default ``channels_per_group_multiple`` 4: every grouped width is a multiple of 4 channels per
    group (oneDNN's INT8 grouped kernels; 3 or 6 per group run its reference kernel, ~100x slower),
    so no sub-network, down to the minimum, has a grouped convolution INT8 runs slowly. The first
    stage (4 per group) is not elastic; the second (8 per group) has 8 and 4."""
    from mlperf_bnas.models.retinanet import slow_int8_grouped_convs

    options = {"available_elasticity_dims": ["width", "depth"],
               "width": {"width_multipliers": [1.0, 0.75, 0.5, 0.25], "min_width": 8}}
    net = SuperNetwork.from_model(resnext, options, torch.zeros(1, 3, 64, 64))
    assert net.options.width.channels_per_group_multiple == 4
    blocked = [g for g in net.width_groups if g.blocks > 1]
    assert len(blocked) == 2 * (9 - 2)       # layer1's two Bottlenecks (4 per group) keep their width
    assert all(w // g.blocks % 4 == 0 for g in blocked for w in g.widths)
    assert {tuple(g.widths) for g in blocked} == {(64, 32), (128, 96, 64, 32), (256, 192, 128, 64)}
    x = torch.randn(2, 3, 64, 64)
    minimum = net.space.minimum()
    assert not slow_int8_grouped_convs(net.extract_subnet(minimum))
    # The old space (any number per group) reaches 2 per group: what the check names.
    old = SuperNetwork.from_model(resnext, WIDTH_DEPTH, x)
    slow = slow_int8_grouped_convs(old.extract_subnet(old.space.minimum()))
    assert slow and all(per_group % 4 for _, per_group in slow)
    # A super-network saved before the option existed loads with its own widths (1 per group).
    old.save(tmp_path / "old.pt")
    ckpt = torch.load(tmp_path / "old.pt", weights_only=True)
    del ckpt["elasticity"]["width"]["channels_per_group_multiple"]
    torch.save(ckpt, tmp_path / "old.pt")
    loaded = SuperNetwork.load(tmp_path / "old.pt", lambda: copy.deepcopy(resnext))
    assert [g.widths for g in loaded.width_groups] == [g.widths for g in old.width_groups]


def test_grouped_subnets_extract_exactly_with_exact_costs(supernet, resnext):
    x = torch.randn(2, 3, 64, 64)
    supernet.model.eval()
    with torch.no_grad():
        assert torch.equal(supernet.model(x), resnext(x))
    for seed in range(3):
        config = supernet.space.sample(np.random.default_rng(seed))
        supernet.activate(config)
        with torch.no_grad():
            expected = supernet.model(x)
        subnet = supernet.extract_subnet(config)
        grouped = [m for m in subnet.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
        assert grouped and all(m.groups == 8 for m in grouped)   # every group kept, each narrower
        with torch.no_grad():
            torch.testing.assert_close(subnet(x), expected, rtol=1e-5, atol=1e-5)
        assert supernet.params(config) == sum(p.numel() for p in subnet.parameters())
        assert supernet.macs(config) == _macs_counted(subnet, x[:1])


def test_reorganisation_moves_channels_within_their_group_only(supernet, resnext):
    x = torch.randn(2, 3, 64, 64)
    supernet.model.eval()
    before = supernet.model.get_submodule("layer1.0.conv2").weight.detach().clone()
    supernet.reorganize_weights()
    with torch.no_grad():
        torch.testing.assert_close(supernet.model(x), resnext(x), rtol=1e-4, atol=1e-4)
    after = supernet.model.get_submodule("layer1.0.conv2").weight.detach()
    assert not torch.equal(before, after)
    # Group g's filters are a permutation of group g's filters before (4 per group here).
    for g in range(8):
        rows_before = {tuple(r.flatten().tolist()) for r in before[4 * g:4 * g + 4].sort(dim=1).values}
        rows_after = {tuple(r.flatten().tolist()) for r in after[4 * g:4 * g + 4].sort(dim=1).values}
        assert rows_before == rows_after


def test_blocked_bn_statistics_change_only_active_channels(supernet):
    config = supernet.space.minimum()
    supernet.activate(config)
    bn = supernet.model.get_submodule("layer1.0.bn2")
    assert isinstance(bn, ElasticBatchNorm2d) and bn.blocks == 8
    mean = bn.running_mean.clone()
    supernet.bn_adapt([torch.randn(4, 3, 64, 64)], 4)
    changed = (bn.running_mean != mean).reshape(8, 4)
    assert changed[:, 0].all() and not changed[:, 1:].any()   # width 8 of 32: channel 0 of each group
    # Training steps (running statistics written back) and gradients through the slices.
    supernet.model.train()
    mean = bn.running_mean.clone()
    supernet.model(torch.randn(2, 3, 64, 64)).sum().backward()
    changed = (bn.running_mean != mean).reshape(8, 4)
    assert changed[:, 0].all() and not changed[:, 1:].any()
    assert supernet.model.get_submodule("layer1.0.conv2").weight.grad is not None


class _TwoLevelDetector(nn.Module):
    """A stem, two pyramid levels and one head applied to both (RetinaNet's shared head)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.down = nn.Conv2d(16, 16, 3, 2, 1)
        self.tower = nn.Sequential(nn.Conv2d(16, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU(),
                                   nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU())
        self.logits = nn.Conv2d(32, 6, 3, 1, 1)

    def forward(self, x):
        p3 = self.stem(x)
        p4 = self.down(p3)
        outs = [self.logits(self.tower(p)).flatten(2) for p in (p3, p4)]
        return torch.cat(outs, dim=2)


def test_a_layer_used_on_several_levels_shares_one_width():
    torch.manual_seed(0)
    model = _settled(_TwoLevelDetector())
    x = torch.randn(2, 3, 16, 16)
    net = SuperNetwork.from_model(model, {"width": {"width_multipliers": [1.0, 0.5], "min_width": 8}}, x)
    producers = {p for g in net.width_groups for p in g.producers}
    assert {"tower.0", "tower.2", "tower.4"} <= producers
    assert "stem.0" in producers and "down" in producers        # both levels read one space
    assert not net.blocks   # the tower is applied twice: skipping it on one level is no block
    net.model.eval()
    config = net.space.minimum()
    net.activate(config)
    with torch.no_grad():
        expected = net.model(x)
        subnet = net.extract_subnet(config)
        torch.testing.assert_close(subnet(x), expected, rtol=1e-5, atol=1e-5)
    assert net.macs(config) == _macs_counted(subnet, x[:1])


def test_ignored_scopes(resnext):
    x = torch.zeros(1, 3, 64, 64)
    full = SuperNetwork.from_model(resnext, WIDTH_DEPTH, x)
    cfg = {**WIDTH_DEPTH, "ignored_scopes": ["conv1", "{re}layer\\d\\.\\d+\\.(conv3|downsample\\.0)", "layer4"]}
    net = SuperNetwork.from_model(resnext, cfg, x)
    producers = [p for g in net.width_groups for p in g.producers]
    assert all(g.blocks == 8 for g in net.width_groups)              # only the grouped inner widths
    assert not any(p.startswith("layer4") for p in producers)
    assert len(net.width_groups) == len([g for g in full.width_groups if g.blocks > 1]) - 2 * 2
    assert net.block_groups == full.block_groups     # ignored_scopes leave depth alone


@pytest.mark.parametrize("section, key", [
    ({"ignored_scopes": "conv1"}, "ignored_scopes"),
    ({"ignored_scopes": ["{re}layer(1"]}, "ignored_scopes"),
])
def test_bad_ignored_scopes(resnext, section, key):
    with pytest.raises(UserError, match=key):
        SuperNetwork.from_model(resnext, section, torch.zeros(1, 3, 64, 64))


@pytest.mark.slow
def test_retinanet_supernet_is_generated_from_the_graph():
    """RetinaNet (one FPN level removed): depth over the ResNeXt Bottlenecks only, inner widths in
    multiples of the 32 groups, FPN and head widths; the maximum is the model, sub-networks
    extract exactly."""
    from mlperf_bnas.models.retinanet import RetinaNetOptions, build_retinanet

    model = build_retinanet(RetinaNetOptions(image_size=128, fpn_levels=(3, 4, 5, 6)))
    x = torch.randint(0, 256, (1, 3, 128, 128), dtype=torch.uint8)
    net = SuperNetwork.from_model(model, WIDTH_DEPTH, x)
    assert [len(g) for g in net.block_groups] == [2, 3, 5, 2]
    assert all(b.entry.startswith("backbone_body_layer") for b in net.blocks)   # never the shared head
    blocked = [g for g in net.width_groups if g.blocks > 1]
    assert len(blocked) == 2 * 16 and all(g.blocks == 32 for g in blocked)
    assert all(w % 32 == 0 for g in blocked for w in g.widths)
    producers = {p for g in net.width_groups for p in g.producers}
    assert {"head.classification_head.conv.0.0", "head.regression_head.conv.3.0",
            "backbone.fpn.inner_blocks.0.0", "backbone.fpn.layer_blocks.0.0"} <= producers
    assert "head.classification_head.cls_logits" not in producers   # its output is the anchors' classes
    net.model.eval()
    with torch.no_grad():
        for got, want in zip(net.model(x), model(x)):
            assert torch.equal(got, want)
        config = net.space.sample(np.random.default_rng(0))
        net.activate(config)
        expected = net.model(x)
        subnet = net.extract_subnet(config)
        for got, want in zip(subnet(x), expected):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert net.macs(config) < net.macs(net.space.maximum())
