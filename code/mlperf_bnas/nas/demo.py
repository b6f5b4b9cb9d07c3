"""The embedded demo: pre-train the ``digits_resnet`` model (``models/digits.py``) on
scikit-learn's bundled digits; ``nas/train/steps.run_demo`` turns it into a super-network.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from mlperf_bnas.models.digits import (  # noqa: F401  (the demo's model and data, re-exported)
    DIGITS_PREPROCESS, DIGITS_SIZE, DigitsResNet, digits_loaders, digits_tensors,
)

log = logging.getLogger(__name__)

#: The model the demo pre-trains (its MODELS name).
DEMO_MODEL = "digits_resnet"


def pretrain_digits_model(epochs: int, seed: int, batch_size: int = 64, lr: float = 0.05,
                          device: str | torch.device = "cpu") -> tuple[DigitsResNet, float]:
    """Train the demo's "pre-trained model"; returns it (eval mode) and its validation top-1 (%)."""
    from mlperf_bnas.models.entry import top1

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
