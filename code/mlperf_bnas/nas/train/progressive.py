"""Progressive-shrinking training of a super-network (BootstrapNAS / OFA).

Stages come from ``schedule.list_stage_descriptions``: each names the elastic dimensions
it trains and how far they may shrink (indicators). Every ``sample_rate`` steps a random
sub-network of the stage's space is activated and trained with cross-entropy plus
knowledge distillation from the frozen pre-trained teacher; the learning rate follows a
cosine from ``init_lr`` over ``epochs_lr`` epochs, restarting at each stage. After each
epoch the minimum and maximum sub-networks are evaluated (with BN re-calibration when the
stage asks for it) and a checkpoint holding the weights, the elasticity state, the
optimizer and the position in the schedule is written atomically, so ``resume`` continues
exactly where a run stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mlperf_bnas.errors import UserError
from mlperf_bnas.nas.nas_config import OptimizerOptions, TrainingOptions
from mlperf_bnas.nas.evaluate import evaluate_accuracy
from mlperf_bnas.nas.supernet.network import SuperNetwork

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "supernet_last.pt"
FINAL_CHECKPOINT = "supernet.pt"
TRAIN_LOG = "train_log.json"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class TrainState:
    stage: int = 0          # index of the stage being trained
    epoch: int = 0          # epochs of that stage already done
    history: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"stage": self.stage, "epoch": self.epoch, "history": self.history}


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.kl_div(F.log_softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1),
                    reduction="batchmean") * temperature * temperature


def _optimizer(params, opts: OptimizerOptions, lr: float) -> torch.optim.Optimizer:
    if opts.type == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=opts.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=opts.momentum, weight_decay=opts.weight_decay,
                           nesterov=opts.nesterov and opts.momentum > 0)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def train_step(supernet: SuperNetwork, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor,
               optimizer: torch.optim.Optimizer, options: TrainingOptions) -> float:
    """One optimisation step of the active sub-network; returns the loss."""
    with torch.no_grad():
        target_logits = teacher(x)
    logits = supernet.model(x)
    loss = F.cross_entropy(logits, y)
    if options.distillation_weight > 0:
        loss = loss + options.distillation_weight * distillation_loss(logits, target_logits,
                                                                      options.distillation_temperature)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def train_progressive_shrinking(supernet: SuperNetwork, teacher: nn.Module, train_loader: Iterable,
                                val_loader: Iterable, options: TrainingOptions, optimizer_options: OptimizerOptions,
                                out_dir: Path, seed: int, resume: bool = False, checkpoint_extra: dict | None = None,
                                progress: bool = True) -> TrainState:
    """Run (or resume) the whole schedule; checkpoints go to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = supernet.example_input.device
    teacher = teacher.to(device).eval()  # run under no_grad in train_step: frozen
    state = TrainState()
    saved_opt = None
    if resume:
        last = out_dir / LAST_CHECKPOINT
        if not last.is_file():
            raise UserError(f"{last}: nothing to resume; run without --resume to start training")
        extra = supernet.checkpoint_extra
        if "train_state" not in extra:
            raise UserError(f"{last}: not a training checkpoint (no train_state)")
        state = TrainState(**extra["train_state"])
        saved_opt = extra.get("optimizer")
        log.info("resuming at stage %d, epoch %d", state.stage + 1, state.epoch)
    base_lr = optimizer_options.base_lr
    n_batches = len(train_loader)  # type: ignore[arg-type]
    steps_per_epoch = min(n_batches, options.train_steps) if options.train_steps else n_batches
    if steps_per_epoch == 0:
        raise UserError("the training set is smaller than one batch; lower batch_size")
    while state.stage < len(options.stages):
        stage = options.stages[state.stage]
        supernet.set_stage(stage.train_dims, {"depth": stage.depth_indicator, "width": stage.width_indicator,
                                              "kernel": stage.kernel_indicator})
        if state.epoch == 0 and stage.reorg_weights and "width" in stage.train_dims:
            supernet.reorganize_weights()
        init_lr = stage.init_lr if stage.init_lr is not None else base_lr
        optimizer = _optimizer(supernet.model.parameters(), optimizer_options, init_lr)
        if saved_opt is not None and 0 < state.epoch < stage.epochs:
            optimizer.load_state_dict(saved_opt)  # resuming inside this stage
        saved_opt = None
        total = max(1, (stage.epochs_lr or stage.epochs) * steps_per_epoch)
        log.info("stage %d/%d: train_dims=%s indicators=%s, %d sub-networks", state.stage + 1, len(options.stages),
                 list(stage.train_dims), supernet.indicators, supernet.space.size())
        while state.epoch < stage.epochs:
            rng = np.random.default_rng(_seed(seed, state.stage, state.epoch))
            torch.manual_seed(_seed(seed, state.stage, state.epoch, 1))  # data order of this epoch
            supernet.model.train()
            losses = []
            bar = tqdm(total=steps_per_epoch, disable=not progress, leave=False,
                       desc=f"stage {state.stage + 1} epoch {state.epoch + 1}/{stage.epochs}")
            for step, (x, y) in enumerate(train_loader):
                if step >= steps_per_epoch:
                    break
                t = state.epoch * steps_per_epoch + step
                for group in optimizer.param_groups:
                    group["lr"] = init_lr * 0.5 * (1 + math.cos(math.pi * min(t, total) / total))
                if step % stage.sample_rate == 0:
                    supernet.activate(supernet.space.sample(rng))
                losses.append(train_step(supernet, teacher, x.to(device), y.to(device), optimizer, options))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            bar.close()
            n_bn = options.num_bn_adaptation_samples if stage.bn_adapt else 0
            space = supernet.space
            acc_max = evaluate_accuracy(supernet, space.maximum(), train_loader, val_loader, n_bn)
            acc_min = evaluate_accuracy(supernet, space.minimum(), train_loader, val_loader, n_bn)
            record = {"stage": state.stage + 1, "epoch": state.epoch + 1, "loss": float(np.mean(losses)),
                      "top1_max": acc_max, "top1_min": acc_min, "macs_max": supernet.macs(space.maximum()),
                      "macs_min": supernet.macs(space.minimum())}
            state.history.append(record)
            state.epoch += 1
            log.info("stage %d epoch %d: loss %.4f, top-1 max %.2f%%, min %.2f%% (MACs %d / %d)",
                     record["stage"], record["epoch"], record["loss"], acc_max, acc_min,
                     record["macs_max"], record["macs_min"])
            supernet.activate(supernet.full_space.maximum())
            supernet.save(out_dir / LAST_CHECKPOINT, extra={**(checkpoint_extra or {}), "train_state": state.to_dict(),
                                                          "optimizer": optimizer.state_dict()})
        state.stage += 1
        state.epoch = 0
    # The search space after training is the last stage's (what was trained), which the
    # checkpoint's elasticity state carries to `nas export` and the search.
    supernet.activate(supernet.space.maximum())
    supernet.save(out_dir / FINAL_CHECKPOINT, extra={**(checkpoint_extra or {}), "train_state": state.to_dict()})
    tmp = out_dir / (TRAIN_LOG + ".tmp")
    tmp.write_text(json.dumps(state.history, indent=2))
    os.replace(tmp, out_dir / TRAIN_LOG)
    return state
