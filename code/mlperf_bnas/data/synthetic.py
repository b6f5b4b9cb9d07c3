"""Deterministic synthetic images: smooth colour gradients plus soft blobs and bars.

White noise would make a model answer the same class for every image; smooth,
structured images of varied size, colour and layout give a seeded (random-weight)
or real model varied predictions, so INT8-vs-FP32 agreement on them is a
meaningful fidelity measure. Image ``i`` depends only on ``(seed, i)``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def synthetic_image(seed: int, index: int, min_side: int = 240, max_side: int = 400) -> Image.Image:
    rng = np.random.default_rng([seed, index])
    w = int(rng.integers(min_side, max_side + 1))
    h = int(rng.integers(min_side, max_side + 1))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy /= h
    xx /= w
    # Background: a linear gradient between two random colours in a random direction.
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    # Soft elliptical blobs of random colours.
    for _ in range(int(rng.integers(2, 7))):
        cx, cy = rng.uniform(0, 1, 2)
        sx, sy = rng.uniform(0.04, 0.3, 2)
        alpha = np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))[..., None]
        img = img * (1 - alpha) + rng.uniform(0, 255, 3)[None, None, :] * alpha
    # Periodic stripes with a random frequency and orientation (texture).
    if rng.random() < 0.6:
        freq = rng.uniform(4, 40)
        phi = rng.uniform(0, 2 * np.pi)
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(phi) * xx + np.sin(phi) * yy))
        img = img * (1 - 0.35 * stripes[..., None]) + rng.uniform(0, 255, 3)[None, None, :] * 0.35 * stripes[..., None]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
