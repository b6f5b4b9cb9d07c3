"""Weight-sharing layers: drop-in subclasses of torch layers that run a slice of themselves.

A layer's *input* width is whatever arrives (``x.shape[1]``), so only channel
*producers* need to be told their active output width; consumers, batch norms and
depthwise convolutions follow automatically. Parameters keep their names and shapes,
so a super-network's state dict has the same keys as the original model.

``to_plain()`` returns an ordinary torch layer holding copies of the active slice,
which is what an extracted sub-network is made of.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d


def _is_depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


class ElasticConv2d(nn.Conv2d):
    """Conv2d with an active output width and (optionally) an active kernel size.

    Smaller kernels are OFA's: the centre of the next larger kernel, passed through a
    learned ``k*k -> k*k`` linear transform (initialised to the identity), with the
    padding reduced so that the output geometry is unchanged.
    """

    active_out: int | None
    active_kernel: int | None
    kernel_sizes: tuple[int, ...]

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "ElasticConv2d":
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                  conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode, device="meta")
        new.weight = conv.weight
        new.bias = conv.bias
        new.train(conv.training)
        new.active_out = None
        new.active_kernel = None
        new.kernel_sizes = (conv.kernel_size[0],)
        new.last_in_channels = conv.in_channels
        return new

    def enable_kernel(self, kernel_sizes: tuple[int, ...]) -> None:
        """Make the kernel elastic over ``kernel_sizes`` (descending, first = full size)."""
        self.kernel_sizes = tuple(kernel_sizes)
        for big, small in zip(kernel_sizes, kernel_sizes[1:]):
            name = f"kernel_transform_{big}to{small}"
            if not hasattr(self, name):
                self.register_parameter(name, nn.Parameter(
                    torch.eye(small * small, dtype=self.weight.dtype, device=self.weight.device)))

    def kernel_weight(self, weight: torch.Tensor, kernel: int) -> torch.Tensor:
        for big, small in zip(self.kernel_sizes, self.kernel_sizes[1:]):
            if big <= kernel:
                break
            start = (big - small) // 2
            centre = weight[:, :, start:start + small, start:start + small]
            transform = getattr(self, f"kernel_transform_{big}to{small}")
            shape = centre.shape
            weight = (centre.reshape(-1, small * small) @ transform).reshape(shape)
        return weight

    def active_parameters(self, in_channels: int) -> tuple[torch.Tensor, torch.Tensor | None, int, tuple]:
        """(weight, bias, groups, padding) of the active slice for ``in_channels`` inputs."""
        weight, bias, groups = self.weight, self.bias, self.groups
        if groups == 1:
            out = self.active_out or self.out_channels
            weight = weight[:out, :in_channels]
        elif _is_depthwise(self):
            out = in_channels
            weight, groups = weight[:out], in_channels
        else:
            out = self.out_channels  # grouped convolutions are never width-elastic (see width.py)
        if bias is not None:
            bias = bias[:out]
        padding = self.padding
        kernel = self.active_kernel or self.kernel_size[0]
        if kernel != self.kernel_size[0]:
            weight = self.kernel_weight(weight, kernel)
            shrink = (self.kernel_size[0] - kernel) // 2
            padding = tuple(p - shrink for p in self.padding)
        return weight, bias, groups, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last_in_channels = x.shape[1]
        weight, bias, groups, padding = self.active_parameters(x.shape[1])
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return F.conv2d(x, weight, bias, self.stride, padding, self.dilation, groups)

    def to_plain(self) -> nn.Conv2d:
        with torch.no_grad():
            weight, bias, groups, padding = self.active_parameters(self.last_in_channels)
            conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), self.stride,
                             padding, self.dilation, groups, bias is not None, self.padding_mode,
                             device=weight.device, dtype=weight.dtype)
            conv.weight.copy_(weight)
            if bias is not None:
                conv.bias.copy_(bias)
        return conv.train(self.training)


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over the first ``x.shape[1]`` channels.

    ``adapting`` turns on BN re-calibration: batch statistics normalise the input (as in
    training) and are averaged into an accumulator, which ``finish_adaptation`` writes
    into the active channels' running statistics, leaving the other channels alone.
    """

    @classmethod
    def from_bn(cls, bn: nn.BatchNorm2d) -> "ElasticBatchNorm2d":
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, device="meta")
        if bn.affine:
            new.weight, new.bias = bn.weight, bn.bias
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            new._buffers[name] = bn._buffers.get(name)
        new.train(bn.training)
        new.adapting = False
        new._accumulated = None
        new.last_channels = bn.num_features
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        self.last_channels = channels
        weight = self.weight[:channels] if self.affine else None
        bias = self.bias[:channels] if self.affine else None
        if self.adapting:
            with torch.no_grad():
                mean = x.mean(dim=(0, 2, 3))
                var = x.var(dim=(0, 2, 3), unbiased=True)
                n = x.shape[0]
                if self._accumulated is None:
                    self._accumulated = [mean * n, var * n, n]
                else:
                    self._accumulated[0] += mean * n
                    self._accumulated[1] += var * n
                    self._accumulated[2] += n
            return F.batch_norm(x, None, None, weight, bias, True, 0.0, self.eps)
        if channels == self.num_features:
            return super().forward(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or self.running_mean is None
        running_mean = self.running_mean[:channels] if self.running_mean is not None else None
        running_var = self.running_var[:channels] if self.running_var is not None else None
        if self.training and not self.track_running_stats:
            running_mean = running_var = None
        return F.batch_norm(x, running_mean, running_var, weight, bias, use_batch_stats, factor, self.eps)

    def finish_adaptation(self) -> None:
        if self._accumulated is not None and self.running_mean is not None:
            mean, var, n = self._accumulated
            channels = mean.shape[0]
            self.running_mean[:channels] = mean / n
            self.running_var[:channels] = var / n
        self._accumulated = None
        self.adapting = False

    def to_plain(self) -> nn.BatchNorm2d:
        channels = self.last_channels
        bn = nn.BatchNorm2d(channels, self.eps, self.momentum, self.affine, self.track_running_stats,
                            device=self.weight.device if self.affine else None)
        with torch.no_grad():
            if self.affine:
                bn.weight.copy_(self.weight[:channels])
                bn.bias.copy_(self.bias[:channels])
            if self.running_mean is not None:
                bn.running_mean.copy_(self.running_mean[:channels])
                bn.running_var.copy_(self.running_var[:channels])
                bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn.train(self.training)


class ElasticFrozenBatchNorm2d(FrozenBatchNorm2d):
    """torchvision's FrozenBatchNorm2d (detection backbones) over the first ``x.shape[1]`` channels."""

    @classmethod
    def from_bn(cls, bn: FrozenBatchNorm2d) -> "ElasticFrozenBatchNorm2d":
        new = cls(bn.weight.shape[0], bn.eps)
        for name in ("weight", "bias", "running_mean", "running_var"):
            new._buffers[name] = bn._buffers[name]
        new.last_channels = bn.weight.shape[0]
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        self.last_channels = c
        scale = self.weight[:c] * (self.running_var[:c] + self.eps).rsqrt()
        shift = self.bias[:c] - self.running_mean[:c] * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def to_plain(self) -> FrozenBatchNorm2d:
        channels = self.last_channels
        bn = FrozenBatchNorm2d(channels, self.eps)
        for name in ("weight", "bias", "running_mean", "running_var"):
            bn._buffers[name] = self._buffers[name][:channels].clone()
        return bn


class ElasticLinear(nn.Linear):
    """Linear over the first ``x.shape[-1]`` inputs with an active output width."""

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "ElasticLinear":
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, device="meta")
        new.weight, new.bias = linear.weight, linear.bias
        new.train(linear.training)
        new.active_out = None
        new.last_in_features = linear.in_features
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last_in_features = x.shape[-1]
        out = self.active_out or self.out_features
        bias = self.bias[:out] if self.bias is not None else None
        return F.linear(x, self.weight[:out, :x.shape[-1]], bias)

    def to_plain(self) -> nn.Linear:
        out = self.active_out or self.out_features
        with torch.no_grad():
            linear = nn.Linear(self.last_in_features, out, self.bias is not None, device=self.weight.device,
                               dtype=self.weight.dtype)
            linear.weight.copy_(self.weight[:out, :self.last_in_features])
            if self.bias is not None:
                linear.bias.copy_(self.bias[:out])
        return linear.train(self.training)


def make_elastic(module: nn.Module) -> nn.Module | None:
    """The elastic twin of a layer (sharing its parameters), or None for other layers."""
    if type(module) is nn.Conv2d:
        return ElasticConv2d.from_conv(module)
    if type(module) is nn.BatchNorm2d:
        return ElasticBatchNorm2d.from_bn(module)
    if type(module) is FrozenBatchNorm2d:
        return ElasticFrozenBatchNorm2d.from_bn(module)
    if type(module) is nn.Linear:
        return ElasticLinear.from_linear(module)
    return None


ELASTIC_TYPES = (ElasticConv2d, ElasticBatchNorm2d, ElasticFrozenBatchNorm2d, ElasticLinear)
