"""Measuring one sub-network of a super-network: accuracy, MACs, parameters, latency.

* accuracy: BatchNorm re-calibration on ``num_bn_samples`` training samples, then top-1 on
  the validation subset (``nas.evaluate.evaluate_accuracy``). The super-network's BN
  statistics are restored before each measurement, so a sub-network's accuracy does not
  depend on which sub-networks were measured before it (needed for same-seed
  determinism, resuming, and distributed workers that see different sub-networks);
* MACs and parameters: analytic (``SuperNetwork.macs/params``);
* latency: ``LatencyMeter`` on the extracted sub-network.
"""

from __future__ import annotations

import copy
import logging
from typing import Sequence

import torch

from mlperf_bnas.nas.search.latency import LatencyMeter

log = logging.getLogger(__name__)


def _bn_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            for buf_name, buf in module.named_buffers(recurse=False):
                if buf is not None:
                    out[f"{name}.{buf_name}"] = buf.detach().clone()
    return out


class Rebatched:
    """``batches`` (tensors, or ``(inputs, labels)`` pairs) re-cut into batches of ``size``, in order:
    DyNAS-T's --eval_batch_size over whatever batching the model's data comes in. Re-iterable."""

    def __init__(self, batches, size: int):
        self.batches, self.size = batches, size

    def __iter__(self):
        pending: list = []
        count = 0
        for batch in self.batches:
            pending.append(batch)
            count += (batch[0] if isinstance(batch, (tuple, list)) else batch).shape[0]
            while count >= self.size:
                out, pending, count = self._cut(pending, self.size)
                yield out
        if count:
            yield self._cut(pending, count)[0]

    @staticmethod
    def _cut(pending: list, n: int):
        paired = isinstance(pending[0], (tuple, list))
        xs = torch.cat([b[0] if paired else b for b in pending])
        ys = torch.cat([b[1] for b in pending]) if paired else None
        rest_x = xs[n:]
        rest = [] if len(rest_x) == 0 else [(rest_x, ys[n:]) if paired else rest_x]
        out = (xs[:n], ys[:n]) if paired else xs[:n]
        return out, rest, len(rest_x)


class SupernetEvaluator:
    def __init__(self, supernet, measured: Sequence[str], bn_batches, val_loader, num_bn_samples: int,
                 latency: LatencyMeter | None = None):
        if "latency" in measured and latency is None:
            raise ValueError("latency is measured but no LatencyMeter was given")
        self.supernet = supernet
        self.measured = tuple(measured)
        self.bn_batches = bn_batches
        self.val_loader = val_loader
        self.num_bn_samples = num_bn_samples
        self.latency = latency
        self._bn_state = _bn_buffers(supernet.model)

    def _restore_bn(self) -> None:
        current = dict(self.supernet.model.named_buffers())
        with torch.no_grad():
            for name, value in self._bn_state.items():
                current[name].copy_(value)

    def prepare_export(self, config: dict) -> None:
        """Give the super-network the BN statistics ``config``'s accuracy was measured with, so the
        extracted sub-network computes exactly what was measured."""
        self._restore_bn()
        previous = self.supernet.active_config()
        self.supernet.activate(config)
        try:
            if self.num_bn_samples > 0:
                self.supernet.bn_adapt(self.bn_batches, self.num_bn_samples)
        finally:
            self.supernet.activate(previous)

    def measure(self, config: dict) -> dict[str, float]:
        # Imported here: nas.evaluate belongs to the super-network side and pulls in its data helpers.
        from mlperf_bnas.nas.evaluate import evaluate_accuracy

        out: dict[str, float] = {}
        if "macs" in self.measured:
            out["macs"] = float(self.supernet.macs(config))
        if "params" in self.measured:
            out["params"] = float(self.supernet.params(config))
        if "accuracy" in self.measured:
            self._restore_bn()
            out["accuracy"] = float(evaluate_accuracy(self.supernet, config, self.bn_batches, self.val_loader,
                                                      self.num_bn_samples))
        if "latency" in self.measured:
            def build() -> torch.nn.Module:
                # The exported sub-network is a standalone module; deep-copied so extraction never
                # shares parameters with the super-network the next measurement re-activates.
                return copy.deepcopy(self.supernet.extract_subnet(config))
            out["latency"] = self.latency.measure(config, build)
        self.supernet.activate(self.supernet.space.maximum())
        return out
