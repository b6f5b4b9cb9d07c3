"""``PreprocessSpec``: how a source image becomes the tensor a model's input expects.

The spec travels with the model (``models`` registry) and keys the preprocessed
cache (``cache/<dataset>/<spec.key>/``): any change of a field -- resize, crop,
layout, dtype, channel order, normalisation, or the preprocessing code version --
gives a different key, so stale tensors are never reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from mlperf_bnas.errors import UserError

_INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
_LAYOUTS = ("NHWC", "NCHW")
_DTYPES = ("uint8", "float32")
_CHANNELS = ("RGB", "BGR")
_NORMALIZE = ("graph", "cache")

#: Bump when the preprocessing code changes in a way the fields do not capture.
PREPROCESS_CODE_VERSION = 1


@dataclass(frozen=True)
class PreprocessSpec:
    """What one cached sample is.

    ``resize``: the shorter side is resized to this (keeping the aspect ratio),
    then a centred ``size`` x ``size`` crop is taken; ``resize=None`` resizes the
    whole image straight to ``size`` x ``size`` (no crop, aspect ratio not kept).
    ``mean``/``scale`` (in RGB order, on the 0..255 scale: ``(x - mean) / scale``)
    are applied where ``normalize`` says: ``"graph"`` -- inside the model (the
    cache keeps raw ``uint8`` pixels; OpenVINO's PrePostProcessor does it) -- or
    ``"cache"`` -- stored already normalised (``float32``).
    """

    size: int
    resize: int | None = None
    interpolation: str = "bilinear"
    layout: str = "NHWC"
    dtype: str = "uint8"
    channel_order: str = "RGB"
    mean: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None
    normalize: str = "graph"
    code_version: int = PREPROCESS_CODE_VERSION

    def __post_init__(self) -> None:
        # Lists from YAML/JSON become tuples so the spec stays hashable and its key stable.
        for name in ("mean", "scale"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))
        problems = []
        if not isinstance(self.size, int) or self.size < 1:
            problems.append(f"size must be a positive integer, got {self.size!r}")
        if self.resize is not None and (not isinstance(self.resize, int) or self.resize < self.size):
            problems.append(f"resize must be None or an integer >= size ({self.size}), got {self.resize!r}")
        if self.interpolation not in _INTERPOLATIONS:
            problems.append(f"interpolation {self.interpolation!r} not one of {sorted(_INTERPOLATIONS)}")
        if self.layout not in _LAYOUTS:
            problems.append(f"layout {self.layout!r} not one of {_LAYOUTS}")
        if self.dtype not in _DTYPES:
            problems.append(f"dtype {self.dtype!r} not one of {_DTYPES}")
        if self.channel_order not in _CHANNELS:
            problems.append(f"channel_order {self.channel_order!r} not one of {_CHANNELS}")
        if self.normalize not in _NORMALIZE:
            problems.append(f"normalize {self.normalize!r} not one of {_NORMALIZE}")
        if (self.mean is None) != (self.scale is None):
            problems.append("mean and scale must both be given or both be None")
        elif self.mean is not None and (len(self.mean) != 3 or len(self.scale) != 3):
            problems.append("mean and scale need 3 values (R, G, B)")
        elif self.scale is not None and any(s == 0 for s in self.scale):
            problems.append("scale values must be non-zero")
        if self.normalize == "cache" and self.mean is not None and self.dtype != "float32":
            problems.append("normalize='cache' stores normalised values: dtype must be float32")
        if problems:
            raise ValueError("; ".join(problems))

    # -- identity -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for name in ("mean", "scale"):
            if d[name] is not None:
                d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"preprocess spec: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**d)

    @property
    def key(self) -> str:
        """Stable hash of every field: the cache folder name."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, 3) if self.layout == "NHWC" else (3, self.size, self.size)

    # -- the computation ------------------------------------------------------
    def apply(self, image: Image.Image) -> np.ndarray:
        """One PIL image -> one sample (``sample_shape``, ``dtype``)."""
        image = image.convert("RGB")
        interp = _INTERPOLATIONS[self.interpolation]
        if self.resize is None:
            image = image.resize((self.size, self.size), interp)
        else:
            w, h = image.size
            # Shorter side to `resize`, as torchvision's Resize(int) rounds it.
            if w <= h:
                new_w, new_h = self.resize, int(self.resize * h / w)
            else:
                new_w, new_h = int(self.resize * w / h), self.resize
            image = image.resize((new_w, new_h), interp)
            left = int(round((new_w - self.size) / 2.0))
            top = int(round((new_h - self.size) / 2.0))
            image = image.crop((left, top, left + self.size, top + self.size))
        arr = np.asarray(image, dtype=np.uint8)           # HWC, RGB
        if self.normalize == "cache" and self.mean is not None:
            arr = (arr.astype(np.float32) - np.asarray(self.mean, np.float32)) / np.asarray(self.scale, np.float32)
        if self.channel_order == "BGR":
            arr = arr[:, :, ::-1]
        if self.layout == "NCHW":
            arr = arr.transpose(2, 0, 1)
        return np.ascontiguousarray(arr, dtype=np.dtype(self.dtype))

    def to_float_nchw(self, samples: np.ndarray) -> np.ndarray:
        """Cached samples -> the float NCHW RGB (normalised) tensor a framework model takes.

        The inverse of what ``apply`` left out: channel order back to RGB, layout to
        NCHW and, for ``normalize="graph"``, the normalisation the graph would apply.
        """
        x = np.asarray(samples, dtype=np.float32)
        if self.layout == "NCHW":
            x = x.transpose(0, 2, 3, 1)
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        if self.normalize == "graph" and self.mean is not None:
            x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.scale, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
