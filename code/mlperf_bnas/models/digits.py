"""The embedded demo's model (``digits_resnet``): a small ResNet-style CNN on scikit-learn's digits.

Needs no download: ``sklearn.datasets.load_digits`` ships 1,797 8x8 grey images, which are
upsampled to 16x16 three-channel tensors in [0, 1]. ``DigitsResNet`` has a 5x5 stem (so the
elastic kernel has something to do), two residual stages with skippable blocks and a linear
head; trained for about a minute on CPU it is the "pre-trained model" the BootstrapNAS demo
(``nas/demo.py``) turns into a super-network. No benchmark runs it; its descriptor serves the
NAS steps like any other model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.errors import UserError
from mlperf_bnas.models.entry import MODELS, ModelEntry

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


def _subset(n: int, fraction: float) -> int:
    return max(1, int(round(n * fraction)))


def _num_classes(state_dict: dict | None, default: int) -> int:
    if state_dict and "fc.weight" in state_dict:
        return int(state_dict["fc.weight"].shape[0])
    return default


@MODELS.register("digits_resnet")
class Digits(ModelEntry):
    """``digits_resnet``: the BootstrapNAS demo's CNN (NAS steps only; no benchmark runs it)."""

    postprocess = "argmax"
    subnet_base = "digits_resnet"
    nas_latency_runtime = "torch"       # no benchmark runtime: eager PyTorch
    nas_datasets = ("digits", "imagefolder", "imagenet")

    @dataclass(frozen=True)
    class Options:
        num_classes: int = 10
        #: Seed of the random weights used when no checkpoint is given.
        seed: int = 0

    def preprocess_spec(self) -> PreprocessSpec:
        # An image file scaled to [0, 1] at 16x16: what the digits tensors are.
        return PreprocessSpec(size=DIGITS_SIZE, resize=None, layout="NCHW", dtype="float32", channel_order="RGB",
                              mean=(0.0, 0.0, 0.0), scale=(255.0, 255.0, 255.0), normalize="cache")

    def subnet_preprocess_spec(self, preprocess: dict[str, Any]) -> PreprocessSpec:
        return self.preprocess_spec()

    def to_torch_input(self, samples: np.ndarray, spec: PreprocessSpec) -> torch.Tensor:
        return torch.from_numpy(spec.to_float_nchw(samples))

    def build(self, checkpoint: Path | None) -> torch.nn.Module:
        if checkpoint is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.options.seed)
                return DigitsResNet(self.options.num_classes).eval()
        return self.nas_pretrained(str(checkpoint), (1, 3, DIGITS_SIZE, DIGITS_SIZE))

    # -- BootstrapNAS ----------------------------------------------------------------------
    def nas_architecture(self, input_size: Sequence[int], state_dict: dict | None = None) -> DigitsResNet:
        return DigitsResNet(num_classes=_num_classes(state_dict, self.options.num_classes))

    def nas_export_preprocess(self, input_size: Sequence[int]) -> dict[str, Any]:
        return dict(DIGITS_PREPROCESS)

    def nas_train_data(self, dataset: str, data_dir: str | None, batch_size: int, seed: int,
                       input_size: Sequence[int], teacher=None, options: dict | None = None,
                       val_batch_size: int | None = None, workers: int | None = None):
        """``digits`` (scikit-learn's bundled digits), or a classifier's ``imagefolder``."""
        if dataset != "digits":
            return super().nas_train_data(dataset, data_dir, batch_size, seed, input_size, teacher, options,
                                          val_batch_size, workers)
        if options:
            raise UserError(f"dataset_options {sorted(options)}: dataset 'digits' takes none")
        return digits_loaders(batch_size, seed, size=int(input_size[-1]), val_batch_size=val_batch_size or 256)

    def nas_search_data(self, dataset_path: Path | None, fraction: float, seed: int, input_size: Sequence[int],
                        training: dict | None = None):
        # ``seed``: the training run's data seed, so the validation split is the one training never saw.
        if dataset_path is not None:
            raise UserError("--dataset_path: the digits demo uses scikit-learn's bundled digits; leave it unset")
        train, val = digits_loaders(batch_size=64, seed=seed, size=int(input_size[-1]))
        x, y = val.dataset.tensors
        n = _subset(len(y), fraction)
        val_subset = DataLoader(TensorDataset(x[:n], y[:n]), batch_size=256)
        # Fixed BN batches (the training loader shuffles): the same sub-network always gets the same
        # statistics, so its accuracy is reproducible.
        tx, _ = train.dataset.tensors
        bn = [tx[i:i + 64] for i in range(0, len(tx), 64)]
        return bn, val_subset
