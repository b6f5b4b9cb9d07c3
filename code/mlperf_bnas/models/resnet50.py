"""torchvision ResNet-50: from a user checkpoint or seeded weights; it takes exported NAS sub-networks
of ResNet-50 as its checkpoint too (rebuilt by ``pipeline.build_module``, their preprocessing
turned into this cache form by ``subnet_preprocess_spec``).

Cached samples are ``uint8`` NHWC **BGR** 224x224 (PIL: shorter side to 256,
bilinear, centre crop 224). BGR because the BootstrapNAS OpenVINO IR this
harness reproduces takes BGR input and reverses the channels inside the graph
(PrePostProcessor), with the RGB mean/scale below -- the cache stores exactly
what the IR input expects, so the QSL hands rows to OpenVINO without any copy
or conversion.

Seeded weights (no checkpoint): torchvision's random initialisation from
``seed``, then BatchNorm running statistics and the classifier bias re-estimated
on a few deterministic synthetic images (a seed separate from the synthetic
dataset's). Without that step a random ResNet-50 answers the same class for
nearly every input, which would make synthetic labels meaningless.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.data.synthetic import synthetic_image
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import load_checkpoint
from mlperf_bnas.models.entry import MODELS, ModelEntry

log = logging.getLogger(__name__)

MEAN_RGB = (123.675, 116.28, 103.53)
SCALE_RGB = (58.395, 57.12, 57.375)
_STATS_SEED = 1_000_003      # synthetic images used to settle seeded weights (not the dataset's)
_STATS_IMAGES = 16


#: The end of every error about a bad CHECKPOINT.
CHECKPOINT_HINT = ("set CHECKPOINT to a torchvision ResNet-50 state dict (torch.save(model.state_dict(), path)) "
                   "or an exported NAS sub-network, or unset it for seeded weights")


def subnet_spec(base: PreprocessSpec, preprocess: dict[str, Any]) -> PreprocessSpec:
    """A sub-network's own preprocessing, in this benchmark's cache form (u8 NHWC BGR, graph normalisation).

    Accepts the NAS export's torchvision-style keys (``crop``, ``resize``, ``mean``/``std``
    on the 0..1 scale, ``input_size``, ``interpolation``) or ``PreprocessSpec`` field names.
    """
    fields = dict(preprocess)
    changes: dict[str, Any] = {}
    if "crop" in fields or "input_size" in fields:
        crop = fields.pop("crop", None)
        size = fields.pop("input_size", None)
        changes["size"] = int(crop if crop is not None else (size[-1] if isinstance(size, (list, tuple)) else size))
    if "std" in fields:
        mean, std = fields.pop("mean"), fields.pop("std")
        unit = max(max(mean), max(std)) <= 1.0        # torchvision style: fractions of 255
        # Rounded so 0.229 * 255 and 58.395 give the same spec (and share one cache).
        changes["mean"] = tuple(round(float(m) * (255.0 if unit else 1.0), 6) for m in mean)
        changes["scale"] = tuple(round(float(v) * (255.0 if unit else 1.0), 6) for v in std)
    changes.update(fields)
    return PreprocessSpec.from_dict({**base.to_dict(), **changes})


def settle_seeded_weights(model: torch.nn.Module, inputs: torch.Tensor) -> None:
    """Estimate BN running statistics and centre the classifier on ``inputs`` (in place)."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None          # cumulative average over the batch
    model.train()
    with torch.no_grad():
        model(inputs)
    model.eval()
    features: list[torch.Tensor] = []
    hook = model.avgpool.register_forward_hook(lambda _m, _i, out: features.append(out.flatten(1)))
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        hook.remove()
    with torch.no_grad():
        model.fc.bias.copy_(-(model.fc.weight @ features[0].mean(0)))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.1


@MODELS.register("resnet50")
class ResNet50(ModelEntry):
    postprocess = "argmax"
    subnet_base = "resnet50"

    @dataclass(frozen=True)
    class Options:
        num_classes: int = 1000
        #: Seed of the random weights used when no checkpoint is given.
        seed: int = 0

    def preprocess_spec(self) -> PreprocessSpec:
        return PreprocessSpec(size=224, resize=256, interpolation="bilinear", layout="NHWC", dtype="uint8",
                              channel_order="BGR", mean=MEAN_RGB, scale=SCALE_RGB, normalize="graph")

    def subnet_preprocess_spec(self, preprocess: dict[str, Any]) -> PreprocessSpec:
        return subnet_spec(self.preprocess_spec(), preprocess)

    def to_torch_input(self, samples: np.ndarray, spec: PreprocessSpec) -> torch.Tensor:
        return torch.from_numpy(spec.to_float_nchw(samples))

    def build(self, checkpoint: Path | None) -> torch.nn.Module:
        if checkpoint is None:
            return self._seeded()
        obj = load_checkpoint(checkpoint, "PyTorch checkpoint", CHECKPOINT_HINT)
        state = obj
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            state = obj["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise UserError(f"{checkpoint}: expected a torchvision ResNet-50 state dict (name -> tensor), "
                            f"found {type(state).__name__}")
        model = torchvision.models.resnet50(weights=None, num_classes=self.options.num_classes)
        expected = model.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        shape_errors = [k for k, v in state.items() if k in expected and expected[k].shape != v.shape]
        if missing or unexpected or shape_errors:
            detail = []
            if missing:
                detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
            if unexpected:
                detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
            if shape_errors:
                detail.append(f"{len(shape_errors)} of wrong shape (e.g. {shape_errors[0]})")
            raise UserError(f"{checkpoint}: not a torchvision ResNet-50 ({self.options.num_classes} classes) "
                            f"state dict: {'; '.join(detail)} keys; pass resnet50 weights "
                            "(torchvision.models.resnet50().state_dict())")
        model.load_state_dict(state, strict=True)
        return model.eval()

    def _seeded(self) -> torch.nn.Module:
        print(f"WARNING: no CHECKPOINT given: using SEEDED RANDOM ResNet-50 weights (seed {self.options.seed}). "
              "Accuracy numbers measure INT8-vs-FP32 agreement only, not ImageNet accuracy.", file=sys.stderr)
        with torch.random.fork_rng(devices=[]):     # the seed is an argument, not global state
            torch.manual_seed(self.options.seed)
            model = torchvision.models.resnet50(weights=None, num_classes=self.options.num_classes)
        spec = self.preprocess_spec()
        samples = np.stack([spec.apply(synthetic_image(_STATS_SEED + self.options.seed, i))
                            for i in range(_STATS_IMAGES)])
        settle_seeded_weights(model, self.to_torch_input(samples, spec))
        return model.eval()
