"""The embedded demo: a small ResNet-style CNN on scikit-learn's bundled digits images.

Needs no download: ``sklearn.datasets.load_digits`` ships 1,797 8x8 grey images, which we
upsample to 32x32 RGB-like tensors. ``DigitsResNet`` has a 5x5 stem (so the elastic kernel
has something to do), two residual stages with skippable blocks and a linear head; trained
for about a minute on CPU it is the "pre-trained model" the demo turns into a super-network.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

log = logging.getLogger(__name__)

DIGITS_SIZE = 16
DIGITS_PREPROCESS = {"input_size": [3, DIGITS_SIZE, DIGITS_SIZE], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                     "source": f"sklearn digits, 8x8 scaled to [0, 1], bilinear upsampling to {DIGITS_SIZE}x{DIGITS_SIZE}"}


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class DigitsResNet(nn.Module):
    """Stem 5x5 -> stage1 (3 blocks, 16 ch) -> stage2 (3 blocks, 32 ch, stride 2) -> pool -> fc."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, int] = (16, 32), depth: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 5, 1, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(*[BasicBlock(widths[0], widths[0]) for _ in range(depth)])
        self.layer2 = nn.Sequential(BasicBlock(widths[0], widths[1], 2),
                                    *[BasicBlock(widths[1], widths[1]) for _ in range(depth - 1)])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def digits_tensors(size: int = DIGITS_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as (N, 3, size, size) float tensors in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    return images, torch.from_numpy(digits.target.astype(np.int64))


def digits_loaders(batch_size: int, seed: int, size: int = DIGITS_SIZE, val_fraction: float = 0.25,
                   val_batch_size: int = 256):
    """(train, val) DataLoaders over a fixed, seeded split of the digits."""
    images, labels = digits_tensors(size)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_val = int(len(labels) * val_fraction)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    # The shuffle follows torch's global RNG, which the trainer seeds per epoch (exact resume).
    train = DataLoader(TensorDataset(images[train_idx], labels[train_idx]), batch_size=batch_size, shuffle=True,
                       drop_last=True)
    val = DataLoader(TensorDataset(images[val_idx], labels[val_idx]), batch_size=val_batch_size, shuffle=False)
    return train, val


def pretrain_digits_model(epochs: int, seed: int, batch_size: int = 64, lr: float = 0.05,
                          device: str | torch.device = "cpu") -> tuple[DigitsResNet, float]:
    """Train the demo's "pre-trained model"; returns it (eval mode) and its validation top-1 (%)."""
    from mlperf_bnas.nas.evaluate import top1

    torch.manual_seed(seed)
    model = DigitsResNet().to(device)
    train, val = digits_loaders(batch_size, seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(train))
    for epoch in range(epochs):
        model.train()
        for x, y in train:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        log.info("pre-training epoch %d/%d: loss %.4f", epoch + 1, epochs, loss.item())
    model.eval()
    return model, top1(model, val, device)
