"""The super-network of the demo CNN: elastic kernel (OFA transforms), BN re-calibration of
the active channels only, search-space determinism, bad elasticity keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlperf_bnas.errors import UserError
from mlperf_bnas.nas.demo import DIGITS_SIZE, DigitsResNet
from mlperf_bnas.nas.supernet.elastic import ElasticBatchNorm2d
from mlperf_bnas.nas.supernet.network import SuperNetwork

ELASTICITY = {"width": {"min_width": 8, "width_step": 8}, "kernel": {"max_num_kernels": 2}}


@pytest.fixture()
def supernet():
    torch.manual_seed(0)
    return SuperNetwork.from_model(DigitsResNet().eval(), ELASTICITY, torch.zeros(1, 3, DIGITS_SIZE, DIGITS_SIZE))


def test_structure(supernet):
    assert supernet.kernel_sizes == {"conv1": (5, 3)}
    assert [len(g) for g in supernet.block_groups] == [3, 2]
    assert supernet.width_groups[0].widths == [16, 8]
    assert supernet.width_groups[-1].widths == [32, 24, 16, 8]


def test_elastic_kernel_subnet_extracts_exactly(supernet):
    x = torch.randn(4, 3, DIGITS_SIZE, DIGITS_SIZE)
    stem = supernet.model.get_submodule("conv1")
    with torch.no_grad():  # a non-identity transform, as after training
        stem.kernel_transform_5to3.add_(0.05 * torch.randn(9, 9))
    config = supernet.space.maximum()
    config["kernel"] = [3]
    supernet.model.eval()
    supernet.activate(config)
    with torch.no_grad():
        expected = supernet.model(x)
        subnet = supernet.extract_subnet(config)
        torch.testing.assert_close(subnet(x), expected, rtol=1e-5, atol=1e-5)
    plain_stem = subnet.get_submodule("conv1")
    assert plain_stem.kernel_size == (3, 3) and plain_stem.padding == (1, 1)
    assert supernet.macs(config) < supernet.macs(supernet.space.maximum())


def test_bn_adapt_touches_only_active_channels(supernet):
    config = supernet.space.minimum()
    bn = supernet.model.get_submodule("layer2.0.bn2")
    assert isinstance(bn, ElasticBatchNorm2d)
    before_mean, before_var = bn.running_mean.clone(), bn.running_var.clone()
    width = config["width"][4]
    supernet.activate(config)
    batches = [torch.rand(16, 3, DIGITS_SIZE, DIGITS_SIZE) for _ in range(3)]
    supernet.bn_adapt(batches, num_samples=40)
    assert torch.equal(bn.running_mean[width:], before_mean[width:])
    assert torch.equal(bn.running_var[width:], before_var[width:])
    assert not torch.allclose(bn.running_mean[:width], before_mean[:width])
    assert not bn.adapting and bn._accumulated is None


def test_sampling_is_deterministic_and_round_trips(supernet):
    space = supernet.space
    a = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    b = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    for config in a:
        assert space.decode(space.encode(config)) == config
    assert len({str(space.sample(np.random.default_rng(s))) for s in range(20)}) > 10


def test_stage_limits_the_space(supernet):
    supernet.set_stage(["kernel", "depth"], {"depth": 1})
    space = supernet.space
    assert all(len(g.choices) == 1 for g in space.genes if g.name.startswith("width/"))
    assert [g.choices for g in space.genes if g.name.startswith("depth/")] == [(0, 1), (0, 1)]
    assert space.minimum()["depth"] == [2, 4]


@pytest.mark.parametrize("section, key", [
    ({"width": {"min_widht": 8}}, "min_widht"),
    ({"depth": {"min_block_size": 0}}, "min_block_size"),
    ({"kernel": {"max_num_kernels": "3"}}, "max_num_kernels"),
    ({"available_elasticity_dims": ["width", "height"]}, "available_elasticity_dims"),
    ({"depth": {"skipped_blocks": [["layer1_0_relu_1", "fc"]]}}, "skipped_blocks"),
    ({"depth": {"skipped_blocks": [["DigitsResNet/Sequential[layer9]/BasicBlock[0]/ReLU[relu]/relu_1", "fc"]]}},
     "unknown node"),
    ({"depth": {"mode": "auto", "skipped_blocks": [["layer1_0_relu_1", "layer1_1_relu_1"]]}}, "depth.mode"),
    ({"width": {"filter_importance": "external"}}, "external_importance_path"),
    ({"ignored_scopes": ["{re}.*fc.*"]}, "ignored_scopes"),
])
def test_bad_elasticity_is_a_user_error(section, key):
    with pytest.raises(UserError, match=key):
        SuperNetwork.from_model(DigitsResNet(), section, torch.zeros(1, 3, DIGITS_SIZE, DIGITS_SIZE))


def test_manual_blocks(supernet):
    """NNCF's skipped_blocks, without any other key, replace the automatic block search."""
    blocks = [[b.entry, b.exit] for b in supernet.blocks[:2]]
    manual = SuperNetwork.from_model(DigitsResNet(), {"depth": {"skipped_blocks": blocks}},
                                     torch.zeros(1, 3, DIGITS_SIZE, DIGITS_SIZE))
    assert [[b.entry, b.exit] for b in manual.blocks] == blocks
    # This project's earlier spelling ("mode": "manual") still reads the same when it agrees.
    legacy = SuperNetwork.from_model(DigitsResNet(), {"depth": {"mode": "manual", "skipped_blocks": blocks}},
                                     torch.zeros(1, 3, DIGITS_SIZE, DIGITS_SIZE))
    assert [[b.entry, b.exit] for b in legacy.blocks] == blocks
