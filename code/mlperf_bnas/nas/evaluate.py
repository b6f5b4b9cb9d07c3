"""Accuracy of a sub-network: BN re-calibration, then the model's own accuracy measure."""

from __future__ import annotations

from typing import Callable, Iterable

from mlperf_bnas.models.entry import top1

__all__ = ["evaluate_accuracy", "top1"]


def evaluate_accuracy(supernet, config: dict, bn_batches: Iterable, val_loader: Iterable,
                      num_bn_samples: int, accuracy: Callable = top1) -> float:
    """Activate ``config``, re-calibrate its BN statistics on ``num_bn_samples`` inputs of
    ``bn_batches`` (skipped when 0), and return ``accuracy(model, val_loader)`` (the model
    descriptor's ``nas_accuracy``: top-1 % for classifiers, mAP % for RetinaNet).

    The super-network's previous active sub-network is restored afterwards (BN statistics
    of the evaluated channels stay re-calibrated, as in NNCF).
    """
    previous = supernet.active_config()
    supernet.activate(config)
    try:
        if num_bn_samples > 0:
            supernet.bn_adapt(bn_batches, num_bn_samples)
        return accuracy(supernet.model, val_loader)
    finally:
        supernet.activate(previous)
