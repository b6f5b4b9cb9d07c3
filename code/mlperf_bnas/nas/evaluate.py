"""Accuracy of a sub-network: BN re-calibration, then top-1 on a validation loader."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


@torch.no_grad()
def top1(model: nn.Module, loader: Iterable, device: str | torch.device | None = None) -> float:
    """Top-1 accuracy (%) of ``model`` over ``(inputs, labels)`` batches."""
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in loader:
        pred = model(x.to(device)).argmax(dim=1)
        correct += int((pred == y.to(device)).sum())
        total += int(y.shape[0])
    model.train(was_training)
    if total == 0:
        raise ValueError("top-1 over an empty validation loader")
    return 100.0 * correct / total


def evaluate_accuracy(supernet, config: dict, bn_batches: Iterable, val_loader: Iterable,
                      num_bn_samples: int) -> float:
    """Activate ``config``, re-calibrate its BN statistics on ``num_bn_samples`` inputs of
    ``bn_batches`` (skipped when 0), and return its top-1 (%) on ``val_loader``.

    The super-network's previous active sub-network is restored afterwards (BN statistics
    of the evaluated channels stay re-calibrated, as in NNCF).
    """
    previous = supernet.active_config()
    supernet.activate(config)
    try:
        if num_bn_samples > 0:
            supernet.bn_adapt(bn_batches, num_bn_samples)
        return top1(supernet.model, val_loader)
    finally:
        supernet.activate(previous)
