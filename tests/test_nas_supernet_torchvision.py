"""The super-network generator on other torchvision CNNs than ResNet: depthwise convolutions,
squeeze-and-excitation (channel-wise mul), Hardswish and 5x5 kernels (MobileNetV3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from mlperf_bnas.nas.supernet.network import SuperNetwork


@pytest.mark.parametrize("name", ["mobilenet_v3_small"])
def test_generated_supernet_is_exact(name):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(2, 3, 32, 32)
    net = SuperNetwork.from_model(model, {"width": {"width_multipliers": [1.0, 0.5]}}, x)
    assert net.blocks and net.width_groups and net.kernel_sizes
    net.model.eval()
    with torch.no_grad():
        assert torch.equal(net.model(x), model(x))
        config = net.space.sample(np.random.default_rng(0))
        config["kernel"] = [sizes[-1] for sizes in net.kernel_sizes.values()]
        net.activate(config)
        expected = net.model(x)
        subnet = net.extract_subnet(config)
        torch.testing.assert_close(subnet(x), expected, rtol=1e-5, atol=1e-5)
    assert net.params(config) == sum(p.numel() for p in subnet.parameters())
    assert net.macs(config) < net.macs(net.space.maximum())
